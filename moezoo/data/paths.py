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
