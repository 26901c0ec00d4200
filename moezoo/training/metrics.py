"""Per-task evaluation metrics, computed with torchmetrics on predictions gathered from all processes.

Image-level and tabular tasks are scored on all their gathered predictions at once. Dense (per-pixel)
tasks are scored as the batches arrive, with torchmetrics' stateful metrics: holding the per-pixel
logits of a whole split would take gigabytes.

Degenerate cases follow the metrics' definitions, where torchmetrics' edge-case rules do not:

- Matthews correlation is 0 when a constant appears on either side (a model that predicts one class, or
  a split with one class), as sklearn and GLUE's scorer give; torchmetrics returns other values there
  (0.1826 for one predicted class in eight examples, 0.0256 on CoLA's dev set).
- Pearson and Spearman correlations are 0 when the predictions or the targets are constant: nothing
  varies together, the same convention as the Matthews correlation (a Pearson correlation of binary
  vectors); torchmetrics returns NaN for Pearson there.
- An AUC needs both classes among the targets; with one it is undefined and reported as NaN, which
  `is_better` never prefers and the ``mean_auc`` average leaves out (torchmetrics returns 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torchmetrics import MeanAbsoluteError, MeanSquaredError
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex
from torchmetrics.functional.classification import (
    binary_accuracy,
    binary_auroc,
    binary_f1_score,
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
)
from torchmetrics.functional.regression import (
    mean_absolute_error,
    mean_squared_error,
    pearson_corrcoef,
    spearman_corrcoef,
)

from moezoo_cli.catalog import HEADLINE_METRICS, headline_metric

from ..tasks import IGNORE_INDEX, TaskSpec, pixels_as_rows, task_predictions, weighted_task_losses

# Metrics where a lower value is better; every other metric is better when higher.
LOWER_IS_BETTER = ("loss", "mse", "mae")
# Metrics also reported as their mean over the tasks that have them, as "mean_{metric}".
AVERAGED_METRICS = ("auc", "accuracy", "miou")
#: The mean over the tasks of each one's headline metric (`moezoo_cli.catalog.HEADLINE_METRICS`: a task's
#: own metric, such as GLUE's Matthews correlation for CoLA, before its kind's), a GLUE-style average score:
#: the metric that picks a best checkpoint across tasks whose losses are not on one scale.
MEAN_SCORE = "mean_score"
#: The metrics `task_metrics` reports for each task kind.
KIND_METRICS = {
    "binary": ("auc", "accuracy"),
    "multiclass": ("accuracy",),
    "multilabel": ("auc",),
    "regression": ("mse", "mae"),
}
#: The metrics `DenseTaskMetrics` reports for each kind of dense task: the mean over classes of the
#: intersection over union (classes absent from both predictions and labels left out) and the
#: fraction of pixels classified right; or the errors of a regression map.
DENSE_KIND_METRICS = {"multiclass": ("miou", "pixel_accuracy"), "regression": ("mse", "mae")}


def metric_names(tasks: Sequence[TaskSpec], dense_tasks: Sequence[str] = ()) -> list[str]:
    """Every name `MultiTaskMetrics` can report for these tasks: ``loss``, ``{task}/loss``,
    ``{task}/{metric}``, the ``mean_{metric}`` averages and `MEAN_SCORE`."""
    names = ["loss"]
    reported: set[str] = set()
    for task in tasks:
        kind_metrics = (DENSE_KIND_METRICS if task.name in dense_tasks else KIND_METRICS)[task.kind] + task.metrics
        names += [f"{task.name}/loss", *(f"{task.name}/{metric}" for metric in kind_metrics)]
        reported.update(kind_metrics)
    averages = [f"mean_{metric}" for metric in AVERAGED_METRICS if metric in reported]
    return names + averages + ([MEAN_SCORE] if reported & set(HEADLINE_METRICS) else [])


def task_metrics(task: TaskSpec, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Metrics of one task over the examples whose labels are present.

    binary: ``auc``, ``accuracy``; multiclass: ``accuracy``; multilabel: ``auc`` (macro);
    regression: ``mse``, ``mae``; then the task's own ``metrics`` (`moezoo.tasks.EXTRA_METRICS`).
    Empty when no label is present.
    """
    logits, labels = logits.float(), labels.float()
    if task.kind == "multiclass":
        labels = labels.squeeze(1)
        present = ~torch.isnan(labels) & (labels != IGNORE_INDEX)
        if not present.any():
            return {}
        targets = labels[present].long()
        results = {
            "accuracy": multiclass_accuracy(logits[present], targets, num_classes=task.num_labels, average="micro").item()
        }
        return {**results, **_extra_metrics(task, logits[present].argmax(dim=1), targets)}
    if task.kind == "multilabel":
        present = ~torch.isnan(labels).any(dim=1)
        if not present.any():
            return {}
        probs, targets = task_predictions(task, logits[present]), labels[present].long()
        # Macro over the labels whose AUC is defined (both classes present).
        defined = [label for label in range(task.num_labels) if targets[:, label].unique().numel() == 2]
        aucs = [binary_auroc(probs[:, label], targets[:, label]).item() for label in defined]
        return {"auc": sum(aucs) / len(aucs) if aucs else math.nan}
    present = ~torch.isnan(labels).any(dim=1)
    if not present.any():
        return {}
    predictions = task_predictions(task, logits[present])
    targets = labels[present].squeeze(1) if labels.shape[1] == 1 else labels[present]
    if task.kind == "binary":
        targets = targets.long()
        both_classes = bool(targets.min() == 0 and targets.max() == 1)
        results = {
            "auc": binary_auroc(predictions, targets).item() if both_classes else math.nan,
            "accuracy": binary_accuracy(predictions, targets).item(),
        }
        return {**results, **_extra_metrics(task, (predictions > 0.5).long(), targets)}
    results = {"mse": mean_squared_error(predictions, targets).item(), "mae": mean_absolute_error(predictions, targets).item()}
    return {**results, **_extra_metrics(task, predictions, targets)}


