"""Multi-task adapters for pretrained transformers, as PEFT tuners, and the task routing they share."""

from .alignment import ALIGNMENT_WEIGHT, LoraAlignment, gaussian_symmetric_kl, multi_kernel_mmd
from .merging import merge_task, task_delta_weight
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

__all__ = [
    "ALIGNMENT_WEIGHT",
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
    "register_multi_head_lora",
    "task_delta_weight",
]
