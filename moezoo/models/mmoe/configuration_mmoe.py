"""Configurations of the MMoE family: Shared-Bottom, OMoE, MMoE, CGC and PLE.

They are one architecture (`moezoo.routing.progressive_layered_plan`) with different defaults; each
has its own ``model_type`` so that a checkpoint names what it is.
"""

from dataclasses import field

import torch
from huggingface_hub.dataclasses import strict

from ...routing import RoutingLevel, progressive_layered_plan
from ..routed import RoutedMultiTaskConfig


@strict
class MMoEConfig(RoutedMultiTaskConfig):
    """Multi-gate Mixture-of-Experts (Ma et al., KDD 2018) and its family.

    Args:
        num_shared_experts: Experts every gate may mix (per level).
        num_task_experts: Experts owned by each task (per level); CGC / PLE use them.
        num_levels: Stacked extraction levels (PLE: > 1).
        gate_per_task: One gate per task; ``False`` gives OMoE's single gate.

    Other arguments (the experts, tasks, inputs and towers): see
    `moezoo.models.routed.RoutedMultiTaskConfig`.
    """

    model_type = "mmoe"

    num_shared_experts: int = 8
    num_task_experts: int = 0
    num_levels: int = 1
    gate_per_task: bool = True

    def routing_plan(self) -> tuple[list[RoutingLevel], torch.Tensor]:
        """`moezoo.routing.progressive_layered_plan` with this config's expert counts."""
        return progressive_layered_plan(
            len(self.tasks), self.num_shared_experts, self.num_task_experts, self.num_levels, self.gate_per_task
        )

    def routing_unit_labels(self) -> list[tuple[list[tuple], list[tuple]]]:
        """Labels of `progressive_layered_plan`'s units: shared experts first, then each task's own;
        the task gates in task order, then the shared gate of every level but the last (or OMoE's
        single shared gate)."""
        tasks = [self.task_key(name) for name in self.task_names]
        experts = [("shared", i) for i in range(self.num_shared_experts)]
        experts += [("task", task, i) for task in tasks for i in range(self.num_task_experts)]
        labels = []
        for level in range(self.num_levels):
            gates = [("task", task) for task in tasks] if self.gate_per_task else [("shared",)]
            if self.gate_per_task and level < self.num_levels - 1:
                gates.append(("shared",))
            labels.append((gates, experts))
        return labels

    def validate_routing(self) -> None:
        """Part of `@strict` validation: the routing plan can be built."""
        self.routing_plan()


@strict
class SharedBottomConfig(MMoEConfig):
    """Shared-Bottom: one shared network under the task towers (MMoE with a single expert)."""

    model_type = "shared_bottom"

    num_shared_experts: int = 1
    gate_per_task: bool = False
    expert_hidden_sizes: list[int] = field(default_factory=lambda: [128])


@strict
class OMoEConfig(MMoEConfig):
    """One-gate Mixture-of-Experts: a single gate whose mixture every task reads."""

    model_type = "omoe"

    gate_per_task: bool = False


@strict
class CGCConfig(MMoEConfig):
    """Customized Gate Control (Tang et al., RecSys 2020): shared experts plus experts per task;
    each task's gate mixes the shared experts and its own."""

    model_type = "cgc"

    num_shared_experts: int = 4
    num_task_experts: int = 2


@strict
class PLEConfig(CGCConfig):
    """Progressive Layered Extraction (Tang et al., RecSys 2020): CGC levels stacked, each level but
    the last with a shared gate over all its experts."""

    model_type = "ple"

    num_levels: int = 2
