"""Publishing a checkpoint folder to the Hub as a zoo repository, exactly as it is on disk."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from huggingface_hub import CommitOperationAdd, HfApi, constants
from transformers import AutoModel
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

from ..adapters.modeling_adapted import HEADS_FILE
from ..models.modeling_utils import checkpoint_processor_class
from ..zoo import processor_from_pretrained
from .folder import CARD, RESULTS, find_results_file

Result = TypeVar("Result")
#: What an endpoint without Xet storage answers when the client asks it for a Xet write token: the
#: route's name appears in the error `hf_xet` raises (a plain `ConnectionError` with the status inside).
XET_TOKEN_ROUTE = "xet-write-token"


def folder_files(folder: Path) -> dict[str, Path]:
    """Every file under ``folder`` by its path in the repository (``/``-separated), hidden files and folders
    (``.cache``, ``.git``) left out."""
    files = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            files[relative.as_posix()] = path
    return files


def upload_falling_back_to_lfs(upload: Callable[[], Result], endpoint: str | None = None) -> Result:
    """Run ``upload`` (any `huggingface_hub` upload: ``create_commit``, a model's ``push_to_hub``) with the
    client's defaults, which send large files through Xet storage when ``hf_xet`` is installed. An endpoint
    that offers no Xet storage (a self-hosted Hub, an older mirror) fails the Xet write-token request before
    anything is committed; the upload is then run again through the LFS transfer protocol, said in one
    line on standard error."""
    try:
        return upload()
    except Exception as error:  # hf_xet raises a bare ConnectionError: the route in its text tells it apart
        if XET_TOKEN_ROUTE not in str(error) or constants.HF_HUB_DISABLE_XET:
            raise
    print(
        f"The Hub at {endpoint or constants.ENDPOINT} offers no Xet storage; uploading through LFS instead.",
        file=sys.stderr,
    )
    constants.HF_HUB_DISABLE_XET = True  # read by huggingface_hub at every upload
    try:
        return upload()
    finally:
        constants.HF_HUB_DISABLE_XET = False


def check_publishable(folder: Path) -> None:
    """Raise before any request if ``folder`` cannot be published: no config, no weights, no card, or a model
    (or processor) that does not load."""
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} is not a checkpoint folder (no config.json): nothing to push.")
    # An adapted transformer's weights are its heads (and adapter); the base model stays where it is.
    if not any((folder / name).is_file() for name in (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, HEADS_FILE)):
        raise FileNotFoundError(
            f"{folder} holds no weights ({SAFE_WEIGHTS_NAME}, or {HEADS_FILE} for an adapted transformer): nothing "
            "to push. Save the model there with save_pretrained first."
        )
    if not (folder / CARD).is_file():
        raise FileNotFoundError(f"{folder} has no model card ({CARD}); write it with `moezoo card {folder}` first.")
    AutoModel.from_pretrained(folder)
    if checkpoint_processor_class(folder):
        processor_from_pretrained(folder)


def push_checkpoint(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
) -> str:
    """Push a checkpoint folder (a zoo entry, or a recipe's ``best/`` after ``moezoo card``) to ``repo_id``
    in one commit, every file byte for byte as it is in the folder (hidden files aside), with the run's
    ``results.json`` from the folder above when the folder has none. Nothing is re-saved, so the repository
    holds the files whose metrics the card reports, whatever library versions push them.

    The folder is checked first (config, weights, card; the model and its processor load), so a folder
    that cannot be published leaves the Hub untouched. Large files go through Xet storage, or LFS where the
    endpoint has no Xet (`upload_falling_back_to_lfs`).

    Returns:
        The URL of the commit.

    Raises:
        FileNotFoundError: no config, no weights, or no card in the folder.
    """
    folder = Path(folder)
    check_publishable(folder)
    files = folder_files(folder)
    results = find_results_file(folder)
    if RESULTS not in files and results is not None:
        files[RESULTS] = results
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files.items()]

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision is not None:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    commit = upload_falling_back_to_lfs(
        lambda: api.create_commit(repo_id, operations, commit_message=f"Upload {folder.name}", revision=revision),
        api.endpoint,
    )
    return commit.commit_url
