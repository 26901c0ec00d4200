"""Publishing a checkpoint folder to the Hub as a zoo repository: the card, results and figure, then
the model and its processor through their own ``push_to_hub``."""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi
from transformers import AutoModel
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

from ..adapters.modeling_adapted import HEADS_FILE
from ..models.modeling_utils import checkpoint_processor_class
from ..zoo import processor_from_pretrained
from .folder import CARD, FIGURE, RESULTS, find_results_file


def push_checkpoint(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
) -> str:
    """Push a checkpoint folder (a zoo entry, or a recipe's ``best/`` after ``moezoo card``) to ``repo_id``
    so that the repository holds what a zoo folder holds: ``README.md``, ``results.json`` (from the
    folder or the one above), the routing figure, then the model and its processor (or tokenizer), each
    through its `transformers` ``push_to_hub``. An adapted transformer is pushed adapter-style: its config,
    adapter files and heads, never the base model's weights. The card is committed first, so the model's ``push_to_hub`` keeps it
    instead of writing transformers' default one.

    Everything is read and loaded before the first request, so a folder that cannot be published
    (no weights, no card, weights that do not load) leaves the Hub untouched.

    Returns:
        The URL of the last commit.

    Raises:
        FileNotFoundError: no config, no weights, or no card in the folder.
    """
    folder = Path(folder)
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
    model = AutoModel.from_pretrained(folder)
    processor = processor_from_pretrained(folder) if checkpoint_processor_class(folder) else None
    results = find_results_file(folder)
    operations = [CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=str(folder / CARD))]
    if results is not None:
        operations.append(CommitOperationAdd(path_in_repo=RESULTS, path_or_fileobj=str(results)))
    if (folder / FIGURE).is_file():
        operations.append(CommitOperationAdd(path_in_repo=FIGURE, path_or_fileobj=str(folder / FIGURE)))

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision is not None:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    api.create_commit(repo_id, operations, commit_message="Upload model card and results", revision=revision)
    commit = model.push_to_hub(repo_id, token=token, revision=revision, commit_message="Upload model")
    if processor is not None:
        commit = processor.push_to_hub(repo_id, token=token, revision=revision, commit_message="Upload processor")
    return commit.commit_url
