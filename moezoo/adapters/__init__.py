"""Multi-task adapters for pretrained transformers, as PEFT tuners, and the task routing they share."""

from transformers import AutoConfig, AutoModel

from .alignment import (
    ALIGNMENT_FORMS,
    ALIGNMENT_WEIGHTS,
    LoraAlignment,
    gaussian_symmetric_kl,
    multi_kernel_mmd,
    positional_gaussian_kl,
    positional_mmd,
)
from .merging import merge_task, task_delta_weight
from .modeling_adapted import ADAPTER_METHODS, AdaptedTransformerConfig, AdaptedTransformerModel
from .multi_head_lora import (
    MULTI_HEAD_LORA,
    MultiHeadLoraConfig,
    MultiHeadLoraLinear,
    MultiHeadLoraModel,
    balance_loss,
    register_multi_head_lora,
)
from .task_routing import TaskRouting

register_multi_head_lora()
# Loadable with transformers' Auto classes; not a `moezoo.create_model` architecture, since it is built on
# a pretrained transformer (`AdaptedTransformerModel.from_base`).
AutoConfig.register(AdaptedTransformerConfig.model_type, AdaptedTransformerConfig, exist_ok=True)
AutoModel.register(AdaptedTransformerConfig, AdaptedTransformerModel, exist_ok=True)

__all__ = [
    "ADAPTER_METHODS",
    "ALIGNMENT_FORMS",
    "ALIGNMENT_WEIGHTS",
    "AdaptedTransformerConfig",
    "AdaptedTransformerModel",
    "LoraAlignment",
    "MULTI_HEAD_LORA",
    "MultiHeadLoraConfig",
    "MultiHeadLoraLinear",
    "MultiHeadLoraModel",
    "TaskRouting",
    "balance_loss",
    "gaussian_symmetric_kl",
    "merge_task",
    "multi_kernel_mmd",
    "positional_gaussian_kl",
    "positional_mmd",
    "register_multi_head_lora",
    "task_delta_weight",
]
