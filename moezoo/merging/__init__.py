"""Model merging: single-task fine-tunes of one base made into one multi-task model (task arithmetic, TIES,
DARE, isotropic merging)."""

from .methods import (
    MERGING_METHODS,
    check_method_options,
    check_task_vectors,
    dare_linear,
    dare_ties,
    drop_and_rescale,
    iso_c,
    iso_cts,
    merge_task_vectors,
    task_arithmetic,
    ties,
    trim_to_density,
)
from .checkpoints import METHODS, MergeArguments, merge_checkpoints
from .experts import task_vector_experts, token_router_parameters, train_token_routers
from .lora import lora_model_from_updates, merge_lora_models
from .task_vectors import apply_task_vector, check_same_base, full_task_vector, lora_task_vector

__all__ = [
    "MERGING_METHODS",
    "METHODS",
    "MergeArguments",
    "apply_task_vector",
    "check_same_base",
    "full_task_vector",
    "lora_model_from_updates",
    "lora_task_vector",
    "merge_checkpoints",
    "merge_lora_models",
    "check_method_options",
    "check_task_vectors",
    "dare_linear",
    "dare_ties",
    "drop_and_rescale",
    "iso_c",
    "iso_cts",
    "merge_task_vectors",
    "task_arithmetic",
    "task_vector_experts",
    "ties",
    "token_router_parameters",
    "train_token_routers",
    "trim_to_density",
]
