"""M³ViT (Liang et al., NeurIPS 2022): a ViT whose MLP blocks are task-routed sparse MoE layers.

Embeddings and attention are transformers' own ViT modules (same parameter names). In the blocks of
``config.moe_layers`` the MLP is a `moezoo.routing.SparseMoE`: each token goes to ``k`` of ``E`` experts,
chosen by its example's task (a router per task, or one router reading a task embedding beside the
token), and only those experts are computed. With ``task_ids`` each example takes its own task's
pathway; without, every image takes every (selected) task's pathway, as the paper trains: the batch is
repeated once per task from the first MoE layer on, everything before it (the first MoE block's attention
included, whose input is the same for every task) computed once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, PreTrainedModel, ViTConfig, ViTModel
from transformers import initialization as init
from transformers.models.vit import ViTImageProcessorPil
from transformers.models.vit.modeling_vit import ViTAttention, ViTEmbeddings, ViTMLP

from ...constants import restore_constants
from ...locations import require_folder_or_repo_id
from ...outputs import MultiTaskOutput
from ...routing import BatchedLinear, LinearGate, SparseMoE, TopKRouting
from ...tasks import (
    check_task_ids,
    own_task_labels,
    pixels_as_rows,
    present_label_counts,
    split_labels,
    task_identity,
    weighted_task_losses,
)
from ..modeling_utils import MultiTaskPreTrainedModel, cast_floating, check_finite
from .configuration_m3vit import M3ViTConfig

#: ViT config fields an M3ViT takes over when it is upcycled from a dense ViT.
VIT_FIELDS = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps", "image_size",
    "patch_size", "num_channels", "qkv_bias",
)


def image_processor_for(config: M3ViTConfig) -> ViTImageProcessorPil:
    """The `transformers` ViT image processor that prepares images for a model of ``config``: resized to
    ``image_size``, scaled to [0, 1], then normalised with mean and standard deviation 0.5 per channel
    (values in [-1, 1]). Save it beside the model; `moezoo.processor_from_pretrained` loads it back."""
    half = [0.5] * config.num_channels
    size = {"height": config.image_size, "width": config.image_size}
    return ViTImageProcessorPil(size=size, image_mean=half, image_std=half)


class TaskEmbedding(nn.Module):
    """The task as a vector for the routers: an MLP over the one-hot task, shared by all MoE layers."""

    def __init__(self, num_tasks: int, size: int) -> None:
        super().__init__()
        self.num_tasks = num_tasks
        self.fc1 = nn.Linear(num_tasks, size)
        self.fc2 = nn.Linear(size, size)

    def forward(self, task_ids: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(task_ids, self.num_tasks).to(self.fc1.weight.dtype)
        return self.fc2(F.gelu(self.fc1(one_hot)))


class M3ViTLayer(nn.Module):
    """A ViT block (pre-norm attention and MLP, each with a residual) whose MLP is a dense `ViTMLP` or,
    when ``is_moe``, a `SparseMoE` routed by each token's task."""

    def __init__(self, config: M3ViTConfig, index: int) -> None:
        super().__init__()
        is_moe = index in config.moe_layers
        self.attention = ViTAttention(config)
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.is_moe = is_moe
        self.task_embedding_routing = config.task_conditioning == "task_embedding"
        self.num_tasks = len(config.tasks)
        if is_moe:
            self.moe = SparseMoE(
                config.hidden_size,
                config.layer_num_experts(index),
                [config.moe_intermediate_size, config.hidden_size],
                num_experts_per_tok=config.num_experts_per_tok,
                num_gates=1 if self.task_embedding_routing else self.num_tasks,
                gate_input_size=config.hidden_size + (config.task_embedding_size if self.task_embedding_routing else 0),
                activation=config.hidden_act,
                output_activation=False,
                noise_std=config.router_noise_std,
                normalize_top_k=config.norm_topk_prob,
                capacity_factor=config.expert_capacity_factor,
                balance_loss_weight=config.router_aux_loss_coef,
            )
        else:
            self.mlp = ViTMLP(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        pathway_ids: torch.Tensor | int | None = None,
        task_embeddings: torch.Tensor | None = None,
        copies: int = 1,
    ) -> tuple[torch.Tensor, TopKRouting | None]:
        """``hidden_states`` ``[B, S, D]``; ``pathway_ids``: each example's task (``[c * B]``, or one int for
        all); ``task_embeddings``: ``[c * B, e]`` for task-embedding routing; ``copies`` (``c``): repeat the
        batch this many times after the attention, which is the same for every copy (the first MoE block
        of all-task mode) -> ``[c * B, S, D]``."""
        residual = hidden_states
        hidden_states, _ = self.attention(self.layernorm_before(hidden_states), None)
        hidden_states = self.dropout(hidden_states) + residual
        if copies > 1:
            hidden_states = hidden_states.repeat(copies, 1, 1)

        residual = hidden_states
        hidden_states = self.layernorm_after(hidden_states)
        routing = None
        if self.is_moe:
            hidden_states, routing = self._mixture(hidden_states, pathway_ids, task_embeddings)
        else:
            hidden_states = self.mlp(hidden_states)
        return self.dropout(hidden_states) + residual, routing

    def _mixture(
        self, hidden_states: torch.Tensor, pathway_ids: torch.Tensor | int, task_embeddings: torch.Tensor | None
    ) -> tuple[torch.Tensor, TopKRouting]:
        batch, length, width = hidden_states.shape
        tokens = hidden_states.reshape(batch * length, width)
        token_tasks = pathway_ids.repeat_interleave(length) if isinstance(pathway_ids, torch.Tensor) else pathway_ids
        if self.task_embedding_routing:
            per_token = task_embeddings.repeat_interleave(length, dim=0)
            groups = token_tasks if isinstance(token_tasks, torch.Tensor) else None
            gate_inputs = torch.cat([tokens, per_token], dim=-1)
            output = self.moe(tokens, gate_inputs=gate_inputs, groups=groups, num_groups=self.num_tasks)
        else:
            output = self.moe(tokens, gate_ids=token_tasks)
        return output.hidden_states.view(batch, length, width), output.routing


