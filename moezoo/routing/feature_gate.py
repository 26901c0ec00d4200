"""HoME's feature-gate: each expert sees its own low-rank re-weighting of the input features.

Expert ``k`` reads ``x * 2 * sigmoid(x B_k A_k)``, with ``B_k`` ``[d, r]`` and ``A_k`` ``[r, d]``
(Wang et al., "HoME: Hierarchy of Multi-Gate Experts for Multi-Task Learning at Kuaishou", 2024). The
factor 2 makes the gate's neutral value 1, and ``A_k`` starts at zero (as LoRA's ``B`` does), so every
expert sees exactly ``x`` at initialisation and learns which features to amplify or damp.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from .experts import batched_linear, check_expert_inputs


class FeatureGate(nn.Module):
    """Low-rank feature-gates for ``num_experts`` experts, computed for all of them in two batched matmuls.

    Args:
        num_experts: Number of experts ``E``.
        input_size: Size ``d`` of the features.
        rank: Rank ``r`` of each expert's gate, ``1 <= r <= d``.

    Shapes:
        - input ``[B, d]`` (every expert reads the same features) or ``[B, E, d]`` (expert ``e`` reads
          ``inputs[:, e]``);
        - output ``[B, E, d]``, expert ``e``'s gated features.
    """

    #: Which axes of each parameter index experts (see `moezoo.models.transfer`).
    unit_axes: ClassVar[dict[str, tuple[str, ...]]] = {"down_weight": ("experts",), "up_weight": ("experts",)}

    def __init__(self, num_experts: int, input_size: int, rank: int) -> None:
        super().__init__()
        if num_experts < 1 or input_size < 1:
            raise ValueError(f"FeatureGate needs num_experts >= 1 and input_size >= 1, got {num_experts}, {input_size}.")
        if not 1 <= rank <= input_size:
            raise ValueError(
                f"The feature-gate rank must be between 1 and the input size {input_size}, got rank={rank}: "
                "a rank larger than the input is not low-rank."
            )
        self.num_experts = num_experts
        self.input_size = input_size
        self.rank = rank
        # Laid out as `BatchedLinear` weights [E, out, in]: down is B_k^T, up is A_k^T.
        self.down_weight = nn.Parameter(torch.empty(num_experts, rank, input_size))
        self.up_weight = nn.Parameter(torch.empty(num_experts, input_size, rank))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``B`` as `torch.nn.Linear` initialises its weight, ``A`` zero: every gate starts at exactly 1."""
        bound = 1.0 / math.sqrt(self.input_size)
        nn.init.uniform_(self.down_weight, -bound, bound)
        nn.init.zeros_(self.up_weight)

    def gates(self, inputs: torch.Tensor) -> torch.Tensor:
        """``2 * sigmoid(x B_k A_k)`` for every expert, ``[B, E, d]``."""
        check_expert_inputs(self, inputs)
        low_rank = batched_linear(inputs, self.down_weight)  # [B, E, r]
        return 2.0 * torch.sigmoid(batched_linear(low_rank, self.up_weight))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        features = inputs.unsqueeze(1) if inputs.dim() == 2 else inputs
        return features * self.gates(inputs)

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, input_size={self.input_size}, rank={self.rank}"
