"""Configurations of the MMoE family: Shared-Bottom, OMoE, MMoE, CGC and PLE.

They are one architecture (`moezoo.routing.progressive_layered_plan`) with different defaults; each
has its own ``model_type`` so that a checkpoint names what it is.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, ClassVar

from huggingface_hub.dataclasses import strict

from ...routing import EXPERT_NORMALIZATIONS, progressive_layered_plan
from ..modeling_utils import MultiTaskConfig


@strict
class MMoEConfig(MultiTaskConfig):
    """Multi-gate Mixture-of-Experts (Ma et al., KDD 2018) and its family.

    Args:
        num_shared_experts: Experts every gate may mix (per level).
        num_task_experts: Experts owned by each task (per level); CGC / PLE use them.
        num_levels: Stacked extraction levels (PLE: > 1).
        gate_per_task: One gate per task; ``False`` gives OMoE's single gate.
        expert_hidden_sizes: Layer sizes of every expert.
        expert_activation: Activation of the experts (any `transformers.activations.ACT2FN` name).
        expert_dropout: Dropout in the experts.
        expert_normalization: ``None`` or ``"batch_norm"`` (see `moezoo.routing.ExpertBank`).

    Other arguments: see `moezoo.models.modeling_utils.MultiTaskConfig`.
    """

    model_type = "mmoe"
    #: The gate every routing level uses (a name in `moezoo.routing.GATE_TYPES`); see `gate_options`.
    gate_type: ClassVar[str] = "softmax"

    num_shared_experts: int = 8
    num_task_experts: int = 0
    num_levels: int = 1
    gate_per_task: bool = True
    expert_hidden_sizes: list[int] = field(default_factory=lambda: [16])
    expert_activation: str = "relu"
    expert_dropout: float = 0.0
    expert_normalization: str | None = None

    def gate_options(self) -> dict[str, Any]:
        """Keyword arguments of the gate beyond its shape (none for the softmax gate)."""
        return {}

    def validate_routing(self) -> None:
        """Part of `@strict` validation: the routing plan can be built and the experts are sane."""
        progressive_layered_plan(
            len(self.tasks), self.num_shared_experts, self.num_task_experts, self.num_levels, self.gate_per_task
        )
        if not self.expert_hidden_sizes or any(size < 1 for size in self.expert_hidden_sizes):
            raise ValueError(f"expert_hidden_sizes must be a non-empty list of positive sizes, got {self.expert_hidden_sizes}.")
        if self.expert_normalization is not None and self.expert_normalization not in EXPERT_NORMALIZATIONS:
            raise ValueError(
                f"Unknown expert_normalization {self.expert_normalization!r}; choose None or one of {EXPERT_NORMALIZATIONS}."
            )
        if not 0.0 <= self.expert_dropout < 1.0:
            raise ValueError(f"expert_dropout must be in [0, 1), got {self.expert_dropout}.")


@strict
class SharedBottomConfig(MMoEConfig):
    """Shared-Bottom: one shared network under the task towers (MMoE with a single expert)."""

    model_type = "shared_bottom"

    num_shared_experts: int = 1
    gate_per_task: bool = False
    expert_hidden_sizes: list[int] = field(default_factory=lambda: [128])


@strict
class OMoEConfig(MMoEConfig):
    """One-gate Mixture-of-Experts: a single gate whose mixture every task reads."""

    model_type = "omoe"

    gate_per_task: bool = False


@strict
class CGCConfig(MMoEConfig):
    """Customized Gate Control (Tang et al., RecSys 2020): shared experts plus experts per task;
    each task's gate mixes the shared experts and its own."""

    model_type = "cgc"

    num_shared_experts: int = 4
    num_task_experts: int = 2


@strict
class PLEConfig(CGCConfig):
    """Progressive Layered Extraction (Tang et al., RecSys 2020): CGC levels stacked, each level but
    the last with a shared gate over all its experts."""

    model_type = "ple"

    num_levels: int = 2