def _extra_metrics(task: TaskSpec, predictions: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """The task's own ``metrics``: from predicted classes (classification) or values (regression)."""
    results = {}
    two_classes = task.kind == "binary" or task.num_labels == 2
    for metric in task.metrics:
        if metric == "mcc":
            results[metric] = matthews_correlation(predictions, targets, max(task.num_labels, 2))
        elif metric == "f1":
            value = (
                binary_f1_score(predictions, targets) if two_classes
                else multiclass_f1_score(predictions, targets, num_classes=task.num_labels, average="macro")
            )
            results[metric] = value.item()
        else:
            results[metric] = correlation(predictions, targets, metric)
    return results


def matthews_correlation(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int) -> float:
    """The Matthews correlation of predicted and true classes (Gorodkin's multiclass form, which for two
    classes is ``(TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))``), and 0 where its denominator is 0:
    a constant prediction, or a single true class."""
    confusion = multiclass_confusion_matrix(predictions, targets, num_classes=num_classes).double()  # [true, predicted]
    total, correct = confusion.sum(), confusion.trace()
    true_counts, predicted_counts = confusion.sum(1), confusion.sum(0)
    covariance = correct * total - (true_counts * predicted_counts).sum()
    denominator = ((total**2 - (predicted_counts**2).sum()) * (total**2 - (true_counts**2).sum())).sqrt()
    return (covariance / denominator).item() if denominator > 0 else 0.0


def correlation(predictions: torch.Tensor, targets: torch.Tensor, kind: str) -> float:
    """The ``"pearson"`` or ``"spearman"`` correlation of two vectors, and 0 when either is constant."""
    if bool(predictions.min() == predictions.max()) or bool(targets.min() == targets.max()):
        return 0.0
    compute = pearson_corrcoef if kind == "pearson" else spearman_corrcoef
    return compute(predictions.double(), targets.double()).item()


def multitask_metrics(
    tasks: Sequence[TaskSpec], logits: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor]
) -> dict[str, float]:
    """Every task's loss and metrics as ``"{task}/{metric}"``, the weighted total ``"loss"``, and
    ``"mean_auc"`` / ``"mean_accuracy"`` over the tasks that report an AUC / an accuracy, for logits
    and labels ``[N, ...]`` of image-level or tabular tasks (see `MultiTaskMetrics` for dense tasks)."""
    metrics = MultiTaskMetrics(tasks)
    metrics.update(logits, labels)
    return metrics.compute()


