"""Per-task evaluation metrics, computed with torchmetrics on predictions gathered from all processes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torchmetrics.functional.classification import (
    binary_accuracy,
    binary_auroc,
    multiclass_accuracy,
    multilabel_auroc,
)
from torchmetrics.functional.regression import mean_absolute_error, mean_squared_error

from ..tasks import IGNORE_INDEX, TaskSpec, task_predictions, weighted_task_losses

# Metrics where a lower value is better; every other metric is better when higher.
LOWER_IS_BETTER = ("loss", "mse", "mae")
# Metrics also reported as their mean over the tasks that have them, as "mean_{metric}".
AVERAGED_METRICS = ("auc", "accuracy")
#: The metrics `task_metrics` reports for each task kind.
KIND_METRICS = {
    "binary": ("auc", "accuracy"),
    "multiclass": ("accuracy",),
    "multilabel": ("auc",),
    "regression": ("mse", "mae"),
}


def metric_names(tasks: Sequence[TaskSpec]) -> list[str]:
    """Every name `multitask_metrics` can report for these tasks: ``loss``, ``{task}/loss``,
    ``{task}/{metric}`` and the ``mean_{metric}`` averages."""
    names = ["loss"]
    reported: set[str] = set()
    for task in tasks:
        names += [f"{task.name}/loss", *(f"{task.name}/{metric}" for metric in KIND_METRICS[task.kind])]
        reported.update(KIND_METRICS[task.kind])
    return names + [f"mean_{metric}" for metric in AVERAGED_METRICS if metric in reported]


def task_metrics(task: TaskSpec, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Metrics of one task over the examples whose labels are present.

    binary: ``auc``, ``accuracy``; multiclass: ``accuracy``; multilabel: ``auc`` (macro);
    regression: ``mse``, ``mae``. Empty when no label is present.
    """
    logits, labels = logits.float(), labels.float()
    if task.kind == "multiclass":
        labels = labels.squeeze(1)
        present = ~torch.isnan(labels) & (labels != IGNORE_INDEX)
        if not present.any():
            return {}
        return {
            "accuracy": multiclass_accuracy(
                logits[present], labels[present].long(), num_classes=task.num_labels, average="micro"
            ).item()
        }
    if task.kind == "multilabel":
        present = ~torch.isnan(labels).any(dim=1)
        if not present.any():
            return {}
        probs = task_predictions(task, logits[present])
        return {"auc": multilabel_auroc(probs, labels[present].long(), num_labels=task.num_labels).item()}
    present = ~torch.isnan(labels).any(dim=1)
    if not present.any():
        return {}
    predictions = task_predictions(task, logits[present])
    targets = labels[present].squeeze(1) if labels.shape[1] == 1 else labels[present]
    if task.kind == "binary":
        targets = targets.long()
        return {
            "auc": binary_auroc(predictions, targets).item(),
            "accuracy": binary_accuracy(predictions, targets).item(),
        }
    return {"mse": mean_squared_error(predictions, targets).item(), "mae": mean_absolute_error(predictions, targets).item()}


def multitask_metrics(
    tasks: Sequence[TaskSpec], logits: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor]
) -> dict[str, float]:
    """Every task's loss and metrics as ``"{task}/{metric}"``, the weighted total ``"loss"``, and
    ``"mean_auc"`` / ``"mean_accuracy"`` over the tasks that report an AUC / an accuracy."""
    results: dict[str, float] = {}
    logits = {name: value.float() for name, value in logits.items()}
    labels = {name: value.float() for name, value in labels.items()}
    total, losses = weighted_task_losses(tasks, logits, labels)
    averaged: dict[str, list[float]] = {name: [] for name in AVERAGED_METRICS}
    for task in tasks:
        if task.name not in losses:
            continue
        results[f"{task.name}/loss"] = losses[task.name].item()
        for name, value in task_metrics(task, logits[task.name], labels[task.name]).items():
            results[f"{task.name}/{name}"] = value
            if name in averaged:
                averaged[name].append(value)
    results["loss"] = total.item() if total is not None else 0.0
    for name, values in averaged.items():
        if values:
            results[f"mean_{name}"] = sum(values) / len(values)
    return results


def is_better(metric_name: str, value: float, best: float | None) -> bool:
    """Whether ``value`` improves on ``best`` for metric ``metric_name``."""
    if best is None:
        return True
    lower = metric_name.rsplit("/", 1)[-1] in LOWER_IS_BETTER
    return value < best if lower else value > best
