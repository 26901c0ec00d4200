"""How a model fails, task by task, for its card: the classes it never predicts, each class's recall, and
the score of the trivial predictor beside its own, counted over a split batch by batch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from ..models.modeling_utils import MultiTaskPreTrainedModel
from ..tasks import IGNORE_INDEX, TaskSpec, own_task_labels, pixels_as_rows

#: A class whose recall is below this is named as one the model mostly misses.
LOW_RECALL = 0.5


class TaskOutcomes:
    """What one task's predictions were against its labels: a confusion matrix for a classification task
    (per-pixel for a dense one), sums for a regression task's error and correlation."""

    def __init__(self, task: TaskSpec, dense: bool = False) -> None:
        self.task = task
        self.dense = dense
        self.classes = max(task.num_labels, 2) if task.kind in ("binary", "multiclass") else 0
        self.confusion = torch.zeros(self.classes, self.classes, dtype=torch.long)  # [true, predicted]
        self.sums = torch.zeros(6, dtype=torch.float64)  # n, sum y, sum y^2, sum p, sum p^2, sum p*y

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch of the task's logits and labels (NaN, or -100 for a class, where missing)."""
        if self.dense:
            logits, labels = pixels_as_rows(logits), pixels_as_rows(labels)
        logits, labels = logits.detach().float().cpu(), labels.detach().float().cpu()
        if self.task.kind == "multilabel" or (self.task.kind == "regression" and labels.shape[-1] != 1):
            return  # no per-class or single-value account for these
        labels = labels.reshape(len(labels), -1)[:, 0]
        present = ~torch.isnan(labels) & (labels != IGNORE_INDEX)
        if self.task.kind == "regression":
            predictions, targets = logits.reshape(len(logits), -1)[present, 0].double(), labels[present].double()
            self.sums += torch.stack([
                torch.tensor(float(len(targets)), dtype=torch.float64), targets.sum(), (targets**2).sum(),
                predictions.sum(), (predictions**2).sum(), (predictions * targets).sum(),
            ])
            return
        predicted = (logits[:, 0] > 0).long() if self.task.kind == "binary" else logits.argmax(1)
        pairs = labels[present].long() * self.classes + predicted[present]
        self.confusion += torch.bincount(pairs, minlength=self.classes**2).view(self.classes, self.classes)

    def describe(self) -> str | None:
        """One Markdown line on how the task fails, or ``None`` when nothing was counted."""
        name = f"`{self.task.name}`" + (" (per pixel)" if self.dense else "")
        if self.classes:
            total = int(self.confusion.sum())
            if total == 0:
                return None
            true_counts, predicted_counts = self.confusion.sum(1), self.confusion.sum(0)
            accuracy = int(self.confusion.trace()) / total
            majority = int(true_counts.argmax())
            parts = [
                f"accuracy {accuracy:.4f} against {int(true_counts[majority]) / total:.4f} for always answering the most "
                f"frequent class ({majority})"
            ]
            never = [c for c in range(self.classes) if predicted_counts[c] == 0 and true_counts[c] > 0]
            constant = len(never) == self.classes - 1
            if not constant and int(self.confusion.trace()) <= int(true_counts[majority]):
                parts.append("**no better than always answering the most frequent class**")
            if constant:
                only = next(c for c in range(self.classes) if predicted_counts[c] > 0)
                parts.append(f"**it answers class {only} for every {'pixel' if self.dense else 'example'}**")
            elif never:
                unit = "pixel" if self.dense else "example"
                parts.append("**never predicts class(es) " + ", ".join(
                    f"{c} ({int(true_counts[c]):,} {unit}{'' if true_counts[c] == 1 else 's'})" for c in never) + "**")
            recall = {c: int(self.confusion[c, c]) / int(true_counts[c]) for c in range(self.classes) if true_counts[c] > 0}
            missed = [c for c, value in recall.items() if value < LOW_RECALL and c not in never]
            if missed:
                parts.append("recall below " + f"{LOW_RECALL:.0%} for class(es) " + ", ".join(f"{c} ({recall[c]:.1%})" for c in missed))
            if not never and not missed:
                parts.append(f"every class recalled at least {min(recall.values()):.1%}")
            return f"- {name}: " + "; ".join(parts) + "."
        count, sum_y, sum_y2, sum_p, sum_p2, sum_py = self.sums.tolist()
        if count == 0:
            return None
        variance = sum_y2 / count - (sum_y / count) ** 2
        mse = (sum_p2 - 2 * sum_py + sum_y2) / count
        return (
            f"- {name}: mean squared error {mse:.4f} against {variance:.4f} for always answering the mean; predictions "
            f"range over a standard deviation of {max(sum_p2 / count - (sum_p / count) ** 2, 0.0) ** 0.5:.3f} "
            f"(the targets' {max(variance, 0.0) ** 0.5:.3f})."
        )


@torch.no_grad()
def failure_report(model: MultiTaskPreTrainedModel, batches: Iterable[Mapping[str, Any]]) -> str:
    """Markdown: for every task of ``model``, how its predictions on ``batches`` (model inputs with ``labels``, such
    as a test split) fail (`TaskOutcomes.describe`)."""
    model.eval()
    outcomes = {task.name: TaskOutcomes(task, task.name in model.dense_tasks) for task in model.task_specs}
    for batch in batches:
        inputs = {name: value for name, value in batch.items() if name != "labels"}
        output = model(**inputs)
        labels = model.labels_per_task(batch["labels"])
        if batch.get("task_ids") is not None:  # each example scored for its own task only
            labels = own_task_labels(model.task_specs, labels, batch["task_ids"])
        for name, logits in output.logits.items():
            if name in labels:
                outcomes[name].update(logits, labels[name])
    lines = [line for line in (outcome.describe() for outcome in outcomes.values()) if line]
    return "\n".join(lines) if lines else "No labelled example to examine."

