"""The Accelerate training loop shared by moezoo's recipes: resumable, and strict about its settings."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import SchedulerType, get_scheduler

from ..balancing import METHODS, TaskBalancer
from ..models.modeling_utils import MultiTaskPreTrainedModel
from ..suggestions import closest_names
from ..tasks import labels_complete, own_task_labels
from .arguments import parse_json_object, require_positive
from .checkpoints import (
    CHECKPOINTS_DIR,
    TrainingState,
    check_resume_settings,
    checkpoint_name,
    discard_replaced_run,
    load_checkpoint_state,
    prune_checkpoints,
    replace_folder,
    resolve_checkpoint,
    run_settings,
    write_json_atomic,
)
from .data import TensorDataset, column_tensor, make_dataloader, make_eval_dataloader, nest_task_labels
from .lengths import LengthGroupedSampler, token_lengths
from .metrics import MultiTaskMetrics, is_better, metric_names
from .mixing import TaskMixingSampler, task_sampling_probabilities

HISTORY_FILE = "training_history.json"


@dataclass
class TrainingConfig:
    """Optimisation, evaluation and checkpointing settings of `train` (parsed by `transformers.HfArgumentParser`).

    Every value is checked when the config is built, before any data is read.
    """

    output_dir: str = field(default="outputs/run", metadata={"help": "Where checkpoints and results go."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace the run already in output_dir (its results, best/ and checkpoints/)."}
    )
    seed: int = field(default=42, metadata={"help": "Seed of initialisation, shuffling and dropout."})
    num_train_epochs: int = field(default=10, metadata={"help": "Epochs over the training split."})
    max_train_steps: int | None = field(
        default=None, metadata={"help": "Stop after this many optimiser steps (overrides num_train_epochs)."}
    )
    per_device_train_batch_size: int = field(default=1024, metadata={"help": "Training batch size per process."})
    per_device_eval_batch_size: int = field(default=8192, metadata={"help": "Evaluation batch size per process."})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float | None = field(default=None, metadata={"help": "Clip gradients to this norm."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "A transformers scheduler name."})
    warmup_ratio: float = field(default=0.0, metadata={"help": "Fraction of steps spent warming up."})
    metric_for_best_model: str = field(
        default="loss",
        metadata={
            "help": "Validation metric that picks the best checkpoint, e.g. mean_auc, or mean_score (the mean of "
            "each task's headline metric) for tasks whose losses are not on one scale."
        },
    )
    eval_every_epochs: int = field(default=1, metadata={"help": "Evaluate every this many epochs."})
    checkpointing_steps: str | None = field(
        default=None,
        metadata={"help": "Save the full training state every N optimiser steps, or 'epoch' after every epoch."},
    )
    checkpoints_total_limit: int = field(default=2, metadata={"help": "Keep only the newest this many checkpoints."})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "Continue from a checkpoint folder, or 'latest' in output_dir/checkpoints."}
    )
    dataloader_drop_last: bool | None = field(
        default=None,
        metadata={
            "help": "Drop the incomplete last training batch. Default: only for models with BatchNorm, which "
            "cannot normalise a batch of one row."
        },
    )
    task_mixing: str | None = field(
        default=None,
        metadata={
            "help": "Mixed-task data (a task_ids column): draw training examples proportional to each task's size, "
            "'temperature'-scaled (size^(1/T)) or 'uniform' over tasks. Default: a plain shuffle.",
        },
    )
    task_mixing_temperature: float = field(default=2.0, metadata={"help": "T of --task_mixing temperature."})
    group_by_length: bool = field(
        default=False,
        metadata={
            "help": "Token data (an attention_mask column): put examples of similar length in the same training batch, "
            "so that each batch, padded to its own longest example, holds little padding. Keeps --task_mixing's "
            "frequencies (see moezoo.training.lengths)."
        },
    )
    loss_balancing: str = field(
        default="equal",
        metadata={
            "help": "How the task losses make one update (moezoo.balancing): 'equal' (the tasks' fixed weights), "
            "'uncertainty', 'dwa', 'rlw', 'famo', 'gradnorm' (loss weightings), or 'mgda', 'pcgrad', 'cagrad', "
            "'imtl_g', 'aligned_mtl', 'nash_mtl' (gradient methods, one backward pass per task)."
        },
    )
    loss_balancing_options: str | None = field(
        default=None, metadata={"help": 'The method\'s options as a JSON object, e.g. \'{"c": 0.4}\' for cagrad.'}
    )
    dataloader_in_memory: bool | None = field(
        default=None,
        metadata={
            "help": "Hold the data as tensors and batch by index (fast). Default: whenever it fits in memory; "
            "False reads batches through datasets."
        },
    )

    def __post_init__(self) -> None:
        require_positive(
            num_train_epochs=self.num_train_epochs,
            max_train_steps=self.max_train_steps,
            per_device_train_batch_size=self.per_device_train_batch_size,
            per_device_eval_batch_size=self.per_device_eval_batch_size,
            eval_every_epochs=self.eval_every_epochs,
            checkpoints_total_limit=self.checkpoints_total_limit,
        )
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}.")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay cannot be negative, got {self.weight_decay}.")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be positive, got {self.max_grad_norm}.")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}.")
        schedulers = [scheduler.value for scheduler in SchedulerType]
        if self.lr_scheduler_type not in schedulers:
            raise ValueError(
                f"Unknown lr_scheduler_type {self.lr_scheduler_type!r}"
                f"{closest_names(self.lr_scheduler_type, schedulers)}; choose one of {schedulers}."
            )
        if self.task_mixing is not None:
            task_sampling_probabilities([1], self.task_mixing, self.task_mixing_temperature)  # validates both
        self.checkpoint_every_steps()  # validates checkpointing_steps
        if self.loss_balancing not in METHODS:
            raise ValueError(
                f"Unknown loss_balancing {self.loss_balancing!r}{closest_names(self.loss_balancing, METHODS)}; "
                f"choose one of {list(METHODS)}."
            )
        self.balancing_options()  # malformed JSON is reported before any work
        if Path(self.output_dir).is_file():
            raise NotADirectoryError(f"output_dir {self.output_dir} is a file; give a folder for the run's results.")

    def balancing_options(self) -> dict[str, Any]:
        """``loss_balancing_options`` parsed into a dict (empty when unset)."""
        return parse_json_object("loss_balancing_options", self.loss_balancing_options)

    def checkpoint_every_steps(self) -> int | str | None:
        """``checkpointing_steps`` parsed: a positive step count, ``"epoch"``, or ``None``."""
        value = self.checkpointing_steps
        if value is None or value == "epoch":
            return value
        if isinstance(value, str) and value.isdigit() and int(value) > 0:
            return int(value)
        raise ValueError(f"checkpointing_steps must be a positive number of steps or 'epoch', got {value!r}.")


@dataclass
class TrainingResult:
    """What `train` returns."""

    model: MultiTaskPreTrainedModel
    best_checkpoint: Path | None
    best_metrics: dict[str, float]
    best_epoch: int | None
    history: list[dict[str, Any]]
    num_processes: int
    global_step: int


@torch.no_grad()
def _gathered_batches(
    model: torch.nn.Module, dataloader: DataLoader, accelerator: Accelerator
) -> Iterator[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]]:
    """Each batch's logits and labels per task (`MultiTaskPreTrainedModel.labels_per_task`), gathered
    from all processes without the duplicates that even batches add, on the CPU. With a ``task_ids``
    column, each example's labels are kept for its own task only (NaN, missing, for the others)."""
    model.eval()
    unwrapped = accelerator.unwrap_model(model)
    with _value_checks_skipped_for(model, dataloader, accelerator):
        for batch in dataloader:
            labels = batch.pop("labels", None)
            outputs = model(**batch)
            if labels is not None:
                labels = unwrapped.labels_per_task(labels, check_values=False)
                if batch.get("task_ids") is not None:
                    # Mixed-task data: each task is scored on its own examples only.
                    labels = own_task_labels(unwrapped.task_specs, labels, batch["task_ids"])
            gathered = accelerator.gather_for_metrics((outputs.logits, labels) if labels is not None else (outputs.logits,))
            yield (
                {name: value.cpu() for name, value in gathered[0].items()},
                {name: value.cpu() for name, value in gathered[1].items()} if labels is not None else None,
            )


