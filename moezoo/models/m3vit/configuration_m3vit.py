"""Configuration of M³ViT (Liang et al., NeurIPS 2022): a ViT whose MLP blocks are task-routed sparse
Mixture-of-Experts layers."""

import re
from dataclasses import field

from huggingface_hub.dataclasses import strict

from ...routing import BALANCE_LOSS_WEIGHT
from ...suggestions import closest_names
from ...tasks import task_identity
from ..modeling_utils import MultiTaskConfig

TASK_CONDITIONINGS = ("task_routers", "task_embedding")
DENSE_TASK_KINDS = ("multiclass", "regression")
DENSE_HEADS = ("bilinear", "pixel_shuffle")
DENSE_HEAD_WORDS = {
    "bilinear": "a value per patch, upsampled bilinearly",
    "pixel_shuffle": "each patch token predicts its own pixels",
}


@strict
class M3ViTConfig(MultiTaskConfig):
    """M³ViT: ViT blocks (transformers' ViT embeddings and attention, the same field names as
    `transformers.ViTConfig`) in which the MLP of the blocks in ``moe_layers`` is a sparse MoE layer:
    ``num_experts`` MLP experts, ``num_experts_per_tok`` of them per token, chosen per task.

    Args:
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, hidden_act,
        hidden_dropout_prob, attention_probs_dropout_prob, initializer_range, layer_norm_eps,
        image_size, patch_size, num_channels, qkv_bias: As in `transformers.ViTConfig`.
        moe_layers: Indices of the blocks whose MLP is an MoE layer; ``None`` for every other block
            (1, 3, 5, ...), as in the paper.
        num_experts: Experts per MoE layer ``E``.
        num_experts_per_layer: Experts of each MoE layer, in ``moe_layers`` order, where they differ (a
            single-task export keeps only the experts its task uses); ``None`` for ``num_experts`` in every one.
        num_experts_per_tok: Experts per token ``k``.
        moe_intermediate_size: Hidden size of each expert; ``None`` for ``intermediate_size`` (the dense
            MLP's, which upcycling from a dense ViT needs).
        norm_topk_prob: Renormalise each token's ``k`` expert weights to sum to 1.
        router_noise_std: Standard deviation of the router's training noise; ``None`` for ``1/E``, 0 for none.
        router_aux_loss_coef: Weight of each MoE layer's load-balancing loss, cv²(importance) + cv²(load).
        expert_capacity_factor: ``None`` (no token dropping) or the capacity factor of each expert.
        task_conditioning: ``"task_routers"``: one router per task in every MoE layer.
            ``"task_embedding"``: one router per layer reading each token beside a task embedding (an
            MLP over the one-hot task, shared by all MoE layers).
        task_embedding_size: Size of that task embedding.
        task_routers_start_equal: With ``"task_routers"``, every task's router in a layer starts as the same
            random map (the first task's), so that at initialisation every task sends a token to the same
            experts and the tasks share each MoE layer until their gradients part the routers. Not in the
            paper, whose routers start independently.
        dense_tasks: Tasks predicted per pixel (segmentation logits for a multiclass task, a map for a
            regression task) from the patch tokens; the other tasks are image-level and read the [CLS] token.
        sample_task_in_training: In training, an image given labels and no ``task_ids`` takes the pathway of
            one task drawn uniformly at random (its labels count for that task only) instead of every
            task's: a step costs one pathway per image instead of one per task, and each task's labels
            are seen as often per step as in the paper's all-task training divided by the number of tasks.
            Evaluation and inference still run every task's pathway. Not in the paper, whose training
            runs every task on every image.
        dense_head: How the dense tasks' heads reach the pixels: ``"bilinear"`` (a value per patch token,
            upsampled bilinearly) or ``"pixel_shuffle"`` (each patch token predicts its own pixels); see
            `moezoo.models.m3vit.modeling_m3vit.DensePredictionHead`.

    Tasks, task heads: see `moezoo.models.modeling_utils.MultiTaskConfig` (``tower_hidden_sizes``
    defaults to ``[]``: each head is one linear layer, as ViT's classifier).
    """

    model_type = "m3vit"

    hidden_size: int = 128
    num_hidden_layers: int = 6
    num_attention_heads: int = 4
    intermediate_size: int = 512
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    initializer_range: float | int = 0.02
    layer_norm_eps: float | int = 1e-12
    image_size: int = 36
    patch_size: int = 4
    num_channels: int = 1
    qkv_bias: bool = True
    moe_layers: list[int] | None = None
    num_experts: int = 16
    num_experts_per_layer: list[int] | None = None
    num_experts_per_tok: int = 4
    moe_intermediate_size: int | None = None
    norm_topk_prob: bool = True
    router_noise_std: float | int | None = None
    router_aux_loss_coef: float | int = BALANCE_LOSS_WEIGHT
    expert_capacity_factor: float | int | None = None
    task_conditioning: str = "task_routers"
    task_embedding_size: int = 64
    task_routers_start_equal: bool = False
    dense_tasks: list[str] = field(default_factory=list)
    dense_head: str = "bilinear"
    sample_task_in_training: bool = False
    tower_hidden_sizes: list[int] = field(default_factory=list)

    def __post_init__(self, **kwargs) -> None:
        # In block order, which `num_experts_per_layer` and the routing outputs follow.
        self.moe_layers = sorted(self.moe_layers) if self.moe_layers is not None else list(range(1, self.num_hidden_layers, 2))
        if self.moe_intermediate_size is None:
            self.moe_intermediate_size = self.intermediate_size
        super().__post_init__(**kwargs)

    def validate_vision(self) -> None:
        """Part of `@strict` validation: an image the patches tile, heads that divide the width."""
        if self.features is not None or self.image_encoder is not None:
            raise ValueError("M3ViT reads pixel_values through its own patch embeddings: leave features and image_encoder unset.")
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "image_size",
                     "patch_size", "num_channels", "task_embedding_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not a multiple of num_attention_heads={self.num_attention_heads}."
            )
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} is not a multiple of patch_size={self.patch_size}.")

    def validate_moe(self) -> None:
        """Part of `@strict` validation: MoE layers that exist, k <= E, a known task conditioning."""
        bad = [index for index in self.moe_layers if not 0 <= index < self.num_hidden_layers]
        if bad or len(set(self.moe_layers)) != len(self.moe_layers):
            raise ValueError(
                f"moe_layers must be distinct block indices in [0, {self.num_hidden_layers}), got {self.moe_layers}."
            )
        if not 1 <= self.num_experts_per_tok <= self.num_experts:
            raise ValueError(
                f"num_experts_per_tok must be between 1 and num_experts={self.num_experts}, got {self.num_experts_per_tok}."
            )
        if self.num_experts_per_layer is not None:
            if len(self.num_experts_per_layer) != len(self.moe_layers):
                raise ValueError(
                    f"num_experts_per_layer needs one count per MoE layer ({len(self.moe_layers)}), got "
                    f"{self.num_experts_per_layer}."
                )
            if min(self.num_experts_per_layer, default=self.num_experts_per_tok) < self.num_experts_per_tok:
                raise ValueError(
                    f"Every MoE layer needs at least num_experts_per_tok={self.num_experts_per_tok} experts, got "
                    f"num_experts_per_layer={self.num_experts_per_layer}."
                )
        if self.moe_intermediate_size < 1:
            raise ValueError(f"moe_intermediate_size must be positive, got {self.moe_intermediate_size}.")
        if self.task_conditioning not in TASK_CONDITIONINGS:
            raise ValueError(
                f"Unknown task_conditioning {self.task_conditioning!r}{closest_names(self.task_conditioning, TASK_CONDITIONINGS)}; "
                f"choose one of {TASK_CONDITIONINGS}."
            )
        if self.task_routers_start_equal and self.task_conditioning != "task_routers":
            raise ValueError(
                "task_routers_start_equal needs task_conditioning='task_routers' (one router per task); "
                f"{self.task_conditioning!r} has a single router."
            )

    def validate_dense_tasks(self) -> None:
        """Part of `@strict` validation: dense tasks are tasks of the model, multiclass or regression."""
        kinds = {task["name"]: task["kind"] for task in self.tasks}
        for name in self.dense_tasks:
            if name not in kinds:
                raise ValueError(f"Dense task {name!r} is not one of the model's tasks {list(kinds)}.")
            if kinds[name] not in DENSE_TASK_KINDS:
                raise ValueError(f"Dense task {name!r} is {kinds[name]}; dense tasks are {DENSE_TASK_KINDS}.")
        if self.dense_head not in DENSE_HEADS:
            raise ValueError(
                f"Unknown dense_head {self.dense_head!r}{closest_names(self.dense_head, DENSE_HEADS)}; choose one of {DENSE_HEADS}."
            )

    def layer_num_experts(self, layer: int) -> int:
        """The number of experts of block ``layer`` (an MoE block)."""
        if self.num_experts_per_layer is None:
            return self.num_experts
        return self.num_experts_per_layer[self.moe_layers.index(layer)]

    def unit_labels(self, module_name: str, kind: str) -> list[tuple]:
        """What each row of an MoE block's routing tensors serves, for `moezoo.models.transfer` (which moves
        a checkpoint into a model for other tasks): ``kind="experts"``, the block's experts (shared by all
        tasks); ``kind="gates"``, one router per task (by task identity), or the one router of task-embedding
        conditioning."""
        block = re.match(r"layers\.(\d+)\.moe\.", module_name)
        if block is None:
            raise ValueError(f"{module_name} is not part of an MoE block.")
        if kind == "experts":
            return [("expert", index) for index in range(self.layer_num_experts(int(block.group(1))))]
        if self.task_conditioning == "task_routers":
            return [("task", task_identity(task)) for task in self.task_specs]
        return [("router",)]

    def describe_blocks(self) -> list[str]:
        """The blocks in words, for model cards."""
        experts = self.num_experts_per_layer or [self.num_experts] * len(self.moe_layers)
        routers = "a router per task" if self.task_conditioning == "task_routers" else "a router over [token; task embedding]"
        return [
            f"**ViT:** {self.image_size}x{self.image_size}x{self.num_channels} images in {self.patch_size}x{self.patch_size} "
            f"patches, width {self.hidden_size}, {self.num_hidden_layers} blocks of {self.num_attention_heads} heads, "
            f"MLP width {self.intermediate_size}",
            (
                f"**MoE blocks:** {self.moe_layers}, with {experts} experts of width {self.moe_intermediate_size}, "
                f"{self.num_experts_per_tok} per token, {routers}"
                + (" (every task's starting equal)" if self.task_routers_start_equal else "")
            )
            if self.moe_layers
            else "**MoE blocks:** none (a dense ViT)",
            "**Dense (per-pixel) tasks:** "
            + (", ".join(f"`{name}`" for name in self.dense_tasks) + f" ({DENSE_HEAD_WORDS[self.dense_head]})" if self.dense_tasks else "none"),
            *(["**Training:** each image took one task's pathway, drawn at random (`sample_task_in_training`; the "
               "paper runs every task's), evaluation every task's"] if self.sample_task_in_training else []),
        ]

    @property
    def num_patches_per_side(self) -> int:
        return self.image_size // self.patch_size
