"""Task routers: gates x experts under an availability mask, alone or stacked in levels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..constants import register_constant

from .experts import ExpertBank
from .gates import SoftmaxGate
from .plans import RoutingLevel


@dataclass
class RouterOutput:
    """What a router returns.

    Attributes:
        mixtures: ``[B, G, h]``, gate ``g``'s weighted sum of expert outputs.
        router_probs: ``[B, G, E]`` gate weights, or ``None`` unless requested.
    """

    mixtures: torch.Tensor
    router_probs: torch.Tensor | None = None


class TaskRouter(nn.Module):
    """``G`` gates over ``E`` experts, gate ``g`` mixing the experts ``mask[g]`` allows.

    The MMoE family differs only in the mask (MMoE: all ones ``[T, E]``; OMoE: one gate; CGC:
    shared + own experts). Inputs are either one ``[B, d]`` tensor that every expert and gate reads,
    or, for a level stacked on another, the previous level's ``[B, S, d]`` mixtures, from which
    ``expert_sources[e]`` and ``gate_sources[g]`` pick each expert's and gate's input.

    Args:
        input_size: Size of the routing input.
        level: The level's mask and input sources (see `moezoo.routing.plans`).
        expert_hidden_sizes: Layer sizes of every expert.
        activation, dropout, normalization: Passed to `ExpertBank`.
    """

    def __init__(
        self,
        input_size: int,
        level: RoutingLevel,
        expert_hidden_sizes: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
        normalization: str | None = None,
    ) -> None:
        super().__init__()
        num_gates, num_experts = level.mask.shape
        self.experts = ExpertBank(
            num_experts, input_size, expert_hidden_sizes, activation=activation, dropout=dropout,
            normalization=normalization,
        )
        self.gate = SoftmaxGate(input_size, num_experts, num_gates=num_gates, mask=level.mask)
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
        expert_outputs = self.experts(expert_inputs)  # [B, E, h]
        probs = self.gate(gate_inputs)  # [B, G, E]
        mixtures = torch.bmm(probs, expert_outputs)  # [B, G, h]
        return RouterOutput(mixtures, probs if output_router_probs else None)


class StackedTaskRouter(nn.Module):
    """Task routers stacked in levels (PLE): level ``l`` reads the mixtures of level ``l - 1``.

    Returns the last level's mixtures and, on request, every level's gate weights.
    """

    def __init__(
        self,
        input_size: int,
        levels: Sequence[RoutingLevel],
        expert_hidden_sizes: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
        normalization: str | None = None,
    ) -> None:
        super().__init__()
        if not levels:
            raise ValueError("StackedTaskRouter needs at least one routing level.")
        self.levels = nn.ModuleList()
        level_input_size = input_size
        for level in levels:
            router = TaskRouter(level_input_size, level, expert_hidden_sizes, activation, dropout, normalization)
            self.levels.append(router)
            level_input_size = router.output_size

    @property
    def num_gates(self) -> int:
        return self.levels[-1].num_gates

    @property
    def output_size(self) -> int:
        return self.levels[-1].output_size

    def forward(
        self, inputs: torch.Tensor, output_router_probs: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        all_probs = []
        hidden = inputs
        for router in self.levels:
            output = router(hidden, output_router_probs=output_router_probs)
            hidden = output.mixtures
            all_probs.append(output.router_probs)
        return hidden, (tuple(all_probs) if output_router_probs else None)
