"""Routing plans: which experts each gate may mix, and where each level reads its inputs.

A plan is data (masks and index vectors), so the whole MMoE family (Shared-Bottom, OMoE, MMoE, CGC,
PLE) is one router built from different plans. Plans are built on the CPU whatever the ambient
device context, since models consume them as constants (see `moezoo.constants`).
"""

from __future__ import annotations

from collections.abc import Sequence
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
        self_gate_mask: Bool ``[G, E]`` or ``None``: the experts each gate owns, which HoME's self-gate
            adds again through a residual path (rows may be empty); ``None``: no self-gates.
    """

    mask: torch.Tensor
    expert_sources: torch.Tensor | None = None
    gate_sources: torch.Tensor | None = None
    self_gate_mask: torch.Tensor | None = None

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
        if self.self_gate_mask is not None and self.self_gate_mask.shape != self.mask.shape:
            raise ValueError(
                f"self_gate_mask must have the mask's shape {list(self.mask.shape)}, got {list(self.self_gate_mask.shape)}."
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


def hierarchical_plan(
    task_groups: Sequence[int],
    num_global_experts: int,
    num_group_experts: int,
    num_task_experts: int,
    hierarchical: bool = True,
    self_gates: bool = True,
) -> tuple[list[RoutingLevel], torch.Tensor]:
    """HoME's routing plan (Wang et al., Kuaishou 2024): global, group and task experts in two levels.

    Args:
        task_groups: ``task_groups[t]``, the group of task ``t`` (groups numbered ``0 .. K-1``, none empty).
        num_global_experts: Experts shared by every task, per level.
        num_group_experts: Experts per group, per level.
        num_task_experts: Experts per task, in the task level.
        hierarchical: ``False`` drops the meta level: the task level reads the model input.
        self_gates: Give each gate a self-gate over the experts it owns.

    The meta level has ``num_global_experts`` global experts and ``num_group_experts`` per group, with
    one gate per group (over the global experts and the group's own) and a global gate (over all of
    them). The task level has global, group and task experts: task ``t``'s gate mixes the global
    experts, its group's and its own. Its global experts read the meta level's global gate; its group
    and task experts, and its task gates, read their group's meta gate. The experts a gate owns (for
    self-gates) are: a group's experts for its gate, the global experts for the global gate, a task's
    experts for its gate.

    Returns:
        The levels, and ``task_to_gate`` (task ``t`` reads gate ``t`` of the task level).
    """
    groups = torch.as_tensor(list(task_groups), dtype=torch.long, device="cpu")
    if groups.numel() == 0:
        raise ValueError("A routing plan needs at least one task.")
    num_groups = int(groups.max()) + 1
    if int(groups.min()) < 0:
        raise ValueError(f"Task groups must be numbered from 0, got {groups.tolist()}.")
    empty = sorted(set(range(num_groups)) - set(groups.tolist()))
    if empty:
        raise ValueError(f"Groups {empty} have no task; every group needs at least one.")
    counts = {"num_global_experts": num_global_experts, "num_group_experts": num_group_experts, "num_task_experts": num_task_experts}
    negative = {name: value for name, value in counts.items() if value < 0}
    if negative:
        raise ValueError(f"Expert counts cannot be negative, got {negative}.")
    if num_global_experts + num_group_experts == 0:
        raise ValueError("Every gate needs an expert: num_global_experts + num_group_experts is 0.")
    num_tasks = len(groups)
    task_ids = torch.arange(num_tasks, device="cpu")
    group_ids = torch.arange(num_groups, device="cpu")

    # Expert ownership at each level: group -1 for global experts, task -1 for all but task experts.
    meta_group = torch.cat(
        [torch.full((num_global_experts,), -1, device="cpu"), group_ids.repeat_interleave(num_group_experts)]
    )
    task_group = torch.cat([meta_group, groups.repeat_interleave(num_task_experts)])
    task_owner = torch.cat(
        [torch.full((len(meta_group),), -1, device="cpu"), task_ids.repeat_interleave(num_task_experts)]
    )

    # Task level: global + the task's group + the task's own experts.
    is_group_expert = (task_owner == -1) & (task_group == groups.unsqueeze(1))
    task_mask = (task_group == -1) | is_group_expert | (task_owner == task_ids.unsqueeze(1))
    task_self_mask = task_owner == task_ids.unsqueeze(1)
    levels = []
    if hierarchical:
        # Meta level: K group gates, then the global gate (index K).
        group_mask = (meta_group == -1) | (meta_group == group_ids.unsqueeze(1))
        meta_mask = torch.cat([group_mask, torch.ones(1, len(meta_group), dtype=torch.bool, device="cpu")])
        meta_self_mask = torch.cat([meta_group == group_ids.unsqueeze(1), (meta_group == -1).unsqueeze(0)])
        levels.append(RoutingLevel(meta_mask, self_gate_mask=meta_self_mask if self_gates else None))
        expert_sources = torch.where(task_group == -1, num_groups, task_group)
        levels.append(
            RoutingLevel(
                task_mask, expert_sources, groups.clone(), self_gate_mask=task_self_mask if self_gates else None
            )
        )
    else:
        levels.append(RoutingLevel(task_mask, self_gate_mask=task_self_mask if self_gates else None))
    return levels, task_ids


def plan_task_dependence(levels: Sequence[RoutingLevel], task_to_gate: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Which tasks' outputs each gate and each expert of a plan can affect, read from the plan backwards.

    Task ``t`` reads gate ``task_to_gate[t]`` of the last level; a gate affects the tasks that read it; an
    expert, the tasks of every gate that may mix it (``mask``, or the self-gate's mask); a gate of a lower
    level, the tasks of every expert and gate of the next level that reads its output (``expert_sources``,
    ``gate_sources``).

    Returns:
        Per level, Bool ``[G, T]`` (gate ``g`` affects task ``t``) and Bool ``[E, T]`` (expert ``e`` does).
    """
    num_tasks = len(task_to_gate)
    gate_tasks = torch.zeros(levels[-1].mask.shape[0], num_tasks, dtype=torch.bool)
    gate_tasks[task_to_gate, torch.arange(num_tasks)] = True
    dependence: list[tuple[torch.Tensor, torch.Tensor]] = []
    for level_index in range(len(levels) - 1, -1, -1):
        level = levels[level_index]
        mixing = level.mask if level.self_gate_mask is None else level.mask | level.self_gate_mask
        expert_tasks = (mixing.T.float() @ gate_tasks.float()) > 0
        dependence.insert(0, (gate_tasks, expert_tasks))
        if level_index == 0:
            break
        readers = torch.zeros(levels[level_index - 1].mask.shape[0], num_tasks)
        readers.index_add_(0, level.expert_sources, expert_tasks.float())
        readers.index_add_(0, level.gate_sources, gate_tasks.float())
        gate_tasks = readers > 0
    return dependence
