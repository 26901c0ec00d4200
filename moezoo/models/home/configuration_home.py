"""Configuration of HoME, the Hierarchy of Multi-Gate Experts (Wang et al., Kuaishou 2024)."""

from typing import Any

import torch
from huggingface_hub.dataclasses import strict

from ...routing import RoutingLevel, hierarchical_plan
from ..routed import RoutedMultiTaskConfig


@strict
class HoMEConfig(RoutedMultiTaskConfig):
    """HoME: global, group and task experts in a meta and a task level, with normalised experts,
    feature-gates and self-gates. Each of the paper's fixes can be switched off for ablations.

    Args:
        task_groups: Task categories, as group name -> task names; every task in exactly one group.
            ``None`` puts all tasks in one group.
        num_global_experts: Experts shared by every task, per level.
        num_group_experts: Experts per group, per level.
        num_task_experts: Experts per task, in the task level.
        hierarchical: ``True``: the meta level (global and group experts, a gate per group and a
            global gate) feeds the task level. ``False``: the task level alone, on the input.
        feature_gate_rank: Rank of each first-level expert's feature-gate ``x * 2 sigmoid(x B_k A_k)``;
            ``None`` for no feature-gates.
        self_gate: Add each gate's own experts again through a self-gate (sigmoid for one expert,
            softmax for several).
        expert_activation, expert_normalization: HoME's ``Linear -> BatchNorm -> Swish`` experts by
            default; ``"relu"`` and ``None`` give the plain experts the paper diagnoses.

    Other arguments (expert sizes, tasks, inputs, towers): see `moezoo.models.routed.RoutedMultiTaskConfig`.
    The plan itself is `moezoo.routing.hierarchical_plan`.
    """

    model_type = "home"

    task_groups: dict[str, list[str]] | None = None
    num_global_experts: int = 2
    num_group_experts: int = 1
    num_task_experts: int = 1
    hierarchical: bool = True
    feature_gate_rank: int | None = 4
    self_gate: bool = True
    expert_activation: str = "silu"
    expert_normalization: str | None = "batch_norm"

    def task_group_indices(self) -> list[int]:
        """The group of each task, in task order, groups numbered by sorted name.

        Sorted, not in ``task_groups`` order: a config's JSON sorts its keys, so insertion order does
        not survive `save_pretrained`, and the groups must map to the same experts after loading.
        """
        if self.task_groups is None:
            return [0] * len(self.tasks)
        group_of = {task: index for index, group in enumerate(sorted(self.task_groups)) for task in self.task_groups[group]}
        return [group_of[name] for name in self.task_names]

    def routing_plan(self) -> tuple[list[RoutingLevel], torch.Tensor]:
        """`moezoo.routing.hierarchical_plan` with this config's groups and expert counts."""
        return hierarchical_plan(
            self.task_group_indices(),
            self.num_global_experts,
            self.num_group_experts,
            self.num_task_experts,
            hierarchical=self.hierarchical,
            self_gates=self.self_gate,
        )

    def routing_unit_labels(self) -> list[tuple[list[tuple], list[tuple]]]:
        """Labels of `hierarchical_plan`'s units: global experts, each group's (groups by name), then
        each task's own; the meta level's group gates and global gate, the task level's task gates."""
        groups = sorted(self.task_groups) if self.task_groups is not None else ["all"]
        tasks = [self.task_key(name) for name in self.task_names]
        meta_experts = [("global", i) for i in range(self.num_global_experts)]
        meta_experts += [("group", group, i) for group in groups for i in range(self.num_group_experts)]
        task_experts = meta_experts + [("task", task, i) for task in tasks for i in range(self.num_task_experts)]
        task_level = ([("task", task) for task in tasks], task_experts)
        if not self.hierarchical:
            return [task_level]
        return [([*(("group", group) for group in groups), ("global",)], meta_experts), task_level]

    def router_options(self) -> dict[str, Any]:
        return {"feature_gate_rank": self.feature_gate_rank}

    def check_task_groups(self) -> None:
        """Raise a `ValueError` unless ``task_groups`` partitions the tasks."""
        if self.task_groups is None:
            return
        if not self.task_groups:
            raise ValueError("task_groups is empty; give at least one group, or None for a single group of all tasks.")
        task_names = self.task_names
        seen: dict[str, str] = {}
        for group, members in self.task_groups.items():
            if not members:
                raise ValueError(f"Task group {group!r} has no tasks; every group needs at least one task.")
            for name in members:
                if name not in task_names:
                    raise ValueError(f"Task group {group!r} names {name!r}, which is not a task; tasks: {task_names}.")
                if name in seen:
                    raise ValueError(f"Task {name!r} is in task groups {seen[name]!r} and {group!r}; give it one group.")
                seen[name] = group
        ungrouped = [name for name in task_names if name not in seen]
        if ungrouped:
            raise ValueError(
                f"Tasks {ungrouped} are in no group of task_groups {self.task_groups}; every task needs a group."
            )

    def validate_routing(self) -> None:
        """Part of `@strict` validation: the groups partition the tasks, the plan can be built and the
        feature-gates are low-rank."""
        self.check_task_groups()
        self.routing_plan()
        if self.feature_gate_rank is not None and not 1 <= self.feature_gate_rank <= self.input_size:
            raise ValueError(
                f"feature_gate_rank={self.feature_gate_rank} must be between 1 and the input size "
                f"{self.input_size}: a feature-gate's rank cannot exceed its input."
            )
