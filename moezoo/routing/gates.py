"""Gates: maps from a routing input to mixture weights over experts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..constants import register_constant
from .experts import batched_linear


@dataclass
class GateOutput:
    """What a gate returns.

    Attributes:
        probs: ``[B, G, E]`` mixture weights of every gate over every expert.
        aux_loss: The gate's auxiliary loss (a scalar) in training mode, for gates that have one;
            otherwise ``None``.
    """

    probs: torch.Tensor
    aux_loss: torch.Tensor | None = None


def validate_availability_mask(
    mask: torch.Tensor | None,
    num_gates: int,
    num_experts: int,
    gate_name: str = "A gate",
    allow_empty_rows: bool = False,
) -> torch.Tensor:
    """Check a ``[num_gates, num_experts]`` availability mask and return it as a bool CPU tensor;
    ``None`` makes every expert available to every gate.

    Raises:
        ValueError: if there are no gates or experts, the shape is wrong, or (unless
            ``allow_empty_rows``) a gate has no expert available.
    """
    if num_experts < 1 or num_gates < 1:
        raise ValueError(f"{gate_name} needs num_experts >= 1 and num_gates >= 1, got {num_experts}, {num_gates}.")
    if mask is None:
        return torch.ones(num_gates, num_experts, dtype=torch.bool, device="cpu")
    mask = torch.as_tensor(mask, dtype=torch.bool, device="cpu")
    if mask.shape != (num_gates, num_experts):
        raise ValueError(
            f"Availability mask must have shape [num_gates={num_gates}, num_experts={num_experts}], "
            f"got {list(mask.shape)}."
        )
    empty_rows = (~mask.any(dim=1)).nonzero().flatten().tolist()
    if empty_rows and not allow_empty_rows:
        raise ValueError(f"Availability mask rows {empty_rows} are empty: every gate needs at least one expert.")
    return mask


def check_gate_inputs(gate: nn.Module, inputs: torch.Tensor) -> None:
    """A gate reads ``[B, d]`` (every gate the same rows) or ``[B, G, d]`` (gate ``g`` reads ``inputs[:, g]``)."""
    size, num_gates = gate.input_size, gate.num_gates
    if inputs.dim() not in (2, 3) or inputs.shape[-1] != size:
        raise ValueError(
            f"{type(gate).__name__} expects [batch, {size}] or [batch, {num_gates}, {size}] inputs, "
            f"got shape {list(inputs.shape)}."
        )
    if inputs.dim() == 3 and inputs.shape[1] != num_gates:
        raise ValueError(f"Per-gate inputs must have {num_gates} gates on dim 1, got {list(inputs.shape)}.")


class LinearGate(nn.Module):
    """Base of gates whose logits are affine maps of the routing input: ``W_g x + b_g`` per gate.

    Holds the weights ``[G, E, d]`` (laid out as `BatchedLinear` weights, so that `batched_linear`
    computes all gates in one matmul) and the availability mask. A subclass turns logits into weights
    and may hold no parameters when its weights cannot depend on the input (`has_parameters`).
    """

    allow_empty_rows = False
    #: Which axes of each parameter index gates and experts (see `moezoo.models.transfer`).
    unit_axes: ClassVar[dict[str, tuple[str, ...]]] = {"weight": ("gates", "experts"), "bias": ("gates", "experts")}

    def __init__(
        self, input_size: int, num_experts: int, num_gates: int = 1, mask: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        mask = validate_availability_mask(mask, num_gates, num_experts, type(self).__name__, self.allow_empty_rows)
        self.input_size = input_size
        self.num_experts = num_experts
        self.num_gates = num_gates
        register_constant(self, "mask", mask)
        self.is_masked = not bool(mask.all())
        if self.has_parameters(mask):
            self.weight = nn.Parameter(torch.empty(num_gates, num_experts, input_size))
            self.bias = nn.Parameter(torch.empty(num_gates, num_experts))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def has_parameters(self, mask: torch.Tensor) -> bool:
        """Whether the gate's weights depend on the input under ``mask``."""
        return True

    def num_unused_parameters(self) -> int:
        """Weights and biases of masked-out (gate, expert) pairs: stored so that one matmul computes every
        gate, but they never affect the output and get no gradient."""
        if self.weight is None:
            return 0
        return int((~self.mask).sum()) * (self.input_size + 1)

    def reset_parameters(self) -> None:
        """Initialise each gate as `torch.nn.Linear` would."""
        if self.weight is not None:
            bound = 1.0 / math.sqrt(self.input_size)
            nn.init.uniform_(self.weight, -bound, bound)
            nn.init.uniform_(self.bias, -bound, bound)

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Unmasked gate logits ``[B, G, E]``."""
        check_gate_inputs(self, inputs)
        return batched_linear(inputs, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, num_experts={self.num_experts}, num_gates={self.num_gates}"


class SoftmaxGate(LinearGate):
    """``num_gates`` softmax gates over ``num_experts`` experts, computed as one matmul.

    Gate ``g`` gives ``softmax(W_g x + b_g)`` over the experts that ``mask[g]`` allows; unavailable
    experts get weight exactly 0. A gate with a single available expert is constant (weight 1) and
    holds no parameters, so Shared-Bottom needs no special case.

    Args:
        input_size: Size of the routing input.
        num_experts: Number of experts ``E``.
        num_gates: Number of gates ``G``.
        mask: Optional bool ``[G, E]`` availability mask; all experts are available by default.

    Shapes:
        - input ``[B, d]`` (every gate reads it) or ``[B, G, d]`` (gate ``g`` reads ``inputs[:, g]``);
        - output `GateOutput` with probabilities ``[B, G, E]``, rows summing to 1, and no auxiliary loss.
    """

    def has_parameters(self, mask: torch.Tensor) -> bool:
        return not bool((mask.sum(dim=1) == 1).all())

    def forward(self, inputs: torch.Tensor) -> GateOutput:
        if self.weight is None:
            return GateOutput(self.mask.to(inputs.dtype).expand(inputs.shape[0], -1, -1))
        logits = self.logits(inputs)
        if self.is_masked:
            logits = logits.masked_fill(~self.mask, float("-inf"))
        return GateOutput(torch.softmax(logits, dim=-1))


class SelfGate(LinearGate):
    """HoME's self-gates: each gate weighs the experts it owns, for a residual path beside the mixture.

    A gate owning one expert gives it ``sigmoid(w_g x + b_g)``; a gate owning several gives them
    ``softmax(W_g x + b_g)`` over those experts; a gate owning none (an empty ``mask`` row) gives zeros.

    Args and shapes: as for `SoftmaxGate`, with ``mask[g]`` the experts gate ``g`` owns; rows may be empty.
    """

    allow_empty_rows = True

    def __init__(
        self, input_size: int, num_experts: int, num_gates: int = 1, mask: torch.Tensor | None = None
    ) -> None:
        super().__init__(input_size, num_experts, num_gates, mask)
        owned = self.mask.sum(dim=1, keepdim=True)
        register_constant(self, "single_expert_rows", owned == 1)  # [G, 1]
        # Rows owning no expert are softmaxed over all experts (to stay finite), then zeroed by the mask.
        register_constant(self, "softmax_mask", self.mask | (owned == 0))

    def has_parameters(self, mask: torch.Tensor) -> bool:
        return bool(mask.any())

    def forward(self, inputs: torch.Tensor) -> GateOutput:
        if self.weight is None:
            return GateOutput(inputs.new_zeros(inputs.shape[0], self.num_gates, self.num_experts))
        logits = self.logits(inputs)
        softmax = torch.softmax(logits.masked_fill(~self.softmax_mask, float("-inf")), dim=-1)
        probs = torch.where(self.single_expert_rows, torch.sigmoid(logits), softmax)
        return GateOutput(probs * self.mask)
