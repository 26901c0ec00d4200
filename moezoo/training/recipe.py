"""What every recipe does after building its data and model: train, score the best checkpoint on the
test split, and write ``results.json``."""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from datasets import DatasetDict

from .. import registry
from ..models.modeling_utils import MultiTaskPreTrainedModel
from ..models.transfer import FREEZABLE_PARTS, freeze, load_for_tasks
from ..suggestions import closest_names
from .arguments import parse_json_object
from .checkpoints import prepare_output_dir, write_json_atomic
from .loop import (
    TrainingConfig,
    TrainingResult,
    check_metric_name,
    config_to_dict,
    evaluate,
    prepare_eval_loader,
    train,
)


@dataclass
class ModelArguments:
    """Which architecture a recipe builds, and config fields that override the recipe's."""

    model_name: str = field(default="mmoe", metadata={"help": "A name from moezoo.list_models()."})
    model_config: str | None = field(
        default=None, metadata={"help": 'Config overrides as JSON, e.g. \'{"num_shared_experts": 4}\'.'}
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Start from this checkpoint (a folder, a zoo entry such as mmoe-census-income, or a Hub id when "
            "online) instead of a fresh model."
        },
    )
    allow_task_changes: bool = field(
        default=False,
        metadata={
            "help": "With --model_name_or_path: give tasks the checkpoint lacks fresh gates, task experts and towers, "
            "and drop its tasks the data lacks (otherwise a task mismatch is an error)."
        },
    )
    allow_config_changes: bool = field(
        default=False,
        metadata={
            "help": "With --model_name_or_path: let --model_config change the checkpoint's model (its number of experts, "
            "say), keeping its weights where they fit; what is kept, new and dropped is logged (otherwise an error)."
        },
    )
    freeze: list[str] = field(
        default_factory=list,
        metadata={"help": "Parts to keep fixed: embeddings, image_encoder, experts, gates, feature_gates, towers, outputs."},
    )
    task_weights: str | None = field(
        default=None,
        metadata={
            "help": 'Loss weights of some tasks as JSON, e.g. \'{"income": 2.0}\' (a task not named keeps its weight, '
            "1 by default); each scales its task's loss in the total and in every --loss_balancing method."
        },
    )

    def __post_init__(self) -> None:
        known = registry.list_models()
        if self.model_name not in known:
            raise ValueError(
                f"Unknown model_name {self.model_name!r}{closest_names(self.model_name, known)}; choose one of {known}."
            )
        self.config_overrides()  # a malformed model_config is reported before any work
        for task, weight in self.task_weight_overrides().items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
                raise ValueError(f"task_weights: the weight of {task!r} must be a finite number >= 0, got {weight!r}.")
        unknown = [part for part in self.freeze if part not in FREEZABLE_PARTS]
        if unknown:
            raise ValueError(
                f"Unknown part(s) to freeze {unknown}{closest_names(unknown[0], FREEZABLE_PARTS)}; "
                f"choose from {sorted(FREEZABLE_PARTS)}."
            )
        for flag in ("allow_task_changes", "allow_config_changes"):
            if getattr(self, flag) and self.model_name_or_path is None:
                raise ValueError(f"--{flag} applies to a checkpoint: give --model_name_or_path too.")

    def config_overrides(self) -> dict[str, Any]:
        """``model_config`` parsed into a dict (empty when unset)."""
        return parse_json_object("model_config", self.model_config)

    def task_weight_overrides(self) -> dict[str, Any]:
        """``task_weights`` parsed into a dict (empty when unset)."""
        return parse_json_object("task_weights", self.task_weights)

    def weighted(self, tasks: list[dict]) -> list[dict]:
        """The recipe's task specs with ``task_weights`` applied; a task name the recipe does not train is
        an error with the closest names."""
        weights = self.task_weight_overrides()
        names = [task["name"] for task in tasks]
        unknown = [name for name in weights if name not in names]
        if unknown:
            raise ValueError(
                f"task_weights names task(s) {unknown} this run does not train{closest_names(unknown[0], names)}; "
                f"its tasks: {names}."
            )
        return [{**task, "weight": float(weights[task["name"]])} if task["name"] in weights else task for task in tasks]


