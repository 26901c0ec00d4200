"""Routing plans: which experts each gate may mix, and where each level reads its inputs.

A plan is data (masks and index vectors), so the whole MMoE family (Shared-Bottom, OMoE, MMoE, CGC,
PLE) is one router built from different plans. Plans are built on the CPU whatever the ambient
device context, since models consume them as constants (see `moezoo.constants`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RoutingLevel:
    """One level of routing.

    Attributes:
        mask: Bool ``[G, E]``: gate ``g`` may mix expert ``e``.
        expert_sources: Long ``[E]`` or ``None``: for a level stacked on another, which of the previous
            level's gate outputs expert ``e`` reads; ``None`` when every expert reads the model input.
        gate_sources: Long ``[G]`` or ``None``: likewise for each gate.
    """

    mask: torch.Tensor
    expert_sources: torch.Tensor | None = None
    gate_sources: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if (self.expert_sources is None) != (self.gate_sources is None):
            raise ValueError("expert_sources and gate_sources must both be given or both be None.")
        num_gates, num_experts = self.mask.shape
        if self.expert_sources is not None and (
            self.expert_sources.shape != (num_experts,) or self.gate_sources.shape != (num_gates,)
        ):
            raise ValueError(
                f"expert_sources must be [{num_experts}] and gate_sources [{num_gates}], got "
                f"{list(self.expert_sources.shape)} and {list(self.gate_sources.shape)}."
            )


def progressive_layered_plan(
    num_tasks: int,
    num_shared_experts: int,
    num_task_experts: int = 0,
    num_levels: int = 1,
    gate_per_task: bool = True,
) -> tuple[list[RoutingLevel], torch.Tensor]:
    """The routing plan of Progressive Layered Extraction (Tang et al. 2020) and its special cases.

    Each level holds ``num_shared_experts`` shared experts followed by ``num_task_experts`` experts
    per task. Task ``t``'s gate mixes the shared experts and its own; every level but the last adds
    a shared gate over all its experts, whose output feeds the next level's shared experts.

    ======================  =================================================================
    architecture            arguments
    ======================  =================================================================
    Shared-Bottom           ``num_shared_experts=1`` (the one "expert" is the shared bottom)
    OMoE                    ``gate_per_task=False``: one gate, read by every task
    MMoE                    ``num_task_experts=0``: every task gate sees every expert
    CGC                     ``num_task_experts > 0``, ``num_levels=1``
    PLE                     ``num_levels > 1``
    ======================  =================================================================

    Returns:
        The levels, and ``task_to_gate`` (Long ``[num_tasks]``): which gate of the last level
        each task reads.
    """
    if num_tasks < 1:
        raise ValueError(f"A routing plan needs at least one task, got num_tasks={num_tasks}.")
    if num_shared_experts < 0 or num_task_experts < 0:
        raise ValueError(
            f"Expert counts cannot be negative, got num_shared_experts={num_shared_experts}, "
            f"num_task_experts={num_task_experts}."
        )
    if num_shared_experts + num_task_experts == 0:
        raise ValueError("A routing plan needs at least one expert: num_shared_experts + num_task_experts is 0.")
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}.")
    if not gate_per_task and (num_task_experts > 0 or num_levels > 1):
        raise ValueError(
            "A single shared gate (gate_per_task=False) cannot route task-specific experts or stacked levels; "
            "set num_task_experts=0 and num_levels=1, or use one gate per task."
        )

    num_experts = num_shared_experts + num_tasks * num_task_experts
    # owner[e] = -1 for a shared expert, else the task that owns expert e.
    owner = torch.full((num_experts,), -1, dtype=torch.long, device="cpu")
    for task in range(num_tasks):
        start = num_shared_experts + task * num_task_experts
        owner[start : start + num_task_experts] = task
    task_masks = (owner.unsqueeze(0) == -1) | (owner.unsqueeze(0) == torch.arange(num_tasks, device="cpu").unsqueeze(1))
    if not gate_per_task:
        task_masks = torch.ones(1, num_experts, dtype=torch.bool, device="cpu")
    shared_gate_mask = torch.ones(1, num_experts, dtype=torch.bool, device="cpu")
    shared_gate_index = num_tasks

    levels = []
    for level_index in range(num_levels):
        is_last = level_index == num_levels - 1
        mask = task_masks if is_last else torch.cat([task_masks, shared_gate_mask])
        if level_index == 0:
            levels.append(RoutingLevel(mask))
            continue
        # Task experts read their task's previous output; shared experts read the shared gate's.
        expert_sources = torch.where(owner == -1, shared_gate_index, owner)
        gate_sources = torch.arange(mask.shape[0], device="cpu")
        levels.append(RoutingLevel(mask, expert_sources, gate_sources))

    task_to_gate = torch.arange(num_tasks, device="cpu") if gate_per_task else torch.zeros(num_tasks, dtype=torch.long, device="cpu")
    return levels, task_to_gate
