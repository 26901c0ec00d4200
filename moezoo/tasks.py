"""Tasks as data: `TaskSpec`, label validation and the masked loss of each task kind.

Labels of a batch are one float tensor ``[B, W]`` whose columns are the tasks' labels in config order
(one column per binary, multiclass or single-output regression task; ``num_labels`` columns per
multilabel or multi-output regression task), or a mapping from task name to that task's labels.
A missing label is NaN (or -100 for a multiclass task); each task's loss averages its present labels only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from .specs import DictSpec

TASK_KINDS = ("binary", "multiclass", "regression", "multilabel")
IGNORE_INDEX = -100
#: Metrics a task may ask for beyond its kind's own (``TaskSpec.metrics``): Matthews correlation and F1
#: (of class 1 for two classes, macro otherwise) for classification, Pearson and Spearman correlation
#: for single-output regression.
EXTRA_METRICS = {"binary": ("mcc", "f1"), "multiclass": ("mcc", "f1"), "regression": ("pearson", "spearman")}


@dataclass(frozen=True)
class TaskSpec(DictSpec):
    """One task of a multi-task model.

    Args:
        name: Unique task name; keys the logits, losses and metrics.
        kind: ``"binary"``, ``"multiclass"``, ``"regression"`` or ``"multilabel"``.
        num_labels: Classes (multiclass), labels (multilabel) or outputs (regression); 1 for binary.
        weight: Weight of the task's loss in the total loss.
        metrics: Metrics to report beyond the kind's own, from `EXTRA_METRICS` (GLUE's CoLA is scored by
            ``"mcc"``, MRPC by ``"f1"``, STS-B by ``"pearson"``).
    """

    name: str
    kind: str = "binary"
    num_labels: int = 1
    weight: float = 1.0
    metrics: tuple[str, ...] = ()

    spec_name: ClassVar[str] = "task"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"A task name must be a non-empty string, got {self.name!r}.")
        if self.kind not in TASK_KINDS:
            raise ValueError(f"Task {self.name!r} has unknown kind {self.kind!r}; choose one of {TASK_KINDS}.")
        if self.kind == "binary" and self.num_labels != 1:
            raise ValueError(f"Binary task {self.name!r} has one logit; got num_labels={self.num_labels}.")
        if self.kind == "multiclass" and self.num_labels < 2:
            raise ValueError(f"Multiclass task {self.name!r} needs num_labels >= 2, got {self.num_labels}.")
        if self.num_labels < 1:
            raise ValueError(f"Task {self.name!r} needs num_labels >= 1, got {self.num_labels}.")
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"Task {self.name!r} needs a finite, non-negative weight, got {self.weight}.")
        object.__setattr__(self, "metrics", tuple(self.metrics))  # a JSON list, kept hashable
        allowed = EXTRA_METRICS.get(self.kind, ())
        if self.kind == "regression" and self.num_labels != 1:
            allowed = ()
        unknown = [metric for metric in self.metrics if metric not in allowed]
        if unknown:
            raise ValueError(
                f"Task {self.name!r} ({self.kind}, {self.num_labels} label(s)) cannot report {unknown}; "
                f"its extra metrics are {list(allowed)}."
            )

    def to_dict(self) -> dict[str, Any]:
        spec = super().to_dict()
        if not spec["metrics"]:  # configs written before the field existed stay as they were
            del spec["metrics"]
        else:
            spec["metrics"] = list(spec["metrics"])
        return spec

    @property
    def label_width(self) -> int:
        """Number of label columns the task takes in a ``[B, W]`` label tensor."""
        return 1 if self.kind == "multiclass" else self.num_labels



def task_identity(task: TaskSpec) -> tuple[str, str, int]:
    """What identifies a task across models: its name, kind and number of labels (a task of the same
    name with another kind or size is another task). Its loss weight is not part of it."""
    return (task.name, task.kind, task.num_labels)


def parse_tasks(specs: Iterable[Mapping | TaskSpec]) -> list[TaskSpec]:
    """Build and validate a task list: at least one task, names unique."""
    tasks = [TaskSpec.from_dict(spec) for spec in specs]
    if not tasks:
        raise ValueError("A multi-task model needs at least one task.")
    seen: set[str] = set()
    for task in tasks:
        if task.name in seen:
            raise ValueError(f"Task {task.name!r} is listed twice; task names must be unique.")
        seen.add(task.name)
    return tasks


def split_labels(
    tasks: Sequence[TaskSpec], labels: torch.Tensor | Mapping[str, torch.Tensor], check_values: bool = True
) -> dict[str, torch.Tensor]:
    """Validate a batch's labels and return them per task, as float tensors ``[B, label_width]``.

    Shapes and dtypes are always checked; the values (in range for their task's kind) only with
    ``check_values``, a cost that grows with the batch and is skipped for labels checked once before.

    Raises:
        KeyError: a mapping names a task the model does not have.
        ValueError: a tensor has the wrong shape, or labels are out of range for their kind.
        TypeError: labels are not a numeric tensor.
    """
    widths = {task.name: task.label_width for task in tasks}
    if isinstance(labels, Mapping):
        unknown = [name for name in labels if name not in widths]
        if unknown:
            raise KeyError(f"Labels given for unknown task(s) {unknown}; the model's tasks are {list(widths)}.")
        per_task = {name: _as_label_matrix(name, value, widths[name]) for name, value in labels.items()}
    else:
        total_width = sum(widths.values())
        matrix = _as_label_matrix("labels", labels, total_width)
        per_task = dict(zip(widths, matrix.split(list(widths.values()), dim=1)))
    batch_sizes = {value.shape[0] for value in per_task.values()}
    if len(batch_sizes) > 1:
        raise ValueError(f"Task labels disagree on the batch size: {sorted(batch_sizes)}.")
    if check_values:
        for task in tasks:
            if task.name in per_task:
                _check_label_values(task, per_task[task.name])
    return per_task


def own_task_labels(
    tasks: Sequence[TaskSpec], labels: Mapping[str, torch.Tensor], task_ids: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Mixed-task data: each example counts for its own task only. Task ``t``'s labels are kept where
    ``task_ids == t`` (its index in ``tasks``) and marked missing (NaN) elsewhere, so each task's loss
    and metrics average over its own examples.

    Args:
        tasks: The model's tasks, in order (their indices are the task ids).
        labels: Labels per task with the examples first, as `split_labels` returns them (``[B, W]``),
            or per pixel (``[B, W, H, W']`` for a dense task).
        task_ids: Long ``[B]``, each example's task.
    """
    own = {}
    for index, task in enumerate(tasks):
        if task.name in labels:
            values = labels[task.name]
            mine = (task_ids == index).view(-1, *[1] * (values.dim() - 1))
            own[task.name] = values.where(mine, float("nan"))
    return own


def pixels_as_rows(values: torch.Tensor) -> torch.Tensor:
    """A dense task's per-pixel values ``[B, C, H, W]`` (logits, or labels of width ``C``) as rows
    ``[B * H * W, C]``, one per pixel, so that every task kind's loss and metrics apply as they are."""
    return values.permute(0, 2, 3, 1).reshape(-1, values.shape[1])


def check_task_ids(task_ids: torch.Tensor, num_tasks: int, batch_size: int | None = None, check_values: bool = True) -> None:
    """Raise naming the problem unless ``task_ids`` is an integer ``[B]`` tensor of task indices."""
    if not isinstance(task_ids, torch.Tensor) or task_ids.dtype == torch.bool or task_ids.is_floating_point():
        raise TypeError(f"task_ids must be an integer tensor [batch], got {getattr(task_ids, 'dtype', type(task_ids))}.")
    if task_ids.dim() != 1:
        raise ValueError(f"task_ids must be [batch], one task index per example, got shape {list(task_ids.shape)}.")
    if batch_size is not None and len(task_ids) != batch_size:
        raise ValueError(f"task_ids has {len(task_ids)} entries but the batch has {batch_size} examples.")
    if check_values and len(task_ids) and (int(task_ids.min()) < 0 or int(task_ids.max()) >= num_tasks):
        bad = sorted({int(value) for value in task_ids[(task_ids < 0) | (task_ids >= num_tasks)].tolist()})
        raise ValueError(f"task_ids {bad} are out of range: this model has {num_tasks} tasks (ids 0 to {num_tasks - 1}).")


def _as_label_matrix(name: str, labels: torch.Tensor, width: int) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(labels)
    if labels.dtype == torch.bool or labels.is_complex() or not (labels.is_floating_point() or _is_integer(labels)):
        raise TypeError(f"Labels for {name!r} must be a real float or integer tensor, got dtype {labels.dtype}.")
    if labels.dim() == 1 and width == 1:
        labels = labels.unsqueeze(1)
    if labels.dim() != 2 or labels.shape[1] != width:
        raise ValueError(f"Labels for {name!r} must have shape [batch, {width}], got {list(labels.shape)}.")
    return labels.float()


def _is_integer(tensor: torch.Tensor) -> bool:
    return tensor.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _check_label_values(task: TaskSpec, labels: torch.Tensor) -> None:
    # Comparisons with NaN are false, so missing labels pass the range checks without being removed.
    if torch.isinf(labels).any():
        raise ValueError(f"Labels for task {task.name!r} contain inf.")
    if task.kind in ("binary", "multilabel") and ((labels < 0) | (labels > 1)).any():
        raise ValueError(f"Labels for {task.kind} task {task.name!r} must lie in [0, 1] (or be NaN when missing).")
    if task.kind == "multiclass":
        present = ~torch.isnan(labels) & (labels != IGNORE_INDEX)
        invalid = (labels != labels.round()) | (labels < 0) | (labels >= task.num_labels)
        if (invalid & present).any():
            raise ValueError(
                f"Labels for multiclass task {task.name!r} must be class indices in [0, {task.num_labels}) "
                f"(or NaN / {IGNORE_INDEX} when missing)."
            )


#: The elementwise loss of every task kind but multiclass (which takes a cross-entropy over its classes).
ELEMENTWISE_LOSSES = {
    "binary": F.binary_cross_entropy_with_logits,
    "multilabel": F.binary_cross_entropy_with_logits,
    "regression": F.mse_loss,
}


def labels_complete(tasks: Sequence[TaskSpec], labels: torch.Tensor | Mapping[str, torch.Tensor]) -> bool:
    """Whether no label is missing (no NaN, nor -100 for a multiclass task): a property of a dataset,
    checked once where it is prepared, that lets the losses skip their masking (``labels_complete``)."""
    for task, values in zip(tasks, split_labels(tasks, labels, check_values=False).values()):
        if torch.isnan(values).any() or (task.kind == "multiclass" and (values == IGNORE_INDEX).any()):
            return False
    return True


def task_loss(task: TaskSpec, logits: torch.Tensor, labels: torch.Tensor, labels_complete: bool = False) -> torch.Tensor:
    """The task's loss averaged over its present labels (0, still attached to the graph, if none).

    Missing labels are masked out of an elementwise loss rather than indexed away, which keeps the
    batch shape static and avoids a boolean-index gather in forward and backward. With
    ``labels_complete`` (the caller knows that no label is missing) the loss is a plain mean.
    """
    if task.kind != "multiclass":
        return elementwise_task_losses([task], [logits], [labels], labels_complete)[0]
    if labels_complete:
        return F.cross_entropy(logits, labels.squeeze(1).long())
    classes = labels.squeeze(1)
    present = ~torch.isnan(classes) & (classes != IGNORE_INDEX)
    targets = torch.where(present, classes, 0.0).long()
    per_label = F.cross_entropy(logits, targets, reduction="none")
    return per_label.where(present, 0.0).sum() / present.sum().clamp_min(1)


def elementwise_task_losses(
    tasks: Sequence[TaskSpec],
    logits: Sequence[torch.Tensor],
    labels: Sequence[torch.Tensor],
    labels_complete: bool = False,
) -> list[torch.Tensor]:
    """The losses of tasks that share one elementwise loss (see `ELEMENTWISE_LOSSES`), each averaged
    over its present (non-NaN) labels, computed together: one loss over the tasks' stacked columns
    and one sum per task, whatever the number of tasks. ``labels_complete``: no label is missing,
    and the masking is skipped."""
    loss_function = ELEMENTWISE_LOSSES[tasks[0].kind]
    if any(ELEMENTWISE_LOSSES[task.kind] is not loss_function for task in tasks):
        raise ValueError(f"Tasks {[task.name for task in tasks]} do not share one elementwise loss.")
    stacked_logits = torch.cat(list(logits), dim=1) if len(tasks) > 1 else logits[0]
    stacked_labels = torch.cat(list(labels), dim=1) if len(tasks) > 1 else labels[0]
    widths = [task.label_width for task in tasks]
    if labels_complete:
        column_means = loss_function(stacked_logits, stacked_labels.to(stacked_logits.dtype), reduction="none").mean(0)
        if all(width == 1 for width in widths):
            return list(column_means.unbind())
        sums, counts = column_means, torch.ones_like(column_means)
    else:
        present = stacked_labels == stacked_labels  # NaN marks a missing label
        targets = stacked_labels.where(present, 0.0).to(stacked_logits.dtype)
        # `where`, not a multiplication by the mask: a non-finite loss on a missing label must not leak in.
        per_label = loss_function(stacked_logits, targets, reduction="none").where(present, 0.0)
        sums, counts = per_label.sum(dim=0), present.sum(dim=0)
    if any(width != 1 for width in widths):
        column_task = torch.repeat_interleave(torch.arange(len(tasks)), torch.tensor(widths)).to(sums.device)
        sums = sums.new_zeros(len(tasks)).index_add(0, column_task, sums)
        counts = counts.new_zeros(len(tasks)).index_add(0, column_task, counts)
    return list((sums / counts.clamp_min(1)).unbind())


def present_label_counts(tasks: Sequence[TaskSpec], labels: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each task's number of present labels in ``labels`` (``[B, label_width]`` per task): the denominator
    its loss averages over (`task_loss`, `elementwise_task_losses`): present rows for a multiclass task,
    present entries otherwise. Averaging a task's loss over processes weighs each process by it."""
    counts = {}
    for task in tasks:
        if task.name not in labels:
            continue
        values = labels[task.name]
        present = ~torch.isnan(values)
        if task.kind == "multiclass":
            present &= values != IGNORE_INDEX
        counts[task.name] = present.sum()
    return counts


def weighted_task_losses(
    tasks: Sequence[TaskSpec],
    logits: Mapping[str, torch.Tensor],
    labels: Mapping[str, torch.Tensor],
    labels_complete: bool = False,
) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
    """Each task's loss, for the tasks with both logits and labels, and their weighted sum
    (``None`` when no task has both). Tasks that share an elementwise loss are computed together;
    ``labels_complete`` skips the masking of missing labels (see `labels_complete`)."""
    scored = tuple(task for task in tasks if task.name in logits and task.name in labels)
    losses: dict[str, torch.Tensor] = {}
    for group in _loss_groups(scored):
        if group[0].kind == "multiclass":
            losses[group[0].name] = task_loss(group[0], logits[group[0].name], labels[group[0].name], labels_complete)
            continue
        group_losses = elementwise_task_losses(
            group, [logits[task.name] for task in group], [labels[task.name] for task in group], labels_complete
        )
        losses.update(zip((task.name for task in group), group_losses))
    total = None
    for task in scored:
        weighted = losses[task.name] if task.weight == 1.0 else task.weight * losses[task.name]
        total = weighted if total is None else total + weighted
    losses = {task.name: losses[task.name] for task in scored}
    return total, losses


@functools.lru_cache(maxsize=64)
def _loss_groups(tasks: tuple[TaskSpec, ...]) -> list[list[TaskSpec]]:
    """The tasks grouped by their elementwise loss (each multiclass task alone), in first-seen order;
    cached, as a model asks for the same grouping at every step."""
    groups: dict[Any, list[TaskSpec]] = {}
    for task in tasks:
        groups.setdefault(ELEMENTWISE_LOSSES.get(task.kind, task.name), []).append(task)
    return list(groups.values())


def task_predictions(task: TaskSpec, logits: torch.Tensor) -> torch.Tensor:
    """Turn logits into predictions: probabilities (binary ``[B]``, multiclass ``[B, C]``,
    multilabel ``[B, L]``) or values (regression)."""
    if task.kind == "binary":
        return torch.sigmoid(logits.squeeze(-1))
    if task.kind == "multiclass":
        return torch.softmax(logits, dim=-1)
    if task.kind == "multilabel":
        return torch.sigmoid(logits)
    return logits.squeeze(-1) if task.num_labels == 1 else logits
