"""The Accelerate training loop shared by moezoo's recipes."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from datasets import Dataset
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from ..models.modeling_utils import MultiTaskPreTrainedModel
from ..tasks import split_labels
from .metrics import is_better, multitask_metrics


@dataclass
class TrainingConfig:
    """Optimisation and evaluation settings of `train` (parsed by `transformers.HfArgumentParser`)."""

    output_dir: str = field(default="outputs/run", metadata={"help": "Where checkpoints and results go."})
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
        default="loss", metadata={"help": "Validation metric that picks the best checkpoint, e.g. mean_auc."}
    )
    eval_every_epochs: int = field(default=1, metadata={"help": "Evaluate every this many epochs."})


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


def make_dataloader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    """A DataLoader over a processed dataset (columns already in torch format)."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)


@torch.no_grad()
def predict(
    model: torch.nn.Module, dataloader: DataLoader, accelerator: Accelerator
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """Logits (and labels, when the data has them) of every example, gathered from all processes
    without the duplicates that even batches add."""
    model.eval()
    task_specs = accelerator.unwrap_model(model).task_specs
    logits_parts: list[dict[str, torch.Tensor]] = []
    label_parts: list[dict[str, torch.Tensor]] = []
    for batch in dataloader:
        labels = batch.pop("labels", None)
        outputs = model(**batch)
        gathered = accelerator.gather_for_metrics(
            (outputs.logits, split_labels(task_specs, labels)) if labels is not None else (outputs.logits,)
        )
        logits_parts.append({name: value.cpu() for name, value in gathered[0].items()})
        if labels is not None:
            label_parts.append({name: value.cpu() for name, value in gathered[1].items()})
    logits = {name: torch.cat([part[name] for part in logits_parts]) for name in logits_parts[0]}
    labels = {name: torch.cat([part[name] for part in label_parts]) for name in label_parts[0]} if label_parts else None
    return logits, labels


def evaluate(model: torch.nn.Module, dataloader: DataLoader, accelerator: Accelerator) -> dict[str, float]:
    """Loss and metrics of every task over a labelled dataloader (identical on every process)."""
    logits, labels = predict(model, dataloader, accelerator)
    if labels is None:
        raise ValueError("evaluate needs a dataset with a 'labels' column.")
    return multitask_metrics(accelerator.unwrap_model(model).task_specs, logits, labels)


def train(
    model: MultiTaskPreTrainedModel,
    train_dataset: Dataset,
    eval_dataset: Dataset | None,
    config: TrainingConfig,
    accelerator: Accelerator,
    processor: Any | None = None,
) -> TrainingResult:
    """Train with AdamW, evaluate every epoch, and keep the best checkpoint by
    ``config.metric_for_best_model`` in ``{output_dir}/best`` (with ``processor`` saved beside it).

    Datasets must hold the model's input columns and ``labels``, in torch format.
    """
    output_dir = Path(config.output_dir)
    train_loader = make_dataloader(train_dataset, config.per_device_train_batch_size, shuffle=True, seed=config.seed)
    eval_loader = (
        make_dataloader(eval_dataset, config.per_device_eval_batch_size, shuffle=False, seed=config.seed)
        if eval_dataset is not None
        else None
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    if eval_loader is not None:
        eval_loader = accelerator.prepare(eval_loader)

    steps_per_epoch = len(train_loader)
    total_steps = config.max_train_steps or config.num_train_epochs * steps_per_epoch
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    scheduler = get_scheduler(
        config.lr_scheduler_type,
        optimizer,
        num_warmup_steps=int(config.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    scheduler = accelerator.prepare(scheduler)

    accelerator.print(
        f"Training {type(accelerator.unwrap_model(model)).__name__} on {len(train_dataset)} examples, "
        f"{accelerator.num_processes} process(es), {num_epochs} epoch(s), {total_steps} steps."
    )
    progress = tqdm(total=total_steps, disable=not accelerator.is_local_main_process, desc="training")
    history: list[dict[str, Any]] = []
    best_value = best_epoch = best_checkpoint = None
    best_metrics: dict[str, float] = {}
    step = 0
    for epoch in range(num_epochs):
        model.train()
        running_loss = torch.zeros((), device=accelerator.device)
        epoch_steps = 0
        for batch in train_loader:
            outputs = model(**batch)
            accelerator.backward(outputs.loss)
            if config.max_grad_norm is not None:
                accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            running_loss += outputs.loss.detach()
            epoch_steps += 1
            step += 1
            progress.update(1)
            if step >= total_steps:
                break
        train_loss = accelerator.reduce(running_loss, reduction="mean").item() / max(epoch_steps, 1)
        record: dict[str, Any] = {"epoch": epoch + 1, "step": step, "train_loss": train_loss}
        is_last = step >= total_steps or epoch == num_epochs - 1
        if eval_loader is not None and ((epoch + 1) % config.eval_every_epochs == 0 or is_last):
            metrics = evaluate(model, eval_loader, accelerator)
            record.update({f"eval/{name}": value for name, value in metrics.items()})
            if config.metric_for_best_model not in metrics:
                raise KeyError(
                    f"metric_for_best_model={config.metric_for_best_model!r} is not among the metrics "
                    f"{sorted(metrics)}."
                )
            value = metrics[config.metric_for_best_model]
            if is_better(config.metric_for_best_model, value, best_value):
                best_value, best_epoch, best_metrics = value, epoch + 1, metrics
                best_checkpoint = output_dir / "best"
                save_checkpoint(accelerator, model, best_checkpoint, processor)
            progress.write(_format_record(record))
        history.append(record)
        if step >= total_steps:
            break
    progress.close()

    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "training_history.json").write_text(json.dumps(history, indent=2) + "\n")
    accelerator.wait_for_everyone()
    return TrainingResult(
        model=accelerator.unwrap_model(model),
        best_checkpoint=best_checkpoint,
        best_metrics=best_metrics,
        best_epoch=best_epoch,
        history=history,
        num_processes=accelerator.num_processes,
        global_step=step,
    )


def save_checkpoint(
    accelerator: Accelerator, model: torch.nn.Module, directory: str | os.PathLike, processor: Any | None = None
) -> None:
    """`save_pretrained` the model (and its processor) from the main process."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(directory, save_function=accelerator.save)
        if processor is not None:
            processor.save_pretrained(directory)
    accelerator.wait_for_everyone()


def _format_record(record: dict[str, Any]) -> str:
    shown = {key: value for key, value in record.items() if not key.endswith("/loss") or key == "eval/loss"}
    return "  ".join(f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}" for key, value in shown.items())


def config_to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as a JSON-serialisable dict."""
    return json.loads(json.dumps(asdict(config), default=str))
