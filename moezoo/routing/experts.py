"""A bank of parallel MLPs held as stacked weight tensors.

The same bank serves as the experts of every mixture and as the task towers: E networks of identical
shape computed together. When all of them read the same input, their first layers are one GEMM
``[B, d] x [d, E*h]``; later layers are one batched matmul over E. No Python loop runs over experts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from transformers.activations import ACT2FN

EXPERT_NORMALIZATIONS = ("batch_norm",)


class ExpertBank(nn.Module):
    """``num_experts`` MLPs of identical shape, computed in batched matmuls.

    Every layer is ``Linear -> [normalisation] -> activation -> dropout``; the activation also follows
    the last layer, since an expert's output is a hidden representation that a gate mixes.

    Args:
        num_experts: Number of experts ``E``.
        input_size: Size ``d`` of each expert's input.
        hidden_sizes: Output size of each layer; the last entry is the expert's output size.
        activation: Any name in `transformers.activations.ACT2FN` (``"relu"``, ``"silu"``/``"swish"``, ...).
        dropout: Dropout probability after each activation.
        normalization: ``None`` or ``"batch_norm"``: per-expert, per-unit batch normalisation between
            the linear map and the activation (HoME's ``Linear -> BatchNorm -> Swish`` experts).

    Shapes:
        - input ``[B, d]``: every expert reads the same rows;
        - input ``[B, E, d]``: expert ``e`` reads ``inputs[:, e]``;
        - output ``[B, E, hidden_sizes[-1]]``.
    """

    def __init__(
        self,
        num_experts: int,
        input_size: int,
        hidden_sizes: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
        normalization: str | None = None,
    ) -> None:
        super().__init__()
        hidden_sizes = list(hidden_sizes)
        if num_experts < 1:
            raise ValueError(f"ExpertBank needs at least one expert, got num_experts={num_experts}.")
        if input_size < 1:
            raise ValueError(f"ExpertBank needs a positive input_size, got {input_size}.")
        if not hidden_sizes or any(size < 1 for size in hidden_sizes):
            raise ValueError(f"ExpertBank needs one or more positive hidden sizes, got {hidden_sizes}.")
        if activation not in ACT2FN:
            raise ValueError(f"Unknown activation {activation!r}; choose one of {sorted(ACT2FN)}.")
        if normalization is not None and normalization not in EXPERT_NORMALIZATIONS:
            raise ValueError(
                f"Unknown expert normalization {normalization!r}; choose None or one of {EXPERT_NORMALIZATIONS}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")

        self.num_experts = num_experts
        self.input_size = input_size
        self.hidden_sizes = hidden_sizes
        layer_sizes = [input_size, *hidden_sizes]
        # Weights are [E, in, out] so that a later layer is `torch.baddbmm(bias, hidden, weight)`.
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(num_experts, fan_in, fan_out))
            for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:])
        )
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(num_experts, size)) for size in hidden_sizes)
        # BatchNorm over the flattened [B, E*h] activations is exactly an independent BatchNorm per
        # expert and unit, computed in one call.
        self.norms = (
            nn.ModuleList(nn.BatchNorm1d(num_experts * size) for size in hidden_sizes)
            if normalization == "batch_norm"
            else None
        )
        self.activation = ACT2FN[activation]
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset_parameters()

    @property
    def output_size(self) -> int:
        return self.hidden_sizes[-1]

    def reset_parameters(self) -> None:
        """Initialise every expert as `torch.nn.Linear` would: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        for weight, bias in zip(self.weights, self.biases):
            bound = 1.0 / math.sqrt(weight.shape[1])
            nn.init.uniform_(weight, -bound, bound)
            nn.init.uniform_(bias, -bound, bound)
        if self.norms is not None:
            for norm in self.norms:
                norm.reset_parameters()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.dim() not in (2, 3) or inputs.shape[-1] != self.input_size:
            raise ValueError(
                f"ExpertBank expects [batch, {self.input_size}] or [batch, {self.num_experts}, {self.input_size}] "
                f"inputs, got shape {list(inputs.shape)}."
            )
        if inputs.dim() == 2:
            hidden = self._first_layer_shared(inputs)
        else:
            if inputs.shape[1] != self.num_experts:
                raise ValueError(
                    f"Per-expert inputs must be [batch, {self.num_experts}, {self.input_size}], "
                    f"got {list(inputs.shape)}."
                )
            hidden = torch.baddbmm(self.biases[0].unsqueeze(1), inputs.transpose(0, 1), self.weights[0])
            hidden = hidden.transpose(0, 1)

        # `hidden` is [B, E, h] from here on; the batched matmuls work on its [E, B, h] view.
        hidden = self._activate(0, hidden)
        for layer in range(1, len(self.weights)):
            hidden = torch.baddbmm(self.biases[layer].unsqueeze(1), hidden.transpose(0, 1), self.weights[layer])
            hidden = self._activate(layer, hidden.transpose(0, 1))
        return hidden

    def _first_layer_shared(self, inputs: torch.Tensor) -> torch.Tensor:
        weight = self.weights[0]  # [E, d, h]
        num_experts, input_size, hidden_size = weight.shape
        # One GEMM for the first layer of all experts: [B, d] x [d, E*h].
        flat_weight = weight.transpose(0, 1).reshape(input_size, num_experts * hidden_size)
        hidden = torch.addmm(self.biases[0].reshape(-1), inputs, flat_weight)
        return hidden.view(inputs.shape[0], num_experts, hidden_size)

    def _activate(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        if self.norms is not None:
            batch, num_experts, size = hidden.shape
            hidden = self.norms[layer](hidden.reshape(batch, num_experts * size)).view(batch, num_experts, size)
        return self.dropout(self.activation(hidden))

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, input_size={self.input_size}, hidden_sizes={self.hidden_sizes}"
