"""A bank of parallel MLPs held as stacked weight tensors.

The same bank serves as the experts of every mixture and as the task towers: E networks of identical
shape computed together. When all of them read the same input, their first layers are one GEMM
``[B, d] x [d, E*h]``; later layers are one batched matmul over E. No Python loop runs over experts.

Each layer is a `BatchedLinear` whose weight is stored as ``[E, out, in]``: expert ``e``'s slice is
exactly the weight of the `torch.nn.Linear` it replaces, and the first layer of all experts is a free
``[E*out, in]`` view, so the shared-input GEMM copies no weight in either direction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN

EXPERT_NORMALIZATIONS = ("batch_norm",)


def batched_linear(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``E`` affine maps at once: ``weight`` ``[E, out, in]``, ``bias`` ``[E, out]`` or ``None``.

    ``inputs`` ``[B, in]`` (every map reads the same rows: one GEMM on a free ``[E*out, in]`` view of
    the weight) or ``[B, E, in]`` (map ``e`` reads ``inputs[:, e]``: one batched matmul) -> ``[B, E, out]``.
    """
    num_maps, out_features, in_features = weight.shape
    if inputs.dim() == 2:
        flat_bias = bias.view(-1) if bias is not None else None
        hidden = F.linear(inputs, weight.view(num_maps * out_features, in_features), flat_bias)
        return hidden.view(inputs.shape[0], num_maps, out_features)
    per_map_inputs, transposed_weight = inputs.transpose(0, 1), weight.transpose(1, 2)
    if bias is None:
        return torch.bmm(per_map_inputs, transposed_weight).transpose(0, 1)
    return torch.baddbmm(bias.unsqueeze(1), per_map_inputs, transposed_weight).transpose(0, 1)


