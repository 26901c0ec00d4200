"""What a training run keeps in its output folder, and how it is written without ever leaving half a file.

    {output_dir}/
        results.json               the recipe's summary; "completed": false until the run ends
        training_history.json      one record per finished epoch, rewritten after each
        best/                      the best model so far (save_pretrained), with its processor
        checkpoints/step_00000123/ the full training state (accelerate.save_state + training_state.json)
        .previous_run/             a run being replaced (--overwrite_output_dir), until its replacement saves

Folders are written under a temporary name and renamed into place, so a run killed while writing
leaves the previous version intact and no folder that looks complete but is not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from safetensors import safe_open

#: What a moezoo run writes into its output folder; anything else there is left alone.
RUN_ARTIFACTS = ("results.json", "training_history.json", "best", "checkpoints")
CHECKPOINTS_DIR = "checkpoints"
TRAINING_STATE_FILE = "training_state.json"
#: Where a run replaced with ``--overwrite_output_dir`` waits until its replacement has saved something.
PREVIOUS_RUN_DIR = ".previous_run"
#: Settings a resumed run may change: where things are written and kept, and how data is held in memory.
#: Every other setting changes the result, so a resume that changes it is refused.
RESUME_NEUTRAL_SETTINGS = frozenset(
    {
        "output_dir", "overwrite_output_dir", "resume_from_checkpoint", "checkpointing_steps",
        "checkpoints_total_limit", "data_dir", "dataloader_in_memory",
    }
)
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
        settings: Everything that decides the run's result (see `run_settings`), compared on resume.
    """

    global_step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    epoch_loss_sum: float = 0.0
    best_value: float | None = None
    best_epoch: int | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

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


def run_settings(
    arguments: Mapping[str, Any], model_config: Any, processor: Any | None, num_processes: int
) -> dict[str, Any]:
    """What decides a run's result, as JSON values: the recipe's settings (less `RESUME_NEUTRAL_SETTINGS`:
    seed, data subset, learning rate, batch sizes, ...), the model's config (architecture, widths, tasks),
    the processor's settings and the number of processes."""
    settings = {name: value for name, value in arguments.items() if name not in RESUME_NEUTRAL_SETTINGS}
    config = json.loads(model_config.to_json_string())
    for volatile in ("transformers_version", "_name_or_path"):
        config.pop(volatile, None)
    settings["model"] = config
    if processor is not None:
        describe = getattr(processor, "to_dict", None)
        settings["processor"] = describe() if callable(describe) else {"class": type(processor).__name__}
        settings["processor"].pop("processor_class", None)
    settings["num_processes"] = num_processes
    return json.loads(json.dumps(settings, default=str))