class DenseTaskMetrics:
    """Loss and metrics of one dense task (`DENSE_KIND_METRICS`), accumulated batch by batch.

    Args:
        task: A multiclass (segmentation) or regression task predicted per pixel.
    """

    def __init__(self, task: TaskSpec) -> None:
        if task.kind not in DENSE_KIND_METRICS:
            raise ValueError(f"Dense task {task.name!r} is {task.kind}; dense tasks are {tuple(DENSE_KIND_METRICS)}.")
        self.task = task
        self.loss_sum = 0.0
        self.count = 0
        if task.kind == "multiclass":
            self.metrics = {
                "miou": MulticlassJaccardIndex(task.num_labels, average="macro", ignore_index=IGNORE_INDEX),
                "pixel_accuracy": MulticlassAccuracy(task.num_labels, average="micro", ignore_index=IGNORE_INDEX),
            }
        else:
            self.metrics = {"mse": MeanSquaredError(), "mae": MeanAbsoluteError()}

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: logits ``[B, num_labels, H, W]``, labels ``[B, label_width, H, W]`` (NaN, or
        -100 for a class, where missing)."""
        logits, labels = pixels_as_rows(logits.float()), pixels_as_rows(labels.float())
        if self.task.kind == "multiclass":
            classes = labels.squeeze(1)
            present = ~torch.isnan(classes) & (classes != IGNORE_INDEX)
            targets = torch.where(present, classes, IGNORE_INDEX).long()
            self.loss_sum += F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum").item()
            self.count += int(present.sum())
            predictions = logits.argmax(dim=1)
        else:
            present = ~torch.isnan(labels).any(dim=1)
            predictions, targets = logits[present], labels[present]
            self.loss_sum += F.mse_loss(predictions, targets, reduction="sum").item()
            self.count += predictions.numel()
        if present.any():
            for metric in self.metrics.values():
                metric.update(predictions, targets)

    def loss(self) -> float | None:
        """The task's loss over the pixels seen (its training loss, averaged), or None before any label."""
        return self.loss_sum / self.count if self.count else None

    def compute(self) -> dict[str, float]:
        """The metrics over the pixels seen; empty before any label."""
        if not self.count:
            return {}
        return {name: metric.compute().item() for name, metric in self.metrics.items()}


class MultiTaskMetrics:
    """Every task's loss and metrics over a split, fed one batch at a time (`update`), computed at the
    end (`compute`): ``"{task}/loss"``, ``"{task}/{metric}"``, the weighted total ``"loss"``, the
    ``"mean_{metric}"`` averages of `AVERAGED_METRICS` and `MEAN_SCORE` (over the tasks whose headline metric is
    defined).

    Image-level and tabular tasks keep their logits and labels (``[N, ...]``) and are scored at once;
    ``dense_tasks`` are scored as the batches arrive (`DenseTaskMetrics`).
    """

    def __init__(self, tasks: Sequence[TaskSpec], dense_tasks: Sequence[str] = ()) -> None:
        self.tasks = list(tasks)
        self.dense = {task.name: DenseTaskMetrics(task) for task in self.tasks if task.name in dense_tasks}
        self._logits: dict[str, list[torch.Tensor]] = {}
        self._labels: dict[str, list[torch.Tensor]] = {}

    def update(self, logits: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor]) -> None:
        """Add a batch: logits and labels per task (`MultiTaskPreTrainedModel.labels_per_task`)."""
        for name, value in logits.items():
            if name in self.dense:
                if name in labels:
                    self.dense[name].update(value, labels[name])
            else:
                self._logits.setdefault(name, []).append(value.float())
        for name, value in labels.items():
            if name not in self.dense:
                self._labels.setdefault(name, []).append(value.float())

    def compute(self) -> dict[str, float]:
        logits = {name: torch.cat(parts) for name, parts in self._logits.items()}
        labels = {name: torch.cat(parts) for name, parts in self._labels.items()}
        _, losses = weighted_task_losses([task for task in self.tasks if task.name not in self.dense], logits, labels)
        results: dict[str, float] = {}
        total = None
        averaged: dict[str, list[float]] = {name: [] for name in AVERAGED_METRICS}
        for task in self.tasks:
            if task.name in self.dense:
                loss, metrics = self.dense[task.name].loss(), self.dense[task.name].compute()
            elif task.name in losses:
                loss, metrics = losses[task.name].item(), task_metrics(task, logits[task.name], labels[task.name])
            else:
                continue
            if loss is None:
                continue
            results[f"{task.name}/loss"] = loss
            total = task.weight * loss if total is None else total + task.weight * loss
            for name, value in metrics.items():
                results[f"{task.name}/{name}"] = value
                if name in averaged and not math.isnan(value):
                    averaged[name].append(value)
        results["loss"] = total if total is not None else 0.0
        for name, values in averaged.items():
            if values:
                results[f"mean_{name}"] = sum(values) / len(values)
        headline = [results[f"{task.name}/{metric}"] for task in self.tasks if (metric := headline_metric(task.name, results))]
        scores = [value for value in headline if not math.isnan(value)]
        if scores:
            results[MEAN_SCORE] = sum(scores) / len(scores)
        return results


def is_better(metric_name: str, value: float, best: float | None) -> bool:
    """Whether ``value`` improves on ``best`` (``None``: nothing yet) for metric ``metric_name``. An undefined
    value (NaN) improves only on nothing, and any defined value improves on an undefined best."""
    if best is None:
        return True
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    lower = metric_name.rsplit("/", 1)[-1] in LOWER_IS_BETTER
    return value < best if lower else value > best
