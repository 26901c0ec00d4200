"""Where a model is read from: a local folder or a Hub repository, told apart before anything is loaded, so
that a folder that is not there is reported as missing rather than as a malformed repository id."""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id


def looks_like_local_path(name: str) -> bool:
    """Whether ``name`` reads as a path on this machine: absolute, ``./`` or ``~`` relative, more than one
    ``/``, a path separator other than ``/``, or under a folder that exists here (``outputs/run``)."""
    if name.startswith((".", "/", "~")) or os.sep != "/" and os.sep in name:
        return True
    parts = name.split("/")
    return len(parts) > 2 or (len(parts) > 1 and Path(parts[0]).is_dir())


def require_folder_or_repo_id(name_or_path: str | os.PathLike, what: str = "checkpoint") -> None:
    """Return if ``name_or_path`` is an existing folder or reads as a Hub repository id (``org/name``).

    Raises:
        FileNotFoundError: a local path that does not exist, or a name that is neither (saying which).
    """
    name = str(name_or_path)
    if Path(name).is_dir():
        return
    if Path(name).exists():
        raise NotADirectoryError(f"The {what} {name} is a file; give the folder that holds its config.json.")
    if looks_like_local_path(name):
        raise FileNotFoundError(f"The {what} folder {name} does not exist.")
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise FileNotFoundError(
            f"The {what} {name!r} is no folder here and no Hub repository id (org/name)."
        ) from None