def settings_differences(saved: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Each setting that differs, as ``name: checkpoint X, this run Y`` (nested settings by dotted name,
    after the top-level ones; long values shortened)."""
    differences, nested = [], []
    for name in sorted(set(saved) | set(current)):
        if name not in saved and current[name] in (None, False):
            continue  # a setting newer than the checkpoint, left off: it changes nothing
        before, after = saved.get(name, "unset"), current.get(name, "unset")
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            nested += settings_differences(before, after, f"{prefix}{name}.")
        elif before != after:
            differences.append(f"{prefix}{name}: checkpoint {_shortened(before)}, this run {_shortened(after)}")
    return differences + nested


def _shortened(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


#: How many differences a refused resume names before it counts the rest.
SHOWN_DIFFERENCES = 8


def check_resume_settings(checkpoint: Path, saved: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    """Refuse to resume ``checkpoint`` with settings that change the result, naming each difference (the
    recipe's own settings first; those that follow from them, such as a processor fitted on another data
    subset, after).

    Raises:
        ValueError: a setting of this run differs from the checkpoint's run.
    """
    differences = settings_differences(saved, current) if saved else []
    if differences:
        shown = "; ".join(differences[:SHOWN_DIFFERENCES])
        if len(differences) > SHOWN_DIFFERENCES:
            shown += f"; and {len(differences) - SHOWN_DIFFERENCES} more"
        raise ValueError(
            f"Cannot resume from {checkpoint}: this run's settings differ from the checkpoint's, so the result "
            f"would be neither the interrupted run nor a new one. Differences: {shown}. Resume with the "
            "checkpoint's settings, or start a new run (another --output_dir, or --overwrite_output_dir)."
        )


def damaged_files(checkpoint: Path) -> list[str]:
    """The files of a checkpoint folder that cannot be read, each with its cause; checked without
    unpickling anything (safetensors headers and tensors, the zip structure and CRCs of torch's files, JSON)."""
    damaged = []
    for path in sorted(checkpoint.iterdir()):
        try:
            if path.suffix == ".safetensors":
                with safe_open(path, framework="pt") as weights:
                    for name in weights.keys():
                        weights.get_tensor(name)
            elif path.suffix in (".bin", ".pkl", ".pt", ".pth"):
                with zipfile.ZipFile(path) as archive:
                    broken = archive.testzip()
                if broken is not None:
                    raise ValueError(f"{broken} fails its CRC check")
            elif path.suffix == ".json":
                json.loads(path.read_text())
        except Exception as error:  # any failure to read is the damage being looked for
            damaged.append(f"{path} ({type(error).__name__}: {error})")
    return damaged


def load_checkpoint_state(load: Callable[[], None], checkpoint: Path) -> None:
    """Run ``load`` (Accelerate's ``load_state`` of ``checkpoint``); a failure caused by a damaged file is an
    `OSError` naming the file and its cause.

    Raises:
        OSError: a file of the checkpoint is truncated or corrupt.
    """
    try:
        load()
    except Exception as error:  # Accelerate, torch and safetensors raise their own types for a damaged file
        damaged = damaged_files(checkpoint)
        if not damaged:
            raise
        raise OSError(
            f"The checkpoint {checkpoint} is damaged: {'; '.join(damaged)}. Resume from an earlier checkpoint under "
            f"{checkpoint.parent}, or start the run again."
        ) from error


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
    replaces it (``overwrite``). A replaced run is moved into ``{output_dir}/.previous_run`` and deleted
    only once its replacement has saved a checkpoint or its best model (`discard_replaced_run`); if the
    replacement stops before that, the next run in the folder first puts the earlier run back. Files that
    are not run artifacts are left alone.

    Raises:
        NotADirectoryError: ``output_dir`` is a file.
        FileExistsError: ``output_dir`` holds another run and neither flag is given.
    """
    folder = Path(output_dir)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"output_dir {folder} is a file; give a folder for the run's results.")
    restore_replaced_run(folder)
    found = existing_run_artifacts(folder)
    if not found or resuming:
        return
    if not overwrite:
        raise FileExistsError(
            f"output_dir {folder} already holds a run ({', '.join(found)}). Pass --overwrite_output_dir to "
            "replace it, --resume_from_checkpoint latest to continue it, or choose another --output_dir."
        )
    previous = folder / PREVIOUS_RUN_DIR
    previous.mkdir()
    for name in found:
        os.replace(folder / name, previous / name)


def restore_replaced_run(folder: Path) -> None:
    """Put back a run that ``--overwrite_output_dir`` moved aside, when its replacement stopped before saving
    anything (what it left, a results.json that says "completed": false and its history, is removed)."""
    previous = folder / PREVIOUS_RUN_DIR
    if not previous.is_dir():
        return
    if (folder / "best").exists() or list_checkpoints(folder):  # the replacement had saved: nothing to restore
        shutil.rmtree(previous)
        return
    for name in existing_run_artifacts(folder):
        path = folder / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for item in previous.iterdir():
        os.replace(item, folder / item.name)
    previous.rmdir()
    print(
        f"Restored the earlier run in {folder}: the run that was to replace it (--overwrite_output_dir) stopped "
        "before saving anything.",
        file=sys.stderr,
    )


def discard_replaced_run(output_dir: str | os.PathLike) -> None:
    """Delete the run ``--overwrite_output_dir`` moved aside, once its replacement has saved something."""
    previous = Path(output_dir) / PREVIOUS_RUN_DIR
    if previous.exists():
        shutil.rmtree(previous)
