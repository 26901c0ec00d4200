"""Configurations of MMoE with DSelect-k gates (Hazimeh et al., NeurIPS 2021), static and per-example."""

from typing import Any, ClassVar

from huggingface_hub.dataclasses import strict

from ...routing import DSelectKGate
from ..mmoe.configuration_mmoe import MMoEConfig


@strict
class DSelectKConfig(MMoEConfig):
    """MMoE whose task gates are DSelect-k gates: each task mixes at most ``num_selectors`` experts.

    Args:
        num_selectors: ``k``, the most experts a task's gate mixes once it has converged; at most the
            number of experts a gate may choose from. (Not named ``top_k``: transformers reserves
            generation parameter names.)
        smooth_step_gamma: Width of the smooth-step's transition (``gamma > 0``).
        per_example_gate: ``True``: the gate is a function of the input (the paper's per-example
            gate); ``False``: one fixed selection per task (the static gate).
        gate_entropy_weight: Weight of the selectors' entropy regulariser, which drives them to a
            sparse selection.
        gate_unused_code_weight: Weight of the penalty on binary codes that name no expert (when the
            expert count is not a power of two).

    Other arguments: see `MMoEConfig`. The regularisers form the model's ``aux_loss`` in training mode.
    """

    model_type = "dselect_k"
    gate_type: ClassVar[str] = "dselect_k"

    num_selectors: int = 2
    smooth_step_gamma: float | int = 1.0
    per_example_gate: bool = True
    gate_entropy_weight: float | int = 1e-6
    gate_unused_code_weight: float | int = 1.0

    def gate_options(self) -> dict[str, Any]:
        return {
            "num_selectors": self.num_selectors,
            "gamma": self.smooth_step_gamma,
            "per_example": self.per_example_gate,
            "entropy_weight": self.gate_entropy_weight,
            "unused_code_weight": self.gate_unused_code_weight,
        }

    def validate_gate(self) -> None:
        """Part of `@strict` validation: every level's gate can be built (k <= n, gamma > 0, ...)."""
        levels, _ = self.routing_plan()
        for level in levels:
            num_gates, num_experts = level.mask.shape
            # The gate's own checks, on a throwaway gate (input size 1), are the single source of truth.
            DSelectKGate(1, num_experts, num_gates, level.mask, **self.gate_options())


@strict
class DSelectKStaticConfig(DSelectKConfig):
    """MMoE with static DSelect-k gates: each task selects a fixed set of at most ``num_selectors`` experts."""

    model_type = "dselect_k_static"

    per_example_gate: bool = False
