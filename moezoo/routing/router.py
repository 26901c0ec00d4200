"""Task routers: gates x experts under an availability mask, alone or stacked in levels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..constants import register_constant

from .dselect_k import DSelectKGate
from .experts import ExpertBank
from .feature_gate import FeatureGate
from .gates import SelfGate, SoftmaxGate
from .plans import RoutingLevel

#: Gate classes by name. Each takes ``(input_size, num_experts, num_gates, mask, **options)`` and
#: returns a `GateOutput`.
GATE_TYPES: dict[str, type[nn.Module]] = {"softmax": SoftmaxGate, "dselect_k": DSelectKGate}


def build_gate(
    gate_type: str, input_size: int, num_experts: int, num_gates: int, mask: torch.Tensor, **options: Any
) -> nn.Module:
    """Build a gate by name (see `GATE_TYPES`)."""
    if gate_type not in GATE_TYPES:
        raise ValueError(f"Unknown gate_type {gate_type!r}; choose one of {sorted(GATE_TYPES)}.")
    return GATE_TYPES[gate_type](input_size, num_experts, num_gates=num_gates, mask=mask, **options)


@dataclass
class RouterOutput:
    """What a router returns.

    Attributes:
        mixtures: ``[B, G, h]``, gate ``g``'s weighted sum of expert outputs (plus its self-gated own
            experts, where the level has self-gates).
        router_probs: The gate weights ``[B, G, E]`` (`StackedTaskRouter`: one per level), or ``None``
            unless requested. Self-gate weights are not included.
        aux_loss: The gates' auxiliary losses summed (a scalar), or ``None`` when no gate has one.
    """

    mixtures: torch.Tensor
    router_probs: torch.Tensor | tuple[torch.Tensor, ...] | None = None
    aux_loss: torch.Tensor | None = None


class TaskRouter(nn.Module):
    """``G`` gates over ``E`` experts, gate ``g`` mixing the experts ``mask[g]`` allows.

    The MMoE family differs only in the mask (MMoE: all ones ``[T, E]``; OMoE: one gate; CGC:
    shared + own experts). Inputs are either one ``[B, d]`` tensor that every expert and gate reads,
    or, for a level stacked on another, the previous level's ``[B, S, d]`` mixtures, from which
    ``expert_sources[e]`` and ``gate_sources[g]`` pick each expert's and gate's input.

    HoME's two additions are optional: a `FeatureGate` in front of the experts (``feature_gate_rank``),
    and, when the level has a ``self_gate_mask``, a `SelfGate` whose weighting of each gate's own
    experts is added to that gate's mixture.

    Args:
        input_size: Size of the routing input.
        level: The level's mask and input sources (see `moezoo.routing.plans`).
        expert_hidden_sizes: Layer sizes of every expert.
        activation, dropout, normalization: Passed to `ExpertBank`.
        gate_type: A name in `GATE_TYPES`.
        gate_options: Further keyword arguments of the gate (e.g. DSelect-k's ``num_selectors``).
        feature_gate_rank: Rank of each expert's feature-gate; ``None`` for none.
    """

    def __init__(
        self,
        input_size: int,
        level: RoutingLevel,
        expert_hidden_sizes: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
        normalization: str | None = None,
        gate_type: str = "softmax",
        gate_options: Mapping[str, Any] | None = None,
        feature_gate_rank: int | None = None,
    ) -> None:
        super().__init__()
        num_gates, num_experts = level.mask.shape
        self.feature_gate = (
            FeatureGate(num_experts, input_size, feature_gate_rank) if feature_gate_rank is not None else None
        )
        self.experts = ExpertBank(
            num_experts, input_size, expert_hidden_sizes, activation=activation, dropout=dropout,
            normalization=normalization,
        )
        self.gate = build_gate(gate_type, input_size, num_experts, num_gates, level.mask, **(gate_options or {}))
        # A level whose gates own no experts (e.g. HoME without task experts) has nothing to self-gate.
        self.self_gate = (
            SelfGate(input_size, num_experts, num_gates, level.self_gate_mask)
            if level.self_gate_mask is not None and bool(level.self_gate_mask.any())
            else None
        )
        self.reads_stacked_inputs = level.expert_sources is not None
        if self.reads_stacked_inputs:
            register_constant(self, "expert_sources", level.expert_sources)
            register_constant(self, "gate_sources", level.gate_sources)

    @property
    def num_gates(self) -> int:
        return self.gate.num_gates

    @property
    def output_size(self) -> int:
        return self.experts.output_size

    def forward(self, inputs: torch.Tensor, output_router_probs: bool = False) -> RouterOutput:
        if self.reads_stacked_inputs:
            if inputs.dim() != 3:
                raise ValueError(f"A stacked routing level expects [batch, sources, d] inputs, got {list(inputs.shape)}.")
            expert_inputs = inputs.index_select(1, self.expert_sources)
            gate_inputs = inputs.index_select(1, self.gate_sources)
        else:
            expert_inputs = gate_inputs = inputs
        if self.feature_gate is not None:
            expert_inputs = self.feature_gate(expert_inputs)  # [B, E, d]
        expert_outputs = self.experts(expert_inputs)  # [B, E, h]
        gate_output = self.gate(gate_inputs)
        mixtures = torch.bmm(gate_output.probs, expert_outputs)  # [B, G, h]
        if self.self_gate is not None:
            mixtures = torch.baddbmm(mixtures, self.self_gate(gate_inputs).probs, expert_outputs)
        return RouterOutput(mixtures, gate_output.probs if output_router_probs else None, gate_output.aux_loss)


class StackedTaskRouter(nn.Module):
    """Task routers stacked in levels (PLE): level ``l`` reads the mixtures of level ``l - 1``.

    Returns a `RouterOutput` with the last level's mixtures, on request every level's gate weights,
    and the auxiliary losses of all levels summed. Arguments as for `TaskRouter`, shared by every level
    (each level's self-gates come from its `RoutingLevel`), except ``feature_gate_rank``: feature-gates
    sit in front of the first level's experts only, the ones that read the model's input features.
    """

    def __init__(
        self,
        input_size: int,
        levels: Sequence[RoutingLevel],
        expert_hidden_sizes: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
        normalization: str | None = None,
        gate_type: str = "softmax",
        gate_options: Mapping[str, Any] | None = None,
        feature_gate_rank: int | None = None,
    ) -> None:
        super().__init__()
        if not levels:
            raise ValueError("StackedTaskRouter needs at least one routing level.")
        self.levels = nn.ModuleList()
        level_input_size = input_size
        for index, level in enumerate(levels):
            router = TaskRouter(
                level_input_size, level, expert_hidden_sizes, activation, dropout, normalization, gate_type,
                gate_options, feature_gate_rank if index == 0 else None,
            )
            self.levels.append(router)
            level_input_size = router.output_size

    @property
    def num_gates(self) -> int:
        return self.levels[-1].num_gates

    @property
    def output_size(self) -> int:
        return self.levels[-1].output_size

    def forward(self, inputs: torch.Tensor, output_router_probs: bool = False) -> RouterOutput:
        all_probs = []
        aux_loss = None
        hidden = inputs
        for router in self.levels:
            output = router(hidden, output_router_probs=output_router_probs)
            hidden = output.mixtures
            all_probs.append(output.router_probs)
            if output.aux_loss is not None:
                aux_loss = output.aux_loss if aux_loss is None else aux_loss + output.aux_loss
        return RouterOutput(hidden, tuple(all_probs) if output_router_probs else None, aux_loss)