def predict(
    model: torch.nn.Module, dataloader: DataLoader, accelerator: Accelerator
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """Logits (and labels, when the data has them) of every example, gathered from all processes
    without the duplicates that even batches add, in the loader's order (`prepare_eval_loader` reads token
    data longest first; pass a sequential loader to keep the data's order). With a ``task_ids`` column, each
    example's labels are kept for its own task only (NaN, missing, for the others)."""
    logits_parts: list[dict[str, torch.Tensor]] = []
    label_parts: list[dict[str, torch.Tensor]] = []
    for logits, labels in _gathered_batches(model, dataloader, accelerator):
        logits_parts.append(logits)
        if labels is not None:
            label_parts.append(labels)
    if not logits_parts:
        raise ValueError("Nothing to predict: the dataset is empty.")
    logits = {name: torch.cat([part[name] for part in logits_parts]) for name in logits_parts[0]}
    labels = {name: torch.cat([part[name] for part in label_parts]) for name in label_parts[0]} if label_parts else None
    return logits, labels


def evaluate(
    model: torch.nn.Module, dataloader: DataLoader, accelerator: Accelerator, show_progress: bool = False
) -> dict[str, float]:
    """Loss and metrics of every task over a labelled dataloader (identical on every process); dense
    tasks are scored batch by batch (see `moezoo.training.metrics.MultiTaskMetrics`). ``show_progress``
    shows a bar of the batches (on the main process)."""
    unwrapped = accelerator.unwrap_model(model)
    metrics = MultiTaskMetrics(unwrapped.task_specs, unwrapped.dense_tasks)
    seen = False
    batches = _gathered_batches(model, dataloader, accelerator)
    if show_progress:
        batches = tqdm(batches, total=len(dataloader), desc="evaluating", disable=not accelerator.is_local_main_process)
    for logits, labels in batches:
        if labels is None:
            raise ValueError("evaluate needs a dataset with labels: a 'labels' column, or 'labels.{task}' columns.")
        metrics.update(logits, labels)
        seen = True
    if not seen:
        raise ValueError("Nothing to evaluate: the dataset is empty.")
    return metrics.compute()


def prepare_eval_loader(
    model: MultiTaskPreTrainedModel,
    dataset: Any,
    accelerator: Accelerator,
    batch_size: int,
    in_memory: bool | None = None,
) -> DataLoader:
    """An evaluation loader (`moezoo.training.data.make_eval_dataloader`: every example once, token data
    longest first), its data checked once when it is in memory."""
    loader = make_eval_dataloader(dataset, batch_size, in_memory=in_memory)
    _check_materialized(model, loader)
    return accelerator.prepare(loader)


def train(
    model: MultiTaskPreTrainedModel,
    train_dataset: Any,
    eval_dataset: Any | None,
    config: TrainingConfig,
    accelerator: Accelerator,
    processor: Any | None = None,
    arguments: Mapping[str, Any] | None = None,
) -> TrainingResult:
    """Train with AdamW, evaluate every ``eval_every_epochs`` epochs, and keep the best model by
    ``config.metric_for_best_model`` in ``{output_dir}/best`` (with ``processor`` saved beside it).

    Datasets hold the model's input columns and ``labels``: a `datasets.Dataset` (materialised as
    tensors when it fits in memory, see `moezoo.training.data`), a streaming `datasets.IterableDataset`,
    or a `TensorDataset`. Materialised data is checked once, here, and `forward` then skips its
    per-batch value checks. The history is written after every epoch; with ``checkpointing_steps`` the
    full state is saved under ``{output_dir}/checkpoints``, and ``resume_from_checkpoint`` continues
    from one so that the result is the same as an uninterrupted run's.

    Every checkpoint records what decides the result (``arguments``, the recipe's settings, which default to
    ``config``'s; the model's config; the processor's settings; the process count: `run_settings`); a resume
    that changes any of them is refused, naming each difference, and a damaged checkpoint file is named.
    """
    output_dir = Path(config.output_dir)
    settings = run_settings(
        arguments if arguments is not None else config_to_dict(config), model.config, processor, accelerator.num_processes
    )
    if eval_dataset is not None:
        check_metric_name(model, config.metric_for_best_model)
    drop_last = config.dataloader_drop_last
    if drop_last is None:
        drop_last = any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules())
    sampler = _task_mixing_sampler(train_dataset, config)
    if config.group_by_length:
        sampler = LengthGroupedSampler(
            token_lengths(column_tensor(train_dataset, "attention_mask", "group_by_length")), config.per_device_train_batch_size,
            sampler, seed=config.seed,
        )
    train_loader = make_dataloader(
        train_dataset, config.per_device_train_batch_size, shuffle=True, seed=config.seed, drop_last=drop_last,
        in_memory=config.dataloader_in_memory, sampler=sampler,
    )
    _check_materialized(model, train_loader)
    eval_loader = (
        prepare_eval_loader(model, eval_dataset, accelerator, config.per_device_eval_batch_size, config.dataloader_in_memory)
        if eval_dataset is not None
        else None
    )
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    if not trainable:
        raise ValueError(
            f"Every parameter of the {type(model).__name__} is frozen (--freeze): nothing would train. Freeze fewer parts."
        )
    balancer = TaskBalancer(model, config.loss_balancing, config.balancing_options(), seed=config.seed)
    if balancer.is_gradient_method and accelerator.mixed_precision == "fp16":
        raise ValueError(
            f"loss_balancing={config.loss_balancing!r} sets the gradients from each task's, which fp16 loss scaling "
            "does not cover: train in bf16 or fp32 (--mixed_precision bf16 / no)."
        )
    # A method's own parameters (uncertainty weighting's log-variances) train without weight decay.
    groups = [{"params": trainable}]
    if any(True for _ in balancer.parameters()):
        groups.append({"params": list(balancer.parameters()), "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    balancer.to(accelerator.device)
    accelerator.register_for_checkpointing(balancer)

    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError(
            f"The training data gives no full batch: {len(train_dataset)} examples, batches of "
            f"{config.per_device_train_batch_size} x {accelerator.num_processes} process(es)"
            f"{' with the incomplete last batch dropped' if drop_last else ''}. Lower per_device_train_batch_size."
        )
    total_steps = config.max_train_steps or config.num_train_epochs * steps_per_epoch
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    scheduler = accelerator.prepare(
        get_scheduler(
            config.lr_scheduler_type,
            optimizer,
            num_warmup_steps=int(config.warmup_ratio * total_steps),
            num_training_steps=total_steps,
        )
    )

    state = TrainingState(settings=settings)
    if config.resume_from_checkpoint is not None:
        checkpoint = resolve_checkpoint(output_dir, config.resume_from_checkpoint)
        state = TrainingState.load(checkpoint)
        check_resume_settings(checkpoint, state.settings, settings)
        load_checkpoint_state(lambda: accelerator.load_state(str(checkpoint)), checkpoint)
        state.settings = settings
        accelerator.print(f"Resuming from {checkpoint} (step {state.global_step}, epoch {state.epoch + 1}).")
    checkpoint_every = config.checkpoint_every_steps()

    accelerator.print(
        f"Training {type(accelerator.unwrap_model(model)).__name__} on {len(train_dataset)} examples, "
        f"{accelerator.num_processes} process(es), {num_epochs} epoch(s), {total_steps} steps."
    )
    progress = tqdm(
        total=total_steps, initial=state.global_step, disable=not accelerator.is_local_main_process, desc="training"
    )
    best_checkpoint = output_dir / "best" if state.best_epoch is not None else None
    with _value_checks_skipped_for(model, train_loader, accelerator):
        # A checkpoint saved at the last step, before its epoch's end, resumes into that epoch's end alone.
        while state.global_step < total_steps or state.step_in_epoch > 0:
            model.train()
            train_loader.set_epoch(state.epoch)
            batches = (
                accelerator.skip_first_batches(train_loader, state.step_in_epoch) if state.step_in_epoch else train_loader
            )
            running_loss = torch.tensor(state.epoch_loss_sum, device=accelerator.device)
            for batch in batches if state.global_step < total_steps else ():
                # A gradient method sets the gradients itself: data parallelism must not reduce them again.
                with balancer.backward_context(accelerator, model):
                    loss = balancer.backward(model(**batch), backward=accelerator.backward)
                if config.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                balancer.after_step(lambda: model(**batch))
                running_loss += loss
                state.step_in_epoch += 1
                state.global_step += 1
                progress.update(1)
                if isinstance(checkpoint_every, int) and state.global_step % checkpoint_every == 0:
                    # Every process resumes from this one value: the epoch's loss is a mean over
                    # processes in the end, so their mean now leaves it unchanged.
                    state.epoch_loss_sum = accelerator.reduce(running_loss.clone(), reduction="mean").item()
                    save_training_checkpoint(accelerator, state, output_dir, config.checkpoints_total_limit)
                if state.global_step >= total_steps:
                    break

            train_loss = accelerator.reduce(running_loss, reduction="mean").item() / max(state.step_in_epoch, 1)
            record: dict[str, Any] = {"epoch": state.epoch + 1, "step": state.global_step, "train_loss": train_loss}
            record.update({f"train/{name}": value for name, value in balancer.epoch_record().items()})
            balancer.end_epoch()
            is_last = state.global_step >= total_steps
            if eval_loader is not None and ((state.epoch + 1) % config.eval_every_epochs == 0 or is_last):
                metrics = evaluate(model, eval_loader, accelerator)
                record.update({f"eval/{name}": value for name, value in metrics.items()})
                value = metrics[config.metric_for_best_model]
                if is_better(config.metric_for_best_model, value, state.best_value):
                    state.best_value, state.best_epoch, state.best_metrics = value, state.epoch + 1, metrics
                    best_checkpoint = output_dir / "best"
                    save_checkpoint(accelerator, model, best_checkpoint, processor)
                    if accelerator.is_main_process:
                        discard_replaced_run(output_dir)  # the new run has saved: the run it replaces can go
                if accelerator.is_main_process:
                    # tqdm.write prints even where the bar is disabled, so guard it.
                    progress.write(_format_record(record))
            state.history.append(record)
            state.epoch += 1
            state.step_in_epoch = 0
            state.epoch_loss_sum = 0.0
            if accelerator.is_main_process:
                output_dir.mkdir(parents=True, exist_ok=True)
                write_json_atomic(output_dir / HISTORY_FILE, state.history)
            if checkpoint_every == "epoch" or (
                isinstance(checkpoint_every, int) and is_last and state.global_step % checkpoint_every
            ):
                save_training_checkpoint(accelerator, state, output_dir, config.checkpoints_total_limit)
    progress.close()
    accelerator.wait_for_everyone()
    return TrainingResult(
        model=accelerator.unwrap_model(model),
        best_checkpoint=best_checkpoint,
        best_metrics=state.best_metrics,
        best_epoch=state.best_epoch,
        history=state.history,
        num_processes=accelerator.num_processes,
        global_step=state.global_step,
    )


def save_training_checkpoint(accelerator: Accelerator, state: TrainingState, output_dir: Path, keep: int) -> Path:
    """Save the full training state (`accelerate.Accelerator.save_state` plus the loop's `TrainingState`)
    to ``{output_dir}/checkpoints/step_N``, written under a temporary name and renamed when complete;
    keep the newest ``keep`` checkpoints."""
    folder = output_dir / CHECKPOINTS_DIR
    target = folder / checkpoint_name(state.global_step)
    temporary = folder / f".{target.name}.tmp"
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        if temporary.exists():
            shutil.rmtree(temporary)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary), safe_serialization=True)
    if accelerator.is_main_process:
        state.save(temporary)
        if target.exists():
            shutil.rmtree(target)
        os.replace(temporary, target)
        prune_checkpoints(output_dir, keep)
        discard_replaced_run(output_dir)
    accelerator.wait_for_everyone()
    return target