def build_model(
    model_args: ModelArguments, tasks: list[dict], task_config: Mapping[str, Any] | None = None, **recipe_config: Any
) -> MultiTaskPreTrainedModel:
    """The model a recipe trains: a fresh ``model_args.model_name`` from the recipe's config
    (``recipe_config``, such as the processor's features) with ``--model_config`` on top, or, with
    ``--model_name_or_path``, that checkpoint loaded for ``tasks`` (`moezoo.models.transfer.load_for_tasks`;
    the architecture and inputs come from the checkpoint). ``task_config`` holds config fields that
    follow the tasks (M3ViT's ``dense_tasks``), set either way. ``--task_weights`` set the tasks' loss weights
    first, ``--freeze`` fixes parts after."""
    overrides = {**(task_config or {}), **model_args.config_overrides()}
    tasks = model_args.weighted(tasks)
    if model_args.model_name_or_path is None:
        model = registry.create_model(model_args.model_name, tasks=tasks, **{**recipe_config, **overrides})
    else:
        model = load_for_tasks(
            model_args.model_name_or_path, tasks, model_args.allow_task_changes, config_overrides=overrides,
            allow_config_changes=model_args.allow_config_changes,
            model_type=model_args.model_name,
        )
    if model_args.freeze:
        freeze(model, model_args.freeze)
    return model


@dataclass
class RecipeResult:
    """What `train_and_test` returns: the training run and the summary written to ``results.json``."""

    training: TrainingResult
    summary: dict[str, Any]


