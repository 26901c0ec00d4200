"""Fine-tuning from a checkpoint whose tasks differ from the data's, and freezing parts of a model.

A routed model's gates, experts and task towers are rows of stacked tensors. Each routing module
declares which axes of its parameters index gates or experts (``unit_axes``), and each config labels
its gates and experts by whom they serve (`RoutedMultiTaskConfig.routing_unit_labels`). `transfer_weights`
copies a checkpoint into a model built for other tasks row by row, matching rows by label: what every
task shares (embeddings, shared experts) loads, a task the checkpoint lacks keeps its fresh gate rows,
experts and tower, and a task the data lacks is left out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers.utils import logging

from .. import zoo
from ..suggestions import closest_names
from ..tasks import TaskSpec, parse_tasks, task_identity
from .modeling_utils import MultiTaskPreTrainedModel

logger = logging.get_logger(__name__)

#: The parts `freeze` knows, each a test on a parameter's name.
FREEZABLE_PARTS: dict[str, Any] = {
    "embeddings": lambda name: name.startswith("embeddings."),
    "image_encoder": lambda name: name.startswith("image_encoder."),
    "experts": lambda name: ".experts." in name and name.startswith("router."),
    "gates": lambda name: re.search(r"\.(gate|self_gate)\.", name) is not None,
    "feature_gates": lambda name: ".feature_gate." in name,
    "towers": lambda name: name.startswith("heads.towers."),
    "outputs": lambda name: name.startswith("heads.outputs."),
}


#: Config fields that follow the tasks (M3ViT's per-pixel tasks, HoME's task groups): they may change with
#: the tasks; any other override changes the model itself.
TASK_FOLLOWING_FIELDS = ("dense_tasks", "task_groups")


@dataclass
class TransferReport:
    """What `transfer_weights` did: the tasks added (fresh) and dropped, by name, and the gates and experts
    by label (kept from the checkpoint, new and fresh, or dropped)."""

    added_tasks: list[str] = field(default_factory=list)
    dropped_tasks: list[str] = field(default_factory=list)
    kept_units: set[str] = field(default_factory=set)
    added_units: set[str] = field(default_factory=set)
    dropped_units: set[str] = field(default_factory=set)


def freeze(model: nn.Module, parts: Iterable[str]) -> list[str]:
    """Stop gradients to the named parts (see `FREEZABLE_PARTS`); returns the frozen parameters' names.

    BatchNorm statistics of frozen experts still follow the data in training mode, as in PyTorch.

    Raises:
        ValueError: a part is unknown (with the closest names), or the model has none of its parameters.
    """
    frozen = []
    for part in parts:
        if part not in FREEZABLE_PARTS:
            raise ValueError(
                f"Unknown part to freeze {part!r}{closest_names(part, FREEZABLE_PARTS)}; choose from {sorted(FREEZABLE_PARTS)}."
            )
        matched = [(name, parameter) for name, parameter in model.named_parameters() if FREEZABLE_PARTS[part](name)]
        if not matched:
            raise ValueError(f"{type(model).__name__} has no {part} to freeze.")
        for name, parameter in matched:
            parameter.requires_grad_(False)
            frozen.append(name)
    return frozen


def load_for_tasks(
    checkpoint: str | os.PathLike,
    tasks: Sequence[TaskSpec | Mapping],
    allow_task_changes: bool = False,
    config_overrides: Mapping[str, Any] | None = None,
    model_type: str | None = None,
    allow_config_changes: bool = False,
    **loading_kwargs: Any,
) -> MultiTaskPreTrainedModel:
    """Load a moezoo checkpoint (a folder, a zoo entry's name, or a Hub id when online) for ``tasks``.

    With the checkpoint's own tasks (by name, kind and size, in that order) and no overrides, this is
    ``from_pretrained``. Otherwise the model is rebuilt from the checkpoint's config with ``tasks`` and
    ``config_overrides`` and the checkpoint is moved into it with `transfer_weights`: tasks added or
    dropped only with ``allow_task_changes``; overrides other than `TASK_FOLLOWING_FIELDS` (the number of
    experts, say) only with ``allow_config_changes``. What was added, dropped or kept is logged by name.

    Args:
        model_type: The architecture the caller expects; another one in the checkpoint is an error.

    Raises:
        ValueError: the tasks differ and ``allow_task_changes`` is not set, an override changes the model
            and ``allow_config_changes`` is not set (each message names what differs), the checkpoint is of
            another architecture than ``model_type``, or the overrides change a tensor's shape (a width).
    """
    source = zoo.from_pretrained(checkpoint, **loading_kwargs)
    if not isinstance(source, MultiTaskPreTrainedModel):
        raise ValueError(f"{checkpoint} holds a {type(source).__name__}, not a moezoo multi-task model.")
    if model_type is not None and source.config.model_type != model_type:
        raise ValueError(
            f"{checkpoint} holds a {source.config.model_type!r} model, not a {model_type!r} one; set --model_name "
            f"{source.config.model_type} (the architecture comes from the checkpoint)."
        )
    wanted = parse_tasks(tasks)
    current = source.config.to_dict()
    changed = {key: value for key, value in (config_overrides or {}).items() if current.get(key, object()) != value}
    if [task_identity(task) for task in wanted] == [task_identity(task) for task in source.task_specs] and not changed:
        return source
    model_changes = {key: value for key, value in changed.items() if key not in TASK_FOLLOWING_FIELDS}
    described = ", ".join(f"{key} {current.get(key, 'unset')!r} -> {value!r}" for key, value in model_changes.items())
    if model_changes and not allow_config_changes:
        raise ValueError(
            f"The config overrides would change the checkpoint {checkpoint} itself ({described}), not only its tasks. "
            "Pass allow_config_changes=True (--allow_config_changes) to build that model and keep the checkpoint's "
            "weights where they fit (each gate and expert by its label), or drop the overrides."
        )
    added = [task.name for task in wanted if task_identity(task) not in _identities(source)]
    dropped = [task.name for task in source.task_specs if task_identity(task) not in {task_identity(t) for t in wanted}]
    if (added or dropped) and not allow_task_changes:
        raise ValueError(
            f"The checkpoint {checkpoint} has tasks {source.task_names}, the data {[task.name for task in wanted]} "
            f"(new or changed: {added}; not in the data: {dropped}). Pass allow_task_changes=True "
            "(--allow_task_changes) to start the new tasks fresh and drop the others."
        )
    config = {**current, **changed}
    config["tasks"] = [task.to_dict() for task in wanted]
    for key in ("transformers_version", "architectures", "model_type", "dtype"):
        config.pop(key, None)
    target = type(source)(type(source.config)(**config))
    report = transfer_weights(source, target)
    if report.added_tasks or report.dropped_tasks:
        logger.warning(
            f"Loaded {checkpoint} for other tasks: new (fresh gates, task experts and towers): "
            f"{report.added_tasks}; dropped: {report.dropped_tasks}."
        )
    if model_changes:
        logger.warning(
            f"Loaded {checkpoint} with {described}: kept from the checkpoint: {sorted(report.kept_units)}; new "
            f"(fresh): {sorted(report.added_units)}; dropped: {sorted(report.dropped_units)}."
        )
    return target


@torch.no_grad()
def transfer_weights(source: MultiTaskPreTrainedModel, target: MultiTaskPreTrainedModel) -> TransferReport:
    """Copy ``source``'s weights into ``target``, a model of the same architecture built for other tasks.

    Tensors that index gates, experts or task towers (the modules' ``unit_axes``) are copied row by
    row where the units' labels match (`RoutedMultiTaskConfig.routing_unit_labels`); units only
    ``target`` has keep their initialisation. Every other tensor must have the same shape in both.

    Raises:
        ValueError: the architectures differ, or a tensor shared by all tasks has another shape (the
            configs differ in more than their tasks).
    """
    if type(source) is not type(target):
        raise ValueError(f"Cannot move a {type(source).__name__} into a {type(target).__name__}.")
    source_modules = dict(source.named_modules())
    report = TransferReport(
        added_tasks=[task.name for task in target.task_specs if task_identity(task) not in _identities(source)],
        dropped_tasks=[task.name for task in source.task_specs if task_identity(task) not in _identities(target)],
    )
    for module_name, module in target.named_modules():
        if module_name not in source_modules:
            continue  # a new task's output layer
        old_module = source_modules[module_name]
        persistent = [
            (name, tensor)
            for name, tensor in [*module._parameters.items(), *module._buffers.items()]
            if tensor is not None and name not in module._non_persistent_buffers_set
        ]
        axes = getattr(module, "unit_axes", {})
        for name, tensor in persistent:
            old = getattr(old_module, name)
            qualified = f"{module_name}.{name}" if module_name else name
            if name in axes:
                _copy_matching_units(
                    target, source, module_name, (module, old_module), axes[name], (tensor, old), qualified, report
                )
            elif tensor.shape != old.shape:
                raise ValueError(
                    f"{qualified} has shape {list(old.shape)} in the checkpoint but {list(tensor.shape)} in the model: "
                    "the configs differ in more than their tasks."
                )
            else:
                tensor.copy_(old)
    return report


def _copy_matching_units(
    target: MultiTaskPreTrainedModel,
    source: MultiTaskPreTrainedModel,
    module_name: str,
    modules: tuple[nn.Module, nn.Module],
    axes: tuple[str, ...],
    tensors: tuple[torch.Tensor, torch.Tensor],
    qualified: str,
    report: TransferReport,
) -> None:
    """Copy the rows of ``tensors[1]`` (source) into ``tensors[0]`` (target) whose units' labels match,
    along the unit ``axes``; a module with a ``unit_view`` shows its tensors with the unit axes first."""
    new_rows, old_rows = (
        getattr(module, "unit_view", lambda value: value)(tensor) for module, tensor in zip(modules, tensors)
    )
    index_pairs = []
    for axis, kind in enumerate(axes):
        new_labels = _unit_labels(target, module_name, kind)
        old_labels = _unit_labels(source, module_name, kind)
        if new_rows.shape[axis] != len(new_labels) or old_rows.shape[axis] != len(old_labels):
            raise ValueError(f"{qualified}: axis {axis} does not index the {kind} its config labels.")
        old_index = {label: i for i, label in enumerate(old_labels)}
        pairs = [(i, old_index[label]) for i, label in enumerate(new_labels) if label in old_index]
        report.kept_units.update(_unit_name(kind, label) for label in new_labels if label in old_index)
        report.added_units.update(_unit_name(kind, label) for label in new_labels if label not in old_index)
        report.dropped_units.update(_unit_name(kind, label) for label in old_labels if label not in set(new_labels))
        index_pairs.append(pairs)
    if any(not pairs for pairs in index_pairs):
        return
    selected = old_rows
    for axis, pairs in enumerate(index_pairs):
        selected = selected.index_select(axis, torch.tensor([old for _, old in pairs]))
    if new_rows.shape[len(axes) :] != selected.shape[len(axes) :]:
        raise ValueError(
            f"{qualified} has rows of shape {list(selected.shape[len(axes):])} in the checkpoint but "
            f"{list(new_rows.shape[len(axes):])} in the model: the configs differ in more than their tasks."
        )
    # Write the selected block into the rows of the target, one axis at a time.
    block = new_rows
    targets = [torch.tensor([new for new, _ in pairs]) for pairs in index_pairs]
    if len(axes) == 1:
        block.index_copy_(0, targets[0], selected)
    else:
        rows = block.index_select(0, targets[0])
        rows.index_copy_(1, targets[1], selected)
        block.index_copy_(0, targets[0], rows)


def _unit_name(kind: str, label: tuple) -> str:
    """A gate's or expert's label in words: ``expert shared 3``, ``gate task income`` (a task by its name)."""
    parts = [str(part[0]) if isinstance(part, tuple) else str(part) for part in label]
    return " ".join([kind.rstrip("s"), *parts])


def _unit_labels(model: MultiTaskPreTrainedModel, module_name: str, kind: str) -> list[tuple]:
    own_labels = getattr(model.config, "unit_labels", None)  # an architecture that labels its units itself
    if own_labels is not None:
        return own_labels(module_name, kind)
    if module_name.startswith("heads.towers"):
        return [("task", model.config.task_key(name)) for name in model.task_names]
    level = re.match(r"router\.levels\.(\d+)\.", module_name)
    if level is None:
        raise ValueError(f"{module_name} indexes {kind}, but its place in {type(model).__name__} has no unit labels.")
    gates, experts = model.config.routing_unit_labels()[int(level.group(1))]
    return gates if kind == "gates" else experts


def _identities(model: MultiTaskPreTrainedModel) -> set[tuple]:
    return {task_identity(task) for task in model.task_specs}
