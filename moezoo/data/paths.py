"""Where moezoo looks for data sets on disk."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "MOEZOO_DATA_DIR"
_REPO_ROOT = Path(__file__).resolve().parents[2]


def default_data_dir() -> Path | None:
    """The first data folder that exists: ``$MOEZOO_DATA_DIR``, ``../shared/data`` beside the working
    directory, or ``../shared/data`` beside the moezoo checkout; ``None`` if there is none."""
    candidates = []
    if os.environ.get(DATA_DIR_ENV):
        candidates.append(Path(os.environ[DATA_DIR_ENV]))
    candidates += [Path.cwd().parent / "shared" / "data", _REPO_ROOT.parent / "shared" / "data"]
    return next((path for path in candidates if path.is_dir()), None)


def resolve_dataset_dir(data_dir: str | os.PathLike | None, name: str, files: list[str], source: str) -> Path:
    """The folder holding data set ``name`` with all of ``files``, or a `FileNotFoundError` that says
    where to get them and how to point moezoo at them.

    Args:
        data_dir: A folder holding ``name/`` (as ../shared/data does) or the data set's files directly;
            ``None`` uses `default_data_dir`.
        name: The data set's folder name.
        files: File names that must be present.
        source: Where the files can be downloaded, for the error message.
    """
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    searched = []
    if root is not None:
        for folder in (root / name, root):
            searched.append(str(folder))
            if all((folder / file).is_file() for file in files):
                return folder
    where = ", ".join(searched) if searched else f"no data folder (${DATA_DIR_ENV} unset, no ../shared/data)"
    raise FileNotFoundError(
        f"The {name} files {files} were not found (looked in: {where}). Download them from {source}, put them "
        f"in a folder '{name}/', and pass its parent as data_dir= (or --data_dir), or set ${DATA_DIR_ENV}."
    )