def save_checkpoint(
    accelerator: Accelerator, model: torch.nn.Module, directory: str | os.PathLike, processor: Any | None = None
) -> None:
    """`save_pretrained` the model (and its processor) from the main process, replacing ``directory``
    only once the new checkpoint is complete."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:

        def write(folder: Path) -> None:
            accelerator.unwrap_model(model).save_pretrained(folder, save_function=accelerator.save)
            if processor is not None:
                processor.save_pretrained(folder)

        replace_folder(Path(directory), write)
    accelerator.wait_for_everyone()


def _task_mixing_sampler(dataset: Any, config: TrainingConfig) -> TaskMixingSampler | None:
    """The sampler of ``config.task_mixing`` over the dataset's ``task_ids`` column, or ``None``."""
    if config.task_mixing is None:
        return None
    task_ids = column_tensor(dataset, "task_ids", f"task_mixing={config.task_mixing!r}")
    return TaskMixingSampler(task_ids, config.task_mixing, config.task_mixing_temperature, seed=config.seed)


def _check_materialized(model: MultiTaskPreTrainedModel, loader: DataLoader) -> None:
    """Check a materialised dataset's values once (see `MultiTaskPreTrainedModel.check_input_values`)."""
    if isinstance(loader.dataset, TensorDataset):
        model.check_input_values(nest_task_labels(loader.dataset.columns))


