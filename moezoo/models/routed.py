"""The model body every tabular/image MoE architecture shares: input embedding -> stacked task router
-> task towers. An architecture is a config that says how to route (`RoutedMultiTaskConfig.routing_plan`)."""

from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Any, ClassVar

import torch
from torch import nn
from huggingface_hub.dataclasses import strict

from ..constants import register_constant
from ..outputs import MultiTaskOutput
from ..routing import EXPERT_NORMALIZATIONS, RoutingLevel, StackedTaskRouter, plan_task_dependence
from ..tasks import task_identity
from .modeling_utils import MultiTaskConfig, MultiTaskPreTrainedModel, TaskHeads


@strict
class RoutedMultiTaskConfig(MultiTaskConfig):
    """Configuration of a model built on `moezoo.routing.StackedTaskRouter`: its experts and gates.

    Args:
        expert_hidden_sizes: Layer sizes of every expert.
        expert_activation: Activation of the experts (any `transformers.activations.ACT2FN` name).
        expert_dropout: Dropout in the experts.
        expert_normalization: ``None`` or ``"batch_norm"`` (see `moezoo.routing.ExpertBank`).

    Other arguments: see `moezoo.models.modeling_utils.MultiTaskConfig`. A subclass defines
    `routing_plan` and may set `gate_type`, `gate_options` and `router_options`.
    """

    model_type = "moezoo_routed"
    #: The gate every routing level uses (a name in `moezoo.routing.GATE_TYPES`); see `gate_options`.
    gate_type: ClassVar[str] = "softmax"

    expert_hidden_sizes: list[int] = field(default_factory=lambda: [16])
    expert_activation: str = "relu"
    expert_dropout: float | int = 0.0
    expert_normalization: str | None = None

    def routing_plan(self) -> tuple[list[RoutingLevel], torch.Tensor]:
        """The routing levels and ``task_to_gate`` (which last-level gate each task reads)."""
        raise NotImplementedError(f"{type(self).__name__} must define routing_plan().")

    def routing_unit_labels(self) -> list[tuple[list[tuple], list[tuple]]]:
        """Per routing level, a label for each gate and each expert that says whom it serves, such as
        ``("shared", 0)`` or ``("task", "ctr", 0)``. Labels identify the same unit across configs with
        other tasks, so that `moezoo.models.transfer` moves a checkpoint into a model with other tasks;
        a unit that belongs to a task includes the task's `task_key`."""
        raise NotImplementedError(f"{type(self).__name__} does not label its routing units.")

    def task_key(self, task_name: str) -> tuple:
        """What identifies task ``task_name`` across configs (`moezoo.tasks.task_identity`)."""
        return task_identity(next(task for task in self.task_specs if task.name == task_name))

    def gate_options(self) -> dict[str, Any]:
        """Keyword arguments of the gate beyond its shape (none for the softmax gate)."""
        return {}

    def router_options(self) -> dict[str, Any]:
        """Further keyword arguments of `StackedTaskRouter` (such as ``feature_gate_rank``)."""
        return {}

    def validate_experts(self) -> None:
        """Part of `@strict` validation: the experts are sane."""
        if not self.expert_hidden_sizes or any(size < 1 for size in self.expert_hidden_sizes):
            raise ValueError(f"expert_hidden_sizes must be a non-empty list of positive sizes, got {self.expert_hidden_sizes}.")
        if self.expert_normalization is not None and self.expert_normalization not in EXPERT_NORMALIZATIONS:
            raise ValueError(
                f"Unknown expert_normalization {self.expert_normalization!r}; choose None or one of {EXPERT_NORMALIZATIONS}."
            )
        if not 0.0 <= self.expert_dropout < 1.0:
            raise ValueError(f"expert_dropout must be in [0, 1), got {self.expert_dropout}.")


class RoutedMultiTaskModel(MultiTaskPreTrainedModel):
    """Input embedding -> the config's routing plan on a `StackedTaskRouter` -> task towers:
    ``y_t = tower_t(mixture of the gate task t reads)``."""

    config_class = RoutedMultiTaskConfig

    def __init__(self, config: RoutedMultiTaskConfig) -> None:
        super().__init__(config)
        levels, task_to_gate = config.routing_plan()
        self.router = StackedTaskRouter(
            config.input_size,
            levels,
            config.expert_hidden_sizes,
            activation=config.expert_activation,
            dropout=config.expert_dropout,
            normalization=config.expert_normalization,
            gate_type=config.gate_type,
            gate_options=config.gate_options(),
            **config.router_options(),
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

    def _refine_task_dependence(self, dependence: dict[str, torch.Tensor]) -> None:
        # The routing plan says which tasks each gate and expert reaches (`plan_task_dependence`); stacked
        # towers hold a row per task; an output layer serves its task.
        levels, task_to_gate = self.config.routing_plan()
        by_level = plan_task_dependence(levels, task_to_gate)
        num_tasks = len(self.task_names)
        for name in dependence:
            parts = name.split(".")
            if parts[:2] == ["router", "levels"]:
                if parts[3] not in ("experts", "feature_gate", "gate", "self_gate"):
                    raise ValueError(f"No task dependence is known for {name}: a routing level part this model does not describe.")
                gate_tasks, expert_tasks = by_level[int(parts[2])]
                dependence[name] = (expert_tasks if parts[3] in ("experts", "feature_gate") else gate_tasks).T.clone()
            elif parts[:2] == ["heads", "towers"]:
                dependence[name] = torch.eye(num_tasks, dtype=torch.bool)
            elif parts[:2] == ["heads", "outputs"]:
                dependence[name] = torch.tensor([task == parts[2] for task in self.task_names])[:, None]

    def shared_representation_module(self) -> nn.Module:
        """The last routing level's experts: every gate mixes their outputs ``[B, E, h]``."""
        return self.router.levels[-1].experts

    def input_dtype(self) -> torch.dtype:
        """The dtype of the first experts' weights, which read the embedded inputs."""
        return self.router.levels[0].experts.layers[0].weight.dtype

    def forward(
        self,
        numeric_features: torch.Tensor | None = None,
        categorical_features: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
        tasks: str | Sequence[str] | None = None,
        output_router_probs: bool = False,
        task_ids: torch.Tensor | None = None,
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
            task_ids: Long ``[B]`` for mixed-task data, each example's task (its index in
                ``config.tasks``): its labels count for that task only.
        """
        task_names = self.resolve_tasks(tasks)
        hidden = self.embed_inputs(numeric_features, categorical_features, inputs_embeds, pixel_values)
        routed = self.router(hidden, output_router_probs=output_router_probs)
        mixtures = routed.mixtures
        task_inputs = mixtures if self.gates_are_tasks else mixtures.index_select(1, self.task_to_gate)
        logits = self.heads(task_inputs, task_names)
        return self.multitask_output(
            logits, labels, aux_loss=routed.aux_loss, router_probs=routed.router_probs, task_ids=task_ids
        )
