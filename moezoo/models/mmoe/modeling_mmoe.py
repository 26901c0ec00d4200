"""The MMoE family's model: input embedding -> stacked task router -> task towers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ...constants import register_constant
from ...outputs import MultiTaskOutput
from ...routing import StackedTaskRouter, progressive_layered_plan
from ..modeling_utils import MultiTaskPreTrainedModel, TaskHeads
from .configuration_mmoe import CGCConfig, MMoEConfig, OMoEConfig, PLEConfig, SharedBottomConfig


class MMoEModel(MultiTaskPreTrainedModel):
    """Multi-gate Mixture-of-Experts: ``y_t = tower_t(sum_i softmax(W_t x)_i E_i(x))``.

    The same class, with other routing plans, is Shared-Bottom, OMoE, CGC and PLE.
    """

    config_class = MMoEConfig

    def __init__(self, config: MMoEConfig) -> None:
        super().__init__(config)
        levels, task_to_gate = progressive_layered_plan(
            len(self.task_specs),
            config.num_shared_experts,
            config.num_task_experts,
            config.num_levels,
            config.gate_per_task,
        )
        self.router = StackedTaskRouter(
            config.input_size,
            levels,
            config.expert_hidden_sizes,
            activation=config.expert_activation,
            dropout=config.expert_dropout,
            normalization=config.expert_normalization,
            gate_type=config.gate_type,
            gate_options=config.gate_options(),
        )
        register_constant(self, "task_to_gate", task_to_gate)
        self.gates_are_tasks = task_to_gate.tolist() == list(range(self.router.num_gates))
        self.heads = TaskHeads(
            self.task_specs,
            self.router.output_size,
            config.tower_hidden_sizes,
            activation=config.tower_activation,
            dropout=config.tower_dropout,
        )
        self.post_init()

    def forward(
        self,
        numeric_features: torch.Tensor | None = None,
        categorical_features: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
        tasks: str | Sequence[str] | None = None,
        output_router_probs: bool = False,
    ) -> MultiTaskOutput:
        r"""
        Args:
            numeric_features: ``[B, n_numeric]`` standardised numeric features (from `TabularProcessor`).
            categorical_features: ``[B, n_categorical]`` vocabulary indices.
            inputs_embeds: ``[B, input_size]`` dense inputs, instead of the two above.
            pixel_values: ``[B, C, S, S]`` images, for a model with an ``image_encoder``.
            labels: ``[B, W]`` labels of all tasks in config order, or a mapping task name -> labels;
                NaN (or -100 for multiclass) marks a missing label.
            tasks: Compute only these tasks' logits and losses.
            output_router_probs: Also return every level's gate weights ``[B, G, E]``.
        """
        task_names = self.resolve_tasks(tasks)
        hidden = self.embed_inputs(numeric_features, categorical_features, inputs_embeds, pixel_values)
        routed = self.router(hidden, output_router_probs=output_router_probs)
        mixtures = routed.mixtures
        task_inputs = mixtures if self.gates_are_tasks else mixtures.index_select(1, self.task_to_gate)
        logits = self.heads(task_inputs, task_names)
        return self.multitask_output(logits, labels, aux_loss=routed.aux_loss, router_probs=routed.router_probs)


class SharedBottomModel(MMoEModel):
    config_class = SharedBottomConfig


class OMoEModel(MMoEModel):
    config_class = OMoEConfig


class CGCModel(MMoEModel):
    config_class = CGCConfig


class PLEModel(MMoEModel):
    config_class = PLEConfig