def _value_checks_skipped_for(model: nn.Module, loader: DataLoader, accelerator: Accelerator):
    """Skip the per-batch value checks of `forward` when the loader's data was checked once, and the
    masking of missing labels when it has none."""
    if not isinstance(loader.dataset, TensorDataset):
        return contextlib.nullcontext()
    unwrapped = accelerator.unwrap_model(model)
    columns = nest_task_labels(loader.dataset.columns)
    # Per-task (possibly per-pixel) labels keep their masking: a cheap part of such a model's step.
    complete = (
        isinstance(columns.get("labels"), torch.Tensor)
        and "task_ids" not in columns
        and labels_complete(unwrapped.task_specs, columns["labels"])
    )
    return unwrapped.skip_input_value_checks(labels_complete=complete)


def check_metric_name(model: MultiTaskPreTrainedModel, name: str) -> None:
    """Raise a `ValueError`, with the closest names, unless validation will report metric ``name``."""
    known = metric_names(model.task_specs, model.dense_tasks)
    if name not in known:
        raise ValueError(
            f"metric_for_best_model={name!r} is not a metric of this model{closest_names(name, known)}; "
            f"its metrics: {known}."
        )


def _format_record(record: dict[str, Any]) -> str:
    shown = {key: value for key, value in record.items() if not key.endswith("/loss") or key == "eval/loss"}
    return "  ".join(f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}" for key, value in shown.items())


def config_to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as a JSON-serialisable dict."""
    return json.loads(json.dumps(asdict(config), default=str))
