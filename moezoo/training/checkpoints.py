"""What a training run keeps in its output folder, and how it is written without ever leaving half a file.

    {output_dir}/
        results.json               the recipe's summary; "completed": false until the run ends
        training_history.json      one record per finished epoch, rewritten after each
        best/                      the best model so far (save_pretrained), with its processor
        checkpoints/step_00000123/ the full training state (accelerate.save_state + training_state.json)

Folders are written under a temporary name and renamed into place, so a run killed while writing
leaves the previous version intact and no folder that looks complete but is not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: What a moezoo run writes into its output folder; anything else there is left alone.
RUN_ARTIFACTS = ("results.json", "training_history.json", "best", "checkpoints")
CHECKPOINTS_DIR = "checkpoints"
TRAINING_STATE_FILE = "training_state.json"
_CHECKPOINT_NAME = re.compile(r"step_(\d+)")


@dataclass
class TrainingState:
    """The loop's own state, saved as JSON beside Accelerate's (model, optimizer, scheduler, RNG, sampler).

    Attributes:
        global_step: Optimiser steps taken.
        epoch: The epoch in progress (0-based); equal to the number of finished epochs between epochs.
        step_in_epoch: Batches of ``epoch`` already trained on (the sampler position).
        epoch_loss_sum: Sum of the training losses of those batches (for the epoch's mean loss).
        best_value: Best value so far of the metric that picks the best checkpoint.
        best_epoch: The epoch (1-based) that reached it.
        best_metrics: All validation metrics of that epoch.
        history: One record per finished epoch.
    """

    global_step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    epoch_loss_sum: float = 0.0
    best_value: float | None = None
    best_epoch: int | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    def save(self, directory: Path) -> None:
        write_json_atomic(directory / TRAINING_STATE_FILE, asdict(self))

    @classmethod
    def load(cls, directory: Path) -> TrainingState:
        path = directory / TRAINING_STATE_FILE
        try:
            values = json.loads(path.read_text())
            return cls(**values)
        except (OSError, ValueError, TypeError) as error:
            raise ValueError(f"{path} is missing or not a moezoo training state ({error}).") from error


def write_json_atomic(path: Path, value: Any) -> None:
    """Write ``value`` as JSON to ``path`` through a temporary file, so readers never see half of it."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(temporary, path)


def replace_folder(target: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(folder)`` on a fresh temporary folder, then put that folder at ``target``, replacing
    whatever was there only once the new one is complete."""
    target = Path(target)
    temporary = target.with_name(f".{target.name}.tmp")
    previous = target.with_name(f".{target.name}.old")
    for stale in (temporary, previous):
        if stale.exists():
            shutil.rmtree(stale)
    write(temporary)
    if target.exists():
        os.replace(target, previous)
    os.replace(temporary, target)
    if previous.exists():
        shutil.rmtree(previous)


def checkpoint_name(global_step: int) -> str:
    return f"step_{global_step:08d}"


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """The complete checkpoints of a run, oldest first."""
    folder = Path(output_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    found = [
        path
        for path in folder.iterdir()
        if _CHECKPOINT_NAME.fullmatch(path.name) and (path / TRAINING_STATE_FILE).is_file()
    ]
    return sorted(found, key=lambda path: int(_CHECKPOINT_NAME.fullmatch(path.name).group(1)))


def resolve_checkpoint(output_dir: str | os.PathLike, resume_from_checkpoint: str) -> Path:
    """The checkpoint folder that ``resume_from_checkpoint`` names: ``"latest"`` (the newest complete
    checkpoint under ``output_dir``) or a path."""
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            raise FileNotFoundError(
                f"--resume_from_checkpoint latest: {Path(output_dir) / CHECKPOINTS_DIR} holds no complete "
                "checkpoint. Was the run started with --checkpointing_steps?"
            )
        return checkpoints[-1]
    path = Path(resume_from_checkpoint)
    if not (path / TRAINING_STATE_FILE).is_file():
        raise FileNotFoundError(
            f"--resume_from_checkpoint {path}: not a complete moezoo checkpoint (no {TRAINING_STATE_FILE}); "
            f"give a folder under {Path(output_dir) / CHECKPOINTS_DIR} or 'latest'."
        )
    return path


def prune_checkpoints(output_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    for path in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(path)


def existing_run_artifacts(output_dir: str | os.PathLike) -> list[str]:
    """The `RUN_ARTIFACTS` that ``output_dir`` already holds."""
    folder = Path(output_dir)
    return [name for name in RUN_ARTIFACTS if (folder / name).exists()]


def prepare_output_dir(output_dir: str | os.PathLike, overwrite: bool, resuming: bool) -> None:
    """Check that a run may write into ``output_dir`` before it does any work.

    A folder holding another run's results is refused unless the run resumes it (``resuming``) or
    replaces it (``overwrite``: its run artifacts are deleted; other files are left alone).

    Raises:
        NotADirectoryError: ``output_dir`` is a file.
        FileExistsError: ``output_dir`` holds another run and neither flag is given.
    """
    folder = Path(output_dir)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"output_dir {folder} is a file; give a folder for the run's results.")
    found = existing_run_artifacts(folder)
    if not found or resuming:
        return
    if not overwrite:
        raise FileExistsError(
            f"output_dir {folder} already holds a run ({', '.join(found)}). Pass --overwrite_output_dir to "
            "replace it, --resume_from_checkpoint latest to continue it, or choose another --output_dir."
        )
    for name in found:
        path = folder / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
