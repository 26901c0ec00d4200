"""Single-task export of task-routed adapters: one task's update merged into the base weights.

Where an adapter's routing depends on the task alone (PEFT's Poly / MHR, a multi-head LoRA with
``router="task"``), the update a task applies to each adapted layer is a fixed matrix, and the model for
that task is the base model with it added (as PEFT's ``merge_and_unload`` does for LoRA). Poly's mixing is
taken as in evaluation mode (sigmoid of the skill logits, normalised per split).
"""

from __future__ import annotations

import copy

import torch
from peft import PeftModel
from peft.tuners.poly.layer import Linear as PolyLinear
from peft.tuners.poly.router import EPS as POLY_EPS
from torch import nn
from transformers.pytorch_utils import Conv1D

from .multi_head_lora import MultiHeadLoraLinear


def task_mixing_weights(layer: nn.Module, adapter_name: str, task_id: int) -> torch.Tensor:
    """How a task-routed adapter layer mixes its units for task ``task_id``: ``[n_splits, n_skills]`` for a
    PEFT Poly / MHR layer (evaluation-mode mixing: sigmoid of the skill logits, normalised per split), and
    ``[num_heads]`` (the router's softmax) for a multi-head LoRA layer with ``router="task"``.

    Raises:
        TypeError: the layer is not a task-routed adapter layer.
        ValueError: the layer routes by token (its mixing depends on the input), or ``task_id`` is unknown.
    """
    if isinstance(layer, PolyLinear):
        num_tasks = layer.n_tasks[adapter_name]
    elif isinstance(layer, MultiHeadLoraLinear):
        if layer.task_router(adapter_name) is None:
            raise ValueError(
                "A multi-head LoRA with a token router mixes its heads by each token's input: no single-task "
                "update to merge (merge needs router='task' or 'task_or_token')."
            )
        num_tasks = layer.task_router(adapter_name).num_embeddings
    else:
        raise TypeError(f"{type(layer).__name__} is not a task-routed adapter layer.")
    if not 0 <= task_id < num_tasks:
        raise ValueError(f"Task id {task_id} is out of range: the adapter knows {num_tasks} tasks (ids 0 to {num_tasks - 1}).")
    if isinstance(layer, MultiHeadLoraLinear):
        return torch.softmax(layer.task_router(adapter_name).weight[task_id], dim=-1)
    n_splits, n_skills = layer.n_splits[adapter_name], layer.n_skills[adapter_name]
    mixing = torch.sigmoid(layer.poly_router[adapter_name].module_logits[task_id].view(n_splits, n_skills))
    return mixing / (mixing.sum(dim=-1, keepdim=True) + POLY_EPS)


def poly_delta_weight(layer: PolyLinear, adapter_name: str, mixing: torch.Tensor) -> torch.Tensor:
    """The update ``[out, in]`` of a PEFT Poly / MHR layer whose skills are mixed by ``mixing`` ``[n_splits, n_skills]``."""
    rank = layer.r[adapter_name]
    A = torch.einsum("qs,qsdr->qdr", mixing, layer.poly_lora_A[adapter_name]).reshape(layer.in_features, rank)
    B = torch.einsum("qs,qsrd->qrd", mixing, layer.poly_lora_B[adapter_name]).transpose(0, 1).reshape(rank, layer.out_features)
    return (A @ B / rank).T


def task_delta_weight(layer: nn.Module, adapter_name: str, task_id: int) -> torch.Tensor:
    """Task ``task_id``'s update ``[out, in]`` of a task-routed adapter layer (errors: `task_mixing_weights`)."""
    mixing = task_mixing_weights(layer, adapter_name, task_id)
    if isinstance(layer, PolyLinear):
        return poly_delta_weight(layer, adapter_name, mixing)
    return layer.delta_weight(adapter_name, mixing)


def task_routed_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The task-routed adapter layers of ``model`` (PEFT Poly / MHR, multi-head LoRA), by module name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, (PolyLinear, MultiHeadLoraLinear))}


@torch.no_grad()
def merge_task(model: PeftModel, task_id: int, adapter_name: str = "default") -> nn.Module:
    """A copy of ``model``'s base model for task ``task_id`` alone: every task-routed adapter layer
    replaced by its base layer with the task's update added to the weight. ``model`` is left as it was.

    Raises:
        ValueError: an adapter layer routes by token, ``task_id`` is out of range, or the model has no
            task-routed adapter layer.
    """
    merged = copy.deepcopy(model.get_base_model())
    replaced = 0
    for name, module in task_routed_layers(merged).items():
        delta = task_delta_weight(module, adapter_name, task_id)
        base = module.get_base_layer()
        base.weight += (delta.T if isinstance(base, Conv1D) else delta).to(base.weight.dtype)
        parent_name, _, child_name = name.rpartition(".")
        setattr(merged.get_submodule(parent_name) if parent_name else merged, child_name, base)
        replaced += 1
    if not replaced:
        raise ValueError(f"{type(model.get_base_model()).__name__} has no task-routed adapter layer to merge.")
    return merged
