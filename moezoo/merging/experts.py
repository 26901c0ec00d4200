"""Single-task LoRA fine-tunes of one base as the experts of one task-routed adapter.

Every adapted layer of the result is a multi-head LoRA (`moezoo.adapters.MultiHeadLoraLinear`) with one head per
source: the shared ``A`` stacks the sources' ``A_t`` (rank ``Σ r_t``), and head ``t`` holds ``s_t B_t`` in its own
columns and zeros elsewhere, so that head ``t`` alone applies exactly source ``t``'s update. Its router is
``"task_or_token"``: an example with a task id takes its source's head alone (its task router's row is
``[0, .., 10⁴, .., 0]``, a softmax of exactly one-hot in float32), so every task reproduces its source; an
example without one is mixed by the token routers, which start at zero, the sources' mean (task arithmetic
at 1/N), until they are trained on mixed data.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from transformers.utils import logging

from ..adapters.modeling_adapted import AdaptedTransformerConfig, AdaptedTransformerModel
from ..adapters.multi_head_lora import MultiHeadLoraLinear
from .lora import _tasks_and_heads
from .records import merge_record
from .task_vectors import check_same_base, lora_task_vector

#: The task router's logit for a task's own source: its softmax is exactly one-hot in float32.
OWN_SOURCE_LOGIT = 1e4


def _lora_factors(source: AdaptedTransformerModel) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per adapted layer (its name in the base model): ``A`` ``[r, in]`` and ``s B`` ``[out, r]``."""
    lora_task_vector(source)  # the same refusals: one plain LoRA, no DoRA, no LoRA biases
    factors = {}
    for name, module in source.backbone.named_modules():
        if isinstance(module, LoraLayer) and "default" in module.lora_A:
            factors[name.removeprefix("base_model.model.")] = (
                module.lora_A["default"].weight.detach(), module.scaling["default"] * module.lora_B["default"].weight.detach()
            )
    return factors


def _shared_target_modules(sources: Sequence[AdaptedTransformerModel], layers: Sequence[str]) -> str | list[str]:
    """The sources' ``target_modules`` when they all name them alike (so that a config written for them, e.g. a
    recipe's YAML that continues training the experts, names them alike too); otherwise a regex of exactly ``layers``."""
    settings = [source.config.adapter_settings().get("target_modules") for source in sources]
    if settings[0] is not None and all(setting == settings[0] for setting in settings):
        return settings[0]
    return "|".join(re.escape(layer) for layer in layers)


def task_vector_experts(
    sources: Sequence[AdaptedTransformerModel], source_names: Sequence[str] | None = None
) -> AdaptedTransformerModel:
    """One adapted model whose heads are the sources' LoRA updates (see the module's docstring), with every
    source's task heads; given an example's task id it computes that task's source exactly.

    Raises:
        ValueError: sources of different bases, an adapter that is not one plain LoRA, sources that adapt
            different layers, or two sources with a task of the same name.
    """
    if not sources:
        raise ValueError("Nothing to merge: give at least one source model.")
    check_same_base(sources)
    factors = [_lora_factors(source) for source in sources]
    layers = list(factors[0])
    for index, source_factors in enumerate(factors[1:], start=1):
        if set(source_factors) != set(layers):
            differ = sorted(set(source_factors) ^ set(layers))
            raise ValueError(f"Source {index} adapts other layers than source 0 ({differ[:3]} differ): the experts of one "
                             "layer come from every source.")
    tasks, heads = _tasks_and_heads(sources)
    owner = [index for index, source in enumerate(sources) for _ in source.config.tasks]  # each task's source
    rank = max(sum(source_factors[layer][0].shape[0] for source_factors in factors) for layer in layers)
    template = sources[0]
    backbone = template.backbone
    base = copy.deepcopy(backbone).unload() if isinstance(backbone, PeftModel) else copy.deepcopy(backbone)
    config = AdaptedTransformerConfig(**{
        **template.config.to_dict(),
        "tasks": [dict(task) for task in tasks],
        "adapter_method": "multi_head_lora",
        "adapter": {"target_modules": _shared_target_modules(sources, layers), "r": rank, "lora_alpha": rank,
                    "num_heads": len(sources), "router": "task_or_token", "head_init": "random"},
        "unknown_tasks": "router",
        "alignment_weight": None,
        "merge": merge_record("task_vector_experts", {}, source_names),
    })
    model = AdaptedTransformerModel(config, backbone=base)
    with torch.no_grad():
        for name, layer in model.backbone.named_modules():
            if not isinstance(layer, MultiHeadLoraLinear):
                continue
            layer_name = name.removeprefix("base_model.model.")
            A, B = layer.mhlora_A["default"], layer.mhlora_B["default"]
            A.zero_()
            B.zero_()
            start = 0
            for head, source_factors in enumerate(factors):
                source_A, scaled_B = source_factors[layer_name]
                width = source_A.shape[0]
                A[start : start + width] = source_A
                B[head, :, start : start + width] = scaled_B
                start += width
            task_router = layer.task_router("default").weight
            task_router.zero_()
            task_router[torch.arange(len(owner)), torch.tensor(owner)] = OWN_SOURCE_LOGIT
            for parameter in layer.token_router("default").parameters():
                parameter.zero_()
        for task in tasks:
            model.heads[task["name"]].load_state_dict(heads[task["name"]].state_dict())
    return model.eval()


def token_router_parameters(model: AdaptedTransformerModel) -> list[torch.nn.Parameter]:
    """The parameters of every token router of ``model``'s multi-head LoRA layers."""
    return [
        parameter
        for layer in model.backbone.modules() if isinstance(layer, MultiHeadLoraLinear)
        for adapter in layer.mhlora_A
        if layer.token_router(adapter) is not None
        for parameter in layer.token_router(adapter).parameters()
    ]


def train_token_routers(
    model: AdaptedTransformerModel,
    batches: Iterable[Mapping[str, Any]],
    learning_rate: float = 1e-3,
    show_progress: bool = True,
) -> list[float]:
    """Train the token routers of a `task_vector_experts` model, and nothing else, for inputs that come without
    a task id: every example routed by its tokens (`TaskRouting.by_tokens`), its loss that of its own task's
    head (``batches`` of labelled, mixed-task examples with ``task_ids``). Dropout is off (the model in eval
    mode); the other parameters are left as they were. Returns each step's loss.

    Raises:
        ValueError: ``model`` has no token routers.
    """
    routers = token_router_parameters(model)
    if not routers:
        raise ValueError("The model has no token routers to train (a task_vector_experts model has them).")
    trainable = {parameter: parameter.requires_grad for parameter in model.parameters()}
    was_training = model.training
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in routers:
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(routers, lr=learning_rate, weight_decay=0.0)
    losses = []
    try:
        with model.routing.by_tokens():
            for batch in logging.tqdm(batches, desc="training the token routers", disable=not show_progress):
                loss = model(**batch).loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
    finally:
        for parameter, flag in trainable.items():
            parameter.requires_grad_(flag)
        model.train(was_training)
    return losses
