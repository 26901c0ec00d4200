"""DSelect-k (Hazimeh et al., NeurIPS 2021): a smooth gate that mixes at most k experts.

Each of ``k`` selectors holds ``m = ceil(log2 n)`` binary variables ``z``; passed through a
smooth-step ``S``, they give a distribution over the ``2**m`` binary codes,

    r(z)_c = prod_{j: bit_j(c) = 1} S(z_j) * prod_{j: bit_j(c) = 0} (1 - S(z_j)),

which is one-hot on a single code once every ``|z_j| >= gamma / 2``. Code ``c`` names expert ``c``;
the gate is ``q = sum_l softmax(alpha)_l r(z^(l))``, so at most ``k`` experts carry weight once the
selectors saturate. The entropy of each ``r(z^(l))`` is penalised to push them there. When ``n`` is
not a power of two, codes ``>= n`` name no expert, and a second penalty (the mass on those codes)
keeps the selectors on real experts.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from ..constants import register_constant
from .experts import batched_linear
from .gates import GateOutput, check_gate_inputs, validate_availability_mask


def smooth_step(inputs: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """The cubic smooth-step: 0 below ``-gamma/2``, 1 above ``gamma/2``, and in between
    ``-2 t^3 / gamma^3 + 3 t / (2 gamma) + 1/2``, whose derivative vanishes at both ends.

    The cubic evaluated at the clamped input equals the piecewise definition (it is 0 and 1 at the
    two ends) and its gradient is exactly 0 outside ``(-gamma/2, gamma/2)``.
    """
    if gamma <= 0:
        raise ValueError(f"The smooth-step's gamma must be positive, got {gamma}.")
    t = inputs.clamp(-gamma / 2, gamma / 2)
    return -2.0 * t**3 / gamma**3 + 1.5 * t / gamma + 0.5


def binary_codes(num_bits: int) -> torch.Tensor:
    """``[2**num_bits, num_bits]`` float matrix whose row ``c`` holds the bits of ``c``, least significant first."""
    codes = torch.arange(2**num_bits, device="cpu").unsqueeze(1)
    return ((codes >> torch.arange(num_bits, device="cpu")) & 1).float()


def selector_distribution(switches: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """``r(z)``: the smooth-stepped binary switches ``[..., m]`` turned into a distribution over the
    ``2**m`` codes ``[..., 2**m]`` (rows of ``codes``)."""
    switches = switches.unsqueeze(-2)  # [..., 1, m]
    per_bit = codes * switches + (1 - codes) * (1 - switches)  # [..., 2**m, m]
    return per_bit.prod(dim=-1)


class DSelectKGate(nn.Module):
    """``num_gates`` DSelect-k gates over ``num_experts`` experts.

    Args:
        input_size: Size of the routing input (unused by the static gate except for its shape checks).
        num_experts: Number of experts ``E``.
        num_gates: Number of gates ``G``.
        mask: Optional bool ``[G, E]``: gate ``g`` selects among the experts ``mask[g]`` allows, its
            codes ``0, 1, ...`` naming them in order. All experts are available by default.
        num_selectors: ``k``, the most experts a saturated gate mixes; at most the smallest number of
            experts a gate may choose from.
        gamma: Width of the smooth-step's transition, ``> 0``. Smaller is sparser sooner.
        per_example: ``False``: the static gate, whose ``z`` and ``alpha`` are parameters per gate.
            ``True``: ``z`` and ``alpha`` are linear maps of the routing input.
        entropy_weight: Weight of the selectors' entropy regulariser.
        unused_code_weight: Weight of the mass on codes that name no expert (when a gate's expert
            count is not a power of two).

    Shapes:
        - input ``[B, d]`` (every gate reads it) or ``[B, G, d]`` (gate ``g`` reads ``inputs[:, g]``);
        - output probabilities ``[B, G, E]``; in training mode also ``aux_loss``, a scalar: the two
          regularisers summed over gates and selectors, averaged over examples.
    """

    #: Which axes of each parameter index gates (see `moezoo.models.transfer`).
    unit_axes: ClassVar[dict[str, tuple[str, ...]]] = {
        name: ("gates",)
        for name in ("switch_weight", "switch_bias", "selector_weight", "selector_bias", "switch_logits", "selector_logits")
    }

    def __init__(
        self,
        input_size: int,
        num_experts: int,
        num_gates: int = 1,
        mask: torch.Tensor | None = None,
        num_selectors: int = 2,
        gamma: float = 1.0,
        per_example: bool = False,
        entropy_weight: float = 1e-6,
        unused_code_weight: float = 1.0,
    ) -> None:
        super().__init__()
        mask = validate_availability_mask(mask, num_gates, num_experts, "DSelectKGate")
        choices = mask.sum(dim=1)
        if num_selectors < 1:
            raise ValueError(f"DSelect-k needs at least one selector, got num_selectors (k) = {num_selectors}.")
        if num_selectors > int(choices.min()):
            raise ValueError(
                f"num_selectors (k) = {num_selectors} exceeds the number of experts a gate can choose from "
                f"({int(choices.min())}); k must be at most n."
            )
        if not gamma > 0:
            raise ValueError(f"DSelect-k's smooth-step gamma must be positive, got {gamma}.")
        if entropy_weight < 0 or unused_code_weight < 0:
            raise ValueError(
                f"Regulariser weights cannot be negative, got entropy_weight={entropy_weight}, "
                f"unused_code_weight={unused_code_weight}."
            )

        self.input_size = input_size
        self.num_experts = num_experts
        self.num_gates = num_gates
        self.num_selectors = num_selectors
        self.gamma = gamma
        self.per_example = per_example
        self.entropy_weight = entropy_weight
        self.unused_code_weight = unused_code_weight
        # Gate g addresses its own n_g allowed experts with its own m_g = ceil(log2 n_g) bits. The
        # tensors hold the widest gate's m bits so that one computation serves every gate; a gate's
        # surplus bits are held at 0, which keeps all its mass on its own 2**m_g codes.
        gate_bits = [math.ceil(math.log2(int(count))) for count in choices]
        self.num_bits = max(gate_bits)
        num_codes = 2**self.num_bits
        bit_used = torch.arange(self.num_bits, device="cpu") < torch.tensor(gate_bits, device="cpu").unsqueeze(1)
        register_constant(self, "bit_used", bit_used.view(1, num_gates, 1, self.num_bits))
        self.has_surplus_bits = not bool(bit_used.all())

        # code_to_expert[g, c, e] = 1 when gate g's code c names expert e; codes past a gate's expert
        # count name none, and their rows are zero.
        code_to_expert = torch.zeros(num_gates, num_codes, num_experts, device="cpu")
        for gate in range(num_gates):
            experts = mask[gate].nonzero().flatten()
            code_to_expert[gate, torch.arange(len(experts), device="cpu"), experts] = 1.0
        register_constant(self, "code_to_expert", code_to_expert)
        unused_codes = code_to_expert.sum(dim=-1) == 0  # [G, 2**m]
        register_constant(self, "unused_codes", unused_codes)
        self.has_unused_codes = bool(unused_codes.any())
        register_constant(self, "codes", binary_codes(self.num_bits))

        if per_example:
            # Weights [G, out, d], laid out for `batched_linear`.
            self.switch_weight = nn.Parameter(torch.empty(num_gates, num_selectors * self.num_bits, input_size))
            self.switch_bias = nn.Parameter(torch.empty(num_gates, num_selectors * self.num_bits))
            self.selector_weight = nn.Parameter(torch.empty(num_gates, num_selectors, input_size))
            self.selector_bias = nn.Parameter(torch.empty(num_gates, num_selectors))
        else:
            self.switch_logits = nn.Parameter(torch.empty(num_gates, num_selectors, self.num_bits))
            self.selector_logits = nn.Parameter(torch.empty(num_gates, num_selectors))
        self.reset_parameters()

    def num_unused_parameters(self) -> int:
        """Switch parameters of the surplus bits of gates with fewer experts than the widest (stored so
        that one computation serves every gate, but they never affect the output)."""
        surplus_bits = int((~self.bit_used).sum()) * self.num_selectors
        return surplus_bits * (self.input_size + 1) if self.per_example else surplus_bits

    def reset_parameters(self) -> None:
        """The paper's initialisation: ``z ~ U(-gamma/100, gamma/100)``, ``alpha ~ U(-0.05, 0.05)``; for the
        per-example gate these are the maps' weights, and their biases start at 0."""
        if self.per_example:
            nn.init.uniform_(self.switch_weight, -self.gamma / 100, self.gamma / 100)
            nn.init.uniform_(self.selector_weight, -0.05, 0.05)
            nn.init.zeros_(self.switch_bias)
            nn.init.zeros_(self.selector_bias)
        else:
            nn.init.uniform_(self.switch_logits, -self.gamma / 100, self.gamma / 100)
            nn.init.uniform_(self.selector_logits, -0.05, 0.05)

    def selector_logits_and_switches(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``alpha`` ``[B or 1, G, k]`` and ``z`` ``[B or 1, G, k, m]`` (batch 1 for the static gate)."""
        check_gate_inputs(self, inputs)
        if not self.per_example:
            return self.selector_logits.unsqueeze(0), self.switch_logits.unsqueeze(0)
        alpha = batched_linear(inputs, self.selector_weight, self.selector_bias)  # [B, G, k]
        switches = batched_linear(inputs, self.switch_weight, self.switch_bias)  # [B, G, k*m]
        return alpha, switches.reshape(inputs.shape[0], self.num_gates, self.num_selectors, self.num_bits)

    def forward(self, inputs: torch.Tensor) -> GateOutput:
        alpha, switches = self.selector_logits_and_switches(inputs)
        smoothed = smooth_step(switches, self.gamma)
        if self.has_surplus_bits:
            smoothed = smoothed.where(self.bit_used, 0.0)
        selectors = selector_distribution(smoothed, self.codes)  # [B', G, k, 2**m]
        code_probs = (torch.softmax(alpha, dim=-1).unsqueeze(-1) * selectors).sum(dim=-2)  # [B', G, 2**m]
        probs = torch.einsum("bgc,gce->bge", code_probs, self.code_to_expert)
        probs = probs.expand(inputs.shape[0], -1, -1)
        aux_loss = self.regularization(selectors) if self.training else None
        return GateOutput(probs, aux_loss)

    def regularization(self, selectors: torch.Tensor) -> torch.Tensor:
        """``entropy_weight * sum_l H(r(z^(l)))`` plus ``unused_code_weight`` times the selectors' mass on
        codes that name no expert, summed over gates and averaged over examples."""
        # Clamped inside the log so that a saturated selector (exact zeros) has a finite gradient.
        log_selectors = selectors.clamp_min(torch.finfo(selectors.dtype).tiny).log()
        entropy = -(selectors * log_selectors).sum(dim=-1)  # [B', G, k]
        loss = self.entropy_weight * entropy.sum(dim=(1, 2)).mean()
        if self.has_unused_codes:
            unused_mass = (selectors * self.unused_codes.unsqueeze(1)).sum(dim=(1, 2, 3)).mean()
            loss = loss + self.unused_code_weight * unused_mass
        return loss

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, num_experts={self.num_experts}, num_gates={self.num_gates}, "
            f"num_selectors={self.num_selectors}, gamma={self.gamma}, per_example={self.per_example}"
        )