def sort_by_expert(expert_indices: torch.Tensor, num_experts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Group (token, expert) pairs by expert: the positions of the flat ``expert_indices`` sorted by expert,
    stable (token order within each expert), and how many pairs each expert has ``[E]``."""
    return torch.argsort(expert_indices, stable=True), torch.bincount(expert_indices, minlength=num_experts)


def check_expert_inputs(module: nn.Module, inputs: torch.Tensor) -> None:
    """Experts read ``[B, d]`` (all the same rows) or ``[B, E, d]`` (expert ``e`` reads ``inputs[:, e]``);
    ``module`` has ``num_experts`` and ``input_size``."""
    num_experts, size = module.num_experts, module.input_size
    if inputs.dim() not in (2, 3) or inputs.shape[-1] != size:
        raise ValueError(
            f"{type(module).__name__} expects [batch, {size}] or [batch, {num_experts}, {size}] inputs, "
            f"got shape {list(inputs.shape)}."
        )
    if inputs.dim() == 3 and inputs.shape[1] != num_experts:
        raise ValueError(f"Per-expert inputs must be [batch, {num_experts}, {size}], got {list(inputs.shape)}.")


class BatchedLinear(nn.Module):
    """``num_experts`` independent linear maps ``in_features -> out_features``, applied together.

    ``weight`` is ``[E, out, in]`` and ``bias`` ``[E, out]``: slice ``e`` holds exactly the parameters
    of the `torch.nn.Linear` it replaces.

    Shapes: see `batched_linear`.
    """

    #: Which axes of each parameter index experts (read by `moezoo.models.transfer` to move a
    #: checkpoint's experts into a model whose experts differ).
    unit_axes: ClassVar[dict[str, tuple[str, ...]]] = {"weight": ("experts",), "bias": ("experts",)}

    def __init__(self, num_experts: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(num_experts, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(num_experts, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise every map as `torch.nn.Linear` would: U(-1/sqrt(in), 1/sqrt(in))."""
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return batched_linear(inputs, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, in_features={self.in_features}, out_features={self.out_features}"


class ExpertBatchNorm(nn.BatchNorm1d):
    """Batch normalisation of the flattened ``[B, E*h]`` activations of ``E`` experts: exactly an
    independent BatchNorm per expert and unit, computed in one call."""

    unit_axes: ClassVar[dict[str, tuple[str, ...]]] = {
        name: ("experts",) for name in ("weight", "bias", "running_mean", "running_var")
    }

    def __init__(self, num_experts: int, size: int) -> None:
        super().__init__(num_experts * size)
        self.num_experts = num_experts

    def unit_view(self, tensor: torch.Tensor) -> torch.Tensor:
        """A flat ``[E*h]`` statistic or parameter as ``[E, h]``, experts first."""
        return tensor.view(self.num_experts, -1)


class ExpertBank(nn.Module):
    """``num_experts`` MLPs of identical shape, computed in batched matmuls.

    Every layer is ``Linear -> [normalisation] -> activation -> dropout``; the activation also follows
    the last layer, since an expert's output is a hidden representation that a gate mixes, unless
    ``output_activation=False`` (a transformer's MLP: ``Linear -> GELU -> Linear``).

    Two ways to run it, on the same parameters: `forward` computes every expert for every row (the
    dense mixtures of MMoE, PLE, HoME); `forward_sparse` computes for each token only the experts a
    top-k gate chose (`moezoo.routing.TopKGate`).

    Args:
        num_experts: Number of experts ``E``.
        input_size: Size ``d`` of each expert's input.
        hidden_sizes: Output size of each layer; the last entry is the expert's output size.
        activation: Any name in `transformers.activations.ACT2FN` (``"relu"``, ``"silu"``/``"swish"``, ...).
        dropout: Dropout probability after each activation.
        normalization: ``None`` or ``"batch_norm"``: per-expert, per-unit batch normalisation between
            the linear map and the activation (HoME's ``Linear -> BatchNorm -> Swish`` experts).
        output_activation: Whether the activation (and dropout) follows the last layer too.

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
        output_activation: bool = True,
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
        self.layers = nn.ModuleList(
            BatchedLinear(num_experts, fan_in, fan_out) for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:])
        )
        self.norms = (
            nn.ModuleList(ExpertBatchNorm(num_experts, size) for size in hidden_sizes)
            if normalization == "batch_norm"
            else None
        )
        self.activation = ACT2FN[activation]
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.output_activation = output_activation

    @property
    def output_size(self) -> int:
        return self.hidden_sizes[-1]

    def reset_parameters(self) -> None:
        """Initialise every expert as a stack of `torch.nn.Linear` (and `torch.nn.BatchNorm1d`) would be."""
        for layer in self.layers:
            layer.reset_parameters()
        if self.norms is not None:
            for norm in self.norms:
                norm.reset_parameters()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        check_expert_inputs(self, inputs)
        # Iterating the ModuleLists (not indexing them) keeps the Python work between matmuls small,
        # which shows at the small sizes experts usually have.
        hidden = inputs
        norms = self.norms if self.norms is not None else [None] * len(self.layers)
        last = len(self.layers) - 1
        for index, (layer, norm) in enumerate(zip(self.layers, norms)):
            hidden = layer(hidden)  # [B, E, h]
            if norm is not None:
                batch, num_experts, size = hidden.shape
                hidden = norm(hidden.reshape(batch, num_experts * size)).view(batch, num_experts, size)
            if index < last or self.output_activation:
                hidden = self._activate(hidden)
        return hidden

    def forward_sparse(
        self,
        inputs: torch.Tensor,
        expert_indices: torch.Tensor,
        expert_weights: torch.Tensor,
        kept: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Each token through only its selected experts, mixed by their weights.

        ``output[n] = sum_j expert_weights[n, j] * expert_{expert_indices[n, j]}(inputs[n])``, computed
        by sorting the ``N*k`` (token, expert) pairs by expert and running each used expert once on its
        contiguous slice of tokens; the results are scaled and added back per token. FLOPs scale with
        ``k/E`` of the dense `forward`.

        Args:
            inputs: ``[N, d]`` tokens.
            expert_indices: ``[N, k]`` experts per token (a top-k gate's choice).
            expert_weights: ``[N, k]`` their mixture weights.
            kept: ``[N, k]`` bool, or ``None`` for all: pairs left out (a token over an expert's
                capacity) are not computed and add nothing.

        Returns:
            ``[N, hidden_sizes[-1]]``.
        """
        if self.norms is not None:
            raise ValueError("Sparse execution computes each expert on a different set of tokens; batch "
                             "normalisation needs them all (build the bank with normalization=None).")
        if inputs.dim() != 2 or inputs.shape[-1] != self.input_size:
            raise ValueError(f"forward_sparse expects [tokens, {self.input_size}] inputs, got {list(inputs.shape)}.")
        shapes = [expert_indices.shape, expert_weights.shape] + ([kept.shape] if kept is not None else [])
        if any(shape != shapes[0] for shape in shapes) or expert_indices.shape[0] != inputs.shape[0]:
            raise ValueError(
                f"expert_indices, expert_weights and kept must all be [tokens={inputs.shape[0]}, k], got "
                f"{[list(shape) for shape in shapes]}."
            )
        num_selected = expert_indices.shape[1]
        flat_experts = expert_indices.reshape(-1)
        flat_weights = expert_weights.reshape(-1)
        if kept is None:
            order, counts = sort_by_expert(flat_experts, self.num_experts)
        else:
            pairs = kept.reshape(-1).nonzero().squeeze(1)
            order, counts = sort_by_expert(flat_experts[pairs], self.num_experts)
            order = pairs[order]
        tokens = order // num_selected
        # `split` and `unbind`, not slicing: each slice's backward would fill a zero tensor of the whole
        # input (of all N*k pairs, or all E experts' weights) per expert; theirs concatenate once.
        groups = inputs[tokens].split(counts.tolist())
        layer_weights = [(layer.weight.unbind(0), layer.bias.unbind(0)) for layer in self.layers]
        outputs = [
            self._expert_forward(group, [(weights[expert], biases[expert]) for weights, biases in layer_weights])
            for expert, group in enumerate(groups)
            if len(group)
        ]
        combined = inputs.new_zeros(inputs.shape[0], self.output_size)
        if outputs:
            scaled = torch.cat(outputs) * flat_weights[order].unsqueeze(1).to(inputs.dtype)
            combined = combined.index_add(0, tokens, scaled)
        return combined

    def _expert_forward(self, hidden: torch.Tensor, parameters: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """One expert on ``hidden`` ``[n, d]``: ``parameters`` holds its (weight, bias) in every layer."""
        last = len(parameters) - 1
        for index, (weight, bias) in enumerate(parameters):
            hidden = F.linear(hidden, weight, bias)
            if index < last or self.output_activation:
                hidden = self._activate(hidden)
        return hidden

    def _activate(self, hidden: torch.Tensor) -> torch.Tensor:
        hidden = self.activation(hidden)
        return self.dropout(hidden) if self.dropout is not None else hidden

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, input_size={self.input_size}, hidden_sizes={self.hidden_sizes}"