def start_run(config: TrainingConfig) -> Accelerator:
    """What every recipe sets up first: a check that ``output_dir`` may be written (see
    `moezoo.training.checkpoints.prepare_output_dir`), an `Accelerator` with a seedable sampler, the
    seed, deterministic algorithms, and no transformers progress bars (checkpoints are saved each time
    validation improves; the training bar is enough)."""
    accelerator = Accelerator(dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
    if accelerator.is_main_process:
        prepare_output_dir(
            config.output_dir, overwrite=config.overwrite_output_dir, resuming=config.resume_from_checkpoint is not None
        )
    accelerator.wait_for_everyone()
    transformers.utils.logging.disable_progress_bar()
    set_seed(config.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return accelerator


def subset_indices(
    split: str, size: int, max_train_samples: int | None, max_eval_samples: int | None, seed: int
) -> np.ndarray | None:
    """The rows of a split of ``size`` rows that a run keeps: a random ``max_train_samples`` of ``train`` (the
    order of ``datasets.Dataset.shuffle(seed=seed)``), the first ``max_eval_samples`` of any other split;
    ``None`` for all of them."""
    if split == "train":
        if max_train_samples is None:
            return None
        return np.random.default_rng(seed).permutation(size)[:max_train_samples]
    return None if max_eval_samples is None else np.arange(min(max_eval_samples, size))


def subset_selector(
    max_train_samples: int | None, max_eval_samples: int | None, seed: int
) -> Callable[[str, int], np.ndarray | None]:
    """`subset_indices` for a run's settings, as a data builder's ``select_rows`` (see
    `moezoo.data.load_multi_mnist`), so that only the rows a run uses are built."""
    return partial(subset_indices, max_train_samples=max_train_samples, max_eval_samples=max_eval_samples, seed=seed)


def subsample_splits(
    splits: DatasetDict, max_train_samples: int | None, max_eval_samples: int | None, seed: int
) -> DatasetDict:
    """A random ``max_train_samples`` of ``train`` and the first ``max_eval_samples`` of the other splits
    (``None``: all of them; see `subset_indices`)."""
    splits = DatasetDict(splits)
    for name in splits:
        rows = subset_indices(name, len(splits[name]), max_train_samples, max_eval_samples, seed)
        if rows is not None:
            splits[name] = splits[name].select(rows)
    return splits


def machine_environment(device: torch.device, num_processes: int = 1) -> dict[str, Any]:
    """The hardware (``"2 x <GPU name>"``, or ``"CPU (<arch>, <n> cores), <p> process(es)"``, which the cards
    read) and the versions of the libraries that ran on it."""
    if device.type == "cuda":
        hardware = f"{num_processes} x {torch.cuda.get_device_name(device)}"
    else:
        hardware = f"CPU ({platform.machine()}, {os.cpu_count()} cores), {num_processes} process(es)"
    versions = {name: importlib.metadata.version(name) for name in ("moezoo", "torch", "transformers", "accelerate")}
    return {"hardware": hardware, "versions": versions}


def run_environment(accelerator: Accelerator, train_seconds: float) -> dict[str, Any]:
    """Where and how fast a run trained: hardware, library versions, the training wall time (of a resumed run:
    its last part) and the process's peak memory."""
    return {
        **machine_environment(accelerator.device, accelerator.num_processes), "train_seconds": round(train_seconds, 1),
        "peak_memory_mb": peak_memory_mb(),
    }


def peak_memory_mb() -> float:
    """The largest resident memory of this process so far, in MB (of the main process under Accelerate)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def train_and_test(
    model: MultiTaskPreTrainedModel,
    splits: DatasetDict,
    config: TrainingConfig,
    accelerator: Accelerator,
    processor: Any | None = None,
    arguments: Mapping[str, Any] | None = None,
    data_report: Mapping[str, Any] | None = None,
) -> RecipeResult:
    """Train on ``splits["train"]``, keep the best checkpoint by validation, and score it on ``splits["test"]``.

    The best checkpoint is scored as a user would load it (``from_pretrained``). The validation and test
    metrics, the best epoch, ``arguments`` (the recipe's settings), ``data_report`` (what the recipe
    measured of its data, such as the share of truncated examples) and the run's history (a record per
    epoch: its learning curve) are written to ``{output_dir}/results.json`` and their metrics other than
    losses are printed.
    """
    for name in ("train", "validation", "test"):
        if name not in splits:
            raise KeyError(f"train_and_test needs a {name!r} split; got {sorted(splits)}.")
    check_metric_name(model, config.metric_for_best_model)
    results_path = Path(config.output_dir, "results.json")
    settings = {**(arguments or {}), **config_to_dict(config)}
    if accelerator.is_main_process:
        results_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(results_path, {"completed": False, "arguments": settings})
    started = time.perf_counter()
    result = train(model, splits["train"], splits["validation"], config, accelerator, processor=processor, arguments=settings)
    train_seconds = time.perf_counter() - started

    best_model = type(result.model).from_pretrained(result.best_checkpoint).to(accelerator.device)
    test_loader = prepare_eval_loader(
        best_model, splits["test"], accelerator, config.per_device_eval_batch_size, config.dataloader_in_memory
    )
    test_metrics = evaluate(best_model, test_loader, accelerator)
    summary = {
        "completed": True,
        "model_type": best_model.config.model_type,
        "num_parameters": best_model.num_parameters(),
        "num_processes": result.num_processes,
        "best_epoch": result.best_epoch,
        "validation": result.best_metrics,
        "test": test_metrics,
        "arguments": settings,
        **({"data": dict(data_report)} if data_report else {}),
        "environment": run_environment(accelerator, train_seconds),
        # Each epoch's training loss and validation metrics (and balancing statistics): the run's learning curve.
        "history": result.history,
    }
    if accelerator.is_main_process:
        write_json_atomic(results_path, summary)
    accelerator.print(f"best epoch {result.best_epoch}; checkpoint: {result.best_checkpoint}")
    for split in ("validation", "test"):
        scores = summary[split]
        shown = [name for name in sorted(scores) if "/" in name and not name.endswith("/loss")]
        accelerator.print(f"{split}: " + "  ".join(f"{name}={scores[name]:.4f}" for name in shown))
    return RecipeResult(training=result, summary=summary)