class DensePredictionHead(nn.Module):
    """Per-pixel predictions from the patch tokens, in one of two ways (``config.dense_head``):

    - ``"bilinear"``: a linear map of each patch token to ``num_labels`` values, laid out on the patch grid
      and upsampled bilinearly to the image size (the simplest of the decoders of SETR, Zheng et al. 2021).
    - ``"pixel_shuffle"``: a linear map of each patch token to the ``num_labels`` values of each of its
      ``patch_size``² pixels, laid out in place (a sub-pixel convolution, Shi et al. 2016, of kernel 1), so
      that every pixel has its own prediction instead of one interpolated from the patch centres.
    """

    def __init__(self, hidden_size: int, num_labels: int, grid_size: int, patch_size: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.upscale = patch_size if mode == "pixel_shuffle" else 1
        self.classifier = nn.Linear(hidden_size, num_labels * self.upscale**2)
        self.grid_size = grid_size
        self.image_size = grid_size * patch_size

    def forward(self, patch_tokens: torch.Tensor) -> torch.Tensor:
        """``[B, P, D]`` patch tokens -> ``[B, num_labels, image_size, image_size]``."""
        logits = self.classifier(patch_tokens).transpose(1, 2)
        logits = logits.reshape(logits.shape[0], logits.shape[1], self.grid_size, self.grid_size)
        if self.mode == "pixel_shuffle":
            return F.pixel_shuffle(logits, self.upscale)
        return F.interpolate(logits, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)


@dataclass
class SingleTaskExport:
    """What `M3ViTModel.export_single_task` returns.

    Attributes:
        model: The single-task model (``save_pretrained`` it).
        kept_experts: Per MoE block, the indices (in the full model) of the experts kept.
        usage: Per MoE block, the tokens the task sent to each expert of the full model.
        dropped_token_fraction: Per MoE block, the fraction of the task's tokens whose top-k experts
            included a dropped one (where the export's output can differ).
    """

    model: M3ViTModel
    kept_experts: list[list[int]]
    usage: list[torch.Tensor]
    dropped_token_fraction: list[float]


class M3ViTModel(MultiTaskPreTrainedModel):
    """M³ViT with a head per task: image-level tasks read the [CLS] token through a linear layer; dense
    tasks (``config.dense_tasks``) predict per pixel (`DensePredictionHead`).

    Inputs:
        pixel_values: ``[B, num_channels, image_size, image_size]``.
        task_ids: Optional long ``[B]``: each example's task, whose pathway (routers) it takes; its labels
            count for that task only. Without it every image takes every selected task's pathway (in
            training with labels and ``config.sample_task_in_training``, one task's, drawn at random).
        tasks: The tasks to compute (default: all); without ``task_ids`` only their pathways run.
        labels: A mapping from task name to labels: ``[B]`` (or ``[B, W]``) for image-level tasks,
            ``[B, H, W]`` class indices (-100 to ignore) or values for dense tasks, ``[B, C, H, W]`` for
            a dense regression of ``C`` outputs.
        output_router_probs: Also return each MoE layer's router probabilities ``[B', S, E]`` (``B'`` is
            ``B`` times the number of pathways run in all-task mode).

    Returns `MultiTaskOutput`: logits per task (``[B, num_labels]``, or ``[B, num_labels, H, W]`` for a
    dense task), losses, and the MoE layers' summed load-balancing loss as ``aux_loss`` (training only).
    """

    config_class = M3ViTConfig
    main_input_name = "pixel_values"
    _no_split_modules = ["ViTEmbeddings", "M3ViTLayer"]
    _supports_sdpa = True
    _supports_attention_backend = True

    def __init__(self, config: M3ViTConfig) -> None:
        super().__init__(config)
        self.embeddings = ViTEmbeddings(config)
        self.task_embedding = (
            TaskEmbedding(len(config.tasks), config.task_embedding_size)
            if config.task_conditioning == "task_embedding" and config.moe_layers
            else None
        )
        self.layers = nn.ModuleList(M3ViTLayer(config, index) for index in range(config.num_hidden_layers))
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        grid = config.num_patches_per_side
        self.heads = nn.ModuleDict(
            {
                task.name: DensePredictionHead(config.hidden_size, task.num_labels, grid, config.patch_size, config.dense_head)
                if task.name in config.dense_tasks
                else nn.Linear(config.hidden_size, task.num_labels)
                for task in self.task_specs
            }
        )
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # ViT's initialisation (transformers' default: N(0, initializer_range) for linear maps and
        # patch projections, LayerNorm at identity), extended to the stacked expert and gate weights.
        restore_constants(module)
        PreTrainedModel._init_weights(self, module)
        std = self.config.initializer_range
        if isinstance(module, ViTEmbeddings):
            init.trunc_normal_(module.position_embeddings, mean=0.0, std=std)
            init.trunc_normal_(module.cls_token, mean=0.0, std=std)
        elif isinstance(module, (BatchedLinear, LinearGate)):
            init.normal_(module.weight, mean=0.0, std=std)
            init.zeros_(module.bias)
            if isinstance(module, LinearGate) and self.config.task_routers_start_equal:
                # Every task's router (a gate per task) starts as the first task's.
                init.copy_(module.weight, module.weight[:1].expand_as(module.weight).clone())

    def input_dtype(self) -> torch.dtype:
        return self.embeddings.cls_token.dtype

    def check_input_values(self, inputs: Mapping[str, torch.Tensor]) -> None:
        """Every check of `forward` on a batch (or a materialised dataset), without computing anything."""
        known = {"pixel_values", "labels", "task_ids"}
        unknown = sorted(set(inputs) - known)
        if unknown:
            raise KeyError(f"Unknown input(s) {unknown}; {type(self).__name__} reads {sorted(known)}.")
        pixel_values = self._checked_pixels(inputs.get("pixel_values"), check_values=True)
        if inputs.get("task_ids") is not None:
            check_task_ids(inputs["task_ids"], len(self.task_specs), pixel_values.shape[0])
        if inputs.get("labels") is not None:
            self._labels_for_batch(inputs["labels"], pixel_values.shape[0], check_values=True)

    def _checked_pixels(self, pixel_values: torch.Tensor | None, check_values: bool) -> torch.Tensor:
        config = self.config
        expected = [config.num_channels, config.image_size, config.image_size]
        if pixel_values is None:
            raise ValueError("M3ViT reads images: pass pixel_values.")
        if pixel_values.dim() != 4 or list(pixel_values.shape[1:]) != expected:
            raise ValueError(f"pixel_values must be [batch, {', '.join(map(str, expected))}], got {list(pixel_values.shape)}.")
        pixel_values = cast_floating("pixel_values", pixel_values, self.input_dtype())
        if check_values:
            check_finite("pixel_values", pixel_values)
        return pixel_values

    def encode(
        self,
        pixel_values: torch.Tensor,
        task_ids: torch.Tensor | None = None,
        pathways: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, list[TopKRouting]]:
        """The final hidden states (after the last LayerNorm) and each MoE layer's routing.

        Args:
            pixel_values: ``[B, C, H, W]``.
            task_ids: ``[B]``: each example takes its task's pathway -> ``[B, S, D]``.
            pathways: Without ``task_ids``, the task indices whose pathways every image takes (default:
                all) -> ``[len(pathways) * B, S, D]``, pathway by pathway.
        """
        pixel_values = self._checked_pixels(pixel_values, self._check_input_values)
        batch = pixel_values.shape[0]
        hidden_states = self.embeddings(pixel_values)
        if task_ids is not None:
            check_task_ids(task_ids, len(self.task_specs), batch, check_values=self._check_input_values)
            pathway_ids: torch.Tensor | int | None = task_ids
        else:
            pathways = list(range(len(self.task_specs))) if pathways is None else list(pathways)
            pathway_ids = pathways[0] if len(pathways) == 1 else None
        routings = []
        task_embeddings = None
        for layer in self.layers:
            copies = 1
            if layer.is_moe and pathway_ids is None:
                # All-task mode reaches the first MoE layer: one copy of the batch per pathway from there on
                # (the block's attention, the same for every pathway, runs before the copies are made).
                copies = len(pathways)
                pathway_ids = torch.tensor(pathways, device=hidden_states.device).repeat_interleave(batch)
            if layer.is_moe and self.task_embedding is not None and task_embeddings is None:
                # The pathways are fixed from the first MoE block on: every MoE block reads the same embeddings.
                ids = pathway_ids if isinstance(pathway_ids, torch.Tensor) else torch.full(
                    (hidden_states.shape[0],), pathway_ids, device=hidden_states.device
                )
                task_embeddings = self.task_embedding(ids)
            hidden_states, routing = layer(hidden_states, pathway_ids, task_embeddings, copies)
            if routing is not None:
                routings.append(routing)
        if task_ids is None and pathway_ids is None and len(pathways) > 1:
            # No MoE block: every pathway is the same computation.
            hidden_states = hidden_states.repeat(len(pathways), 1, 1)
        return self.layernorm(hidden_states), routings

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: Mapping[str, torch.Tensor] | None = None,
        task_ids: torch.Tensor | None = None,
        tasks: str | Sequence[str] | None = None,
        output_router_probs: bool = False,
        **kwargs: Any,
    ) -> MultiTaskOutput:
        if kwargs:
            raise TypeError(f"M3ViTModel.forward got unexpected argument(s) {sorted(kwargs)}.")
        names = self.resolve_tasks(tasks)
        indices = [self.task_names.index(name) for name in names]
        if task_ids is None and labels is not None and self.training and self.config.sample_task_in_training:
            task_ids = self.sampled_task_ids(indices, pixel_values)
        hidden_states, routings = self.encode(pixel_values, task_ids, None if task_ids is not None else indices)
        batch = pixel_values.shape[0]
        logits = {}
        for position, name in enumerate(names):
            # With task ids every head reads every example; otherwise each task reads its own pathway.
            own = hidden_states if task_ids is not None else hidden_states[position * batch : (position + 1) * batch]
            head = self.heads[name]
            logits[name] = head(own[:, 1:]) if isinstance(head, DensePredictionHead) else head(own[:, 0])
        aux_losses = [routing.aux_loss for routing in routings if routing.aux_loss is not None]
        aux_loss = torch.stack(aux_losses).sum() if aux_losses else None
        router_probs = None
        if output_router_probs:
            length = hidden_states.shape[1]
            router_probs = tuple(routing.probs.view(-1, length, routing.probs.shape[-1]) for routing in routings)
        return self.multitask_output(logits, labels, aux_loss, router_probs, task_ids)

    def _refine_task_dependence(self, dependence: dict[str, torch.Tensor]) -> None:
        # Task routers: each MoE block's gate holds a router per task (rows), each steering its own task's
        # pathway. Experts, attention and embeddings serve every task, and so does a task-embedding router.
        if self.config.task_conditioning != "task_routers":
            return
        for name in dependence:
            if re.fullmatch(r"layers\.\d+\.moe\.gate\.(weight|bias)", name):
                dependence[name] = torch.eye(len(self.task_names), dtype=torch.bool)

    def shared_representation_module(self) -> nn.Module:
        """What every task's pathway starts from: the block before the first MoE block (its output's hidden
        states), the embeddings when block 0 is an MoE block, the final LayerNorm of a dense ViT."""
        if not self.config.moe_layers:
            return self.layernorm
        first = self.config.moe_layers[0]
        return self.layers[first - 1] if first > 0 else self.embeddings

    @staticmethod
    def sampled_task_ids(indices: Sequence[int], pixel_values: torch.Tensor) -> torch.Tensor:
        """A task per image, drawn uniformly from ``indices`` with torch's random generator of the images'
        device (``config.sample_task_in_training``; seeded and restored with the training run)."""
        draws = torch.randint(len(indices), (pixel_values.shape[0],), device=pixel_values.device)
        return torch.tensor(indices, device=pixel_values.device)[draws]

    @property
    def dense_tasks(self) -> tuple[str, ...]:
        return tuple(self.config.dense_tasks)

    def task_losses(
        self,
        logits: dict[str, torch.Tensor],
        labels: Mapping[str, torch.Tensor],
        task_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Each task's loss with dense tasks' pixels as rows (so every kind's masked loss applies as
        is), their weighted sum, and each task's present labels; with ``task_ids`` each example counts
        for its own task only."""
        batch = next(iter(logits.values())).shape[0]
        per_task = self._labels_for_batch(labels, batch, check_values=self._check_input_values)
        if task_ids is not None:
            per_task = own_task_labels(self.task_specs, per_task, task_ids)
        dense = self.dense_tasks
        rows = {name: pixels_as_rows(value) if name in dense else value for name, value in per_task.items()}
        logit_rows = {name: pixels_as_rows(value) if name in dense else value for name, value in logits.items()}
        total, losses = weighted_task_losses(self.task_specs, logit_rows, rows, self._labels_complete and task_ids is None)
        return total, losses, present_label_counts(self.task_specs, rows)

    def _labels_for_batch(
        self, labels: Mapping[str, torch.Tensor], batch: int, check_values: bool
    ) -> dict[str, torch.Tensor]:
        """`labels_per_task`, and an error unless every task's labels have ``batch`` rows."""
        per_task = self.labels_per_task(labels, check_values=check_values)
        sizes = {name: value.shape[0] for name, value in per_task.items()}
        if any(size != batch for size in sizes.values()):
            raise ValueError(f"Labels have batch sizes {sizes}, inputs {batch}.")
        return per_task

    def labels_per_task(self, labels: Mapping[str, torch.Tensor], check_values: bool = True) -> dict[str, torch.Tensor]:
        """Labels per task, checked: ``[B, label_width]`` for image-level tasks, ``[B, label_width, H, W]``
        for dense ones (given as ``[B, H, W]`` class indices or values, or ``[B, label_width, H, W]``)."""
        if not isinstance(labels, Mapping):
            raise TypeError("M3ViT takes labels as a mapping from task name to that task's labels.")
        unknown = [name for name in labels if name not in self.task_names]
        if unknown:
            raise KeyError(f"Labels given for unknown task(s) {unknown}; the model's tasks are {self.task_names}.")
        size = self.config.image_size
        per_task = {}
        for name, value in labels.items():
            task = self.task_specs[self.task_names.index(name)]
            if name not in self.dense_tasks:
                per_task.update(split_labels([task], {name: value}, check_values=check_values))
                continue
            width = task.label_width
            shape = list(value.shape)
            if len(shape) < 3 or not (shape[1:] == [width, size, size] or (width == 1 and shape[1:] == [size, size])):
                expected = f"[batch, {size}, {size}]" if width == 1 else f"[batch, {width}, {size}, {size}]"
                raise ValueError(f"Labels for dense task {name!r} must be {expected}, got {shape}.")
            value = value.reshape(shape[0], width, size, size)
            # Checked (and made float) as rows, one per pixel, by the same rules as image-level labels.
            checked = split_labels([task], {name: pixels_as_rows(value)}, check_values=check_values)[name]
            per_task[name] = checked.view(shape[0], size, size, width).permute(0, 3, 1, 2)
        return per_task

    @property
    def moe_blocks(self) -> list[M3ViTLayer]:
        """The MoE blocks, in order."""
        return [layer for layer in self.layers if layer.is_moe]

    @torch.no_grad()
    def expert_usage(self, pixel_batches: Iterable[torch.Tensor], task: str) -> list[torch.Tensor]:
        """How many tokens task ``task``'s pathway sends to each expert, per MoE block: one ``[E]`` count
        tensor per block, over the images of ``pixel_batches`` (each ``[B, C, H, W]``)."""
        index = self.task_names.index(self.resolve_tasks(task)[0])
        counts = [torch.zeros(block.moe.experts.num_experts, dtype=torch.long) for block in self.moe_blocks]
        for pixels in pixel_batches:
            _, routings = self.encode(pixels, pathways=[index])
            for layer_counts, routing in zip(counts, routings):
                chosen = routing.expert_indices if routing.kept is None else routing.expert_indices[routing.kept]
                layer_counts += torch.bincount(chosen.flatten().cpu(), minlength=len(layer_counts))
        return counts

    @torch.no_grad()
    def export_single_task(
        self, task: str, pixel_batches: Sequence[torch.Tensor], min_tokens: int = 1
    ) -> SingleTaskExport:
        """A model for ``task`` alone that keeps, in each MoE block, only the experts its pathway sends
        at least ``min_tokens`` tokens of ``pixel_batches`` to: a smaller checkpoint, loadable with
        ``from_pretrained``, that computes what this model computes for the task on every token whose
        top-k experts were all kept (exactly so up to rounding, since the kept weights are renormalised).

        A task-embedding router becomes a plain router for the one task: the task embedding's
        contribution to the router's logits is a constant, folded into its bias.

        Returns:
            A `SingleTaskExport`: the model, the experts kept per block, the usage counts, and per block
            the fraction of the task's tokens that chose a dropped expert.
        """
        if not self.config.norm_topk_prob:
            raise ValueError(
                "A single-task export renormalises each token's weights over the kept experts; with "
                "norm_topk_prob=False its outputs would differ on every token."
            )
        name = self.resolve_tasks(task)[0]
        index = self.task_names.index(name)
        usage = self.expert_usage(pixel_batches, name)
        kept = [(counts >= min_tokens).nonzero().flatten() for counts in usage]
        k = self.config.num_experts_per_tok
        too_few = [position for position, experts in enumerate(kept) if len(experts) < k]
        if too_few:
            raise ValueError(
                f"MoE block(s) {too_few} would keep fewer than num_experts_per_tok={k} experts at min_tokens={min_tokens}."
            )
        config = self.config.to_dict()
        for derived in ("model_type", "transformers_version", "architectures", "input_size"):
            config.pop(derived, None)
        config.update(
            tasks=[self.config.tasks[index]], dense_tasks=[name] if name in self.config.dense_tasks else [],
            task_conditioning="task_routers", num_experts_per_layer=[len(experts) for experts in kept],
        )
        export = type(self)(M3ViTConfig(**config))
        state = {
            key: value for key, value in self.state_dict().items()
            if not key.startswith(("task_embedding.", "heads.")) and ".moe." not in key
        }
        state.update({f"heads.{name}.{key}": value for key, value in self.heads[name].state_dict().items()})
        for layer_index, block, experts in zip(self.config.moe_layers, self.moe_blocks, kept):
            prefix = f"layers.{layer_index}.moe."
            gate, row = block.moe.gate, 0 if self.task_embedding is not None else index
            weight, bias = gate.weight[row], gate.bias[row]
            if self.task_embedding is not None:
                width = self.config.hidden_size
                embedding = self.task_embedding(torch.tensor([index], device=weight.device))[0]
                bias = bias + weight[:, width:] @ embedding
                weight = weight[:, :width]
            state[prefix + "gate.weight"] = weight[experts].unsqueeze(0)
            state[prefix + "gate.bias"] = bias[experts].unsqueeze(0)
            for number, linear in enumerate(block.moe.experts.layers):
                state[f"{prefix}experts.layers.{number}.weight"] = linear.weight[experts]
                state[f"{prefix}experts.layers.{number}.bias"] = linear.bias[experts]
        export.load_state_dict(state, strict=True)
        dropped = self._dropped_token_fraction(pixel_batches, index, kept)
        return SingleTaskExport(export.eval(), [experts.tolist() for experts in kept], usage, dropped)

    @torch.no_grad()
    def _dropped_token_fraction(
        self, pixel_batches: Sequence[torch.Tensor], index: int, kept: Sequence[torch.Tensor]
    ) -> list[float]:
        """Per MoE block, the fraction of task ``index``'s tokens with a chosen expert outside ``kept``."""
        dropped = [0] * len(kept)
        total = 0
        for pixels in pixel_batches:
            _, routings = self.encode(pixels, pathways=[index])
            total += routings[0].expert_indices.shape[0] if routings else 0
            for position, routing in enumerate(routings):
                is_kept = torch.isin(routing.expert_indices, kept[position].to(routing.expert_indices.device))
                dropped[position] += int((~is_kept).any(dim=1).sum())
        return [count / total if total else 0.0 for count in dropped]

    @classmethod
    def from_dense(
        cls, vit: str | os.PathLike | ViTModel | M3ViTModel, **config_overrides: Any
    ) -> M3ViTModel:
        """Upcycle a dense ViT: every expert of an MoE block starts as that block's dense MLP, and everything
        else (embeddings, attention, LayerNorms, dense MLPs) is copied; routers start fresh. With renormalised
        top-k weights (``norm_topk_prob=True``, the default) the new model computes exactly the dense ViT's
        hidden states until its experts diverge.

        Args:
            vit: A `transformers.ViTModel`, or a dense moezoo ViT (an `M3ViTModel` without MoE layers, such
                as a trained multi-task baseline, whose heads are kept for the tasks both models have), or
                the folder / Hub id of either.
            config_overrides: `M3ViTConfig` fields (tasks, MoE settings); the ViT's own fields
                (``hidden_size``, ``patch_size``, ...) come from its config.
        """
        if isinstance(vit, (ViTModel, M3ViTModel)):
            dense = vit
        else:
            require_folder_or_repo_id(vit, "dense ViT")
            if AutoConfig.from_pretrained(vit).model_type == M3ViTConfig.model_type:
                dense = cls.from_pretrained(vit)
            else:
                dense = ViTModel.from_pretrained(vit, add_pooling_layer=False)
        if isinstance(dense, M3ViTModel) and dense.config.moe_layers:
            raise ValueError(
                f"from_dense upcycles a dense ViT; this M3ViT already has MoE layers {dense.config.moe_layers}."
            )
        taken = {name: getattr(dense.config, name) for name in VIT_FIELDS}
        clashes = sorted(name for name in taken if name in config_overrides and config_overrides[name] != taken[name])
        if clashes:
            raise ValueError(f"{clashes} come from the dense ViT's config when upcycling; do not override them.")
        model = cls(M3ViTConfig(**{**config_overrides, **taken}))
        model.load_dense_weights(dense)
        return model

    @torch.no_grad()
    def load_dense_weights(self, dense: ViTModel | M3ViTModel) -> None:
        """Copy a dense ViT's weights into this model (see `from_dense`): a transformers `ViTModel`, or an
        `M3ViTModel` without MoE layers, whose heads are copied for the tasks both models have (same
        name, kind and size, and both dense or both image-level)."""
        if not isinstance(dense.config, (ViTConfig, M3ViTConfig)):
            raise TypeError(f"from_dense upcycles a ViT, got a {type(dense).__name__}.")
        if isinstance(dense, M3ViTModel):
            for task in self.task_specs:
                shared = task_identity(task) in {task_identity(other) for other in dense.task_specs}
                dense_here, dense_there = task.name in self.dense_tasks, task.name in dense.dense_tasks
                same_head = dense_here == dense_there and (not dense_here or self.config.dense_head == dense.config.dense_head)
                if shared and same_head:
                    self.heads[task.name].load_state_dict(dense.heads[task.name].state_dict())
        self.embeddings.load_state_dict(dense.embeddings.state_dict(), strict=False)
        self.layernorm.load_state_dict(dense.layernorm.state_dict())
        for layer, dense_layer in zip(self.layers, dense.layers, strict=True):
            for name in ("attention", "layernorm_before", "layernorm_after"):
                getattr(layer, name).load_state_dict(getattr(dense_layer, name).state_dict())
            if not layer.is_moe:
                layer.mlp.load_state_dict(dense_layer.mlp.state_dict())
                continue
            if self.config.moe_intermediate_size != dense.config.intermediate_size:
                raise ValueError(
                    f"Experts upcycled from the dense MLP need moe_intermediate_size={dense.config.intermediate_size}, "
                    f"got {self.config.moe_intermediate_size}."
                )
            first, second = layer.moe.experts.layers
            first.weight.copy_(dense_layer.mlp.fc1.weight.expand_as(first.weight))
            first.bias.copy_(dense_layer.mlp.fc1.bias.expand_as(first.bias))
            second.weight.copy_(dense_layer.mlp.fc2.weight.expand_as(second.weight))
            second.bias.copy_(dense_layer.mlp.fc2.bias.expand_as(second.bias))
