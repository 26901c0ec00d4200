"""LoRA fine-tunes of one base merged into one multi-task adapted model.

The sources' task vectors are their layers' weight updates ``s B A`` (`lora_task_vector`), merged by a method
of `moezoo.merging.methods`; each merged update is written back as a LoRA factor pair exactly (its SVD,
``ΔW = U S Vᵀ = (U √S)(√S Vᵀ)``, at scale 1), so the result is an ordinary `AdaptedTransformerModel` with a
plain LoRA that saves, loads and pushes like any other, and every source's task keeps its own head.

Its rank is the largest numerical rank among the merged updates (smaller ones padded with zero rows): task
arithmetic and Iso-C of LoRA updates of ranks ``r_t`` stay within ``Σ r_t``; TIES and DARE act entry by entry
and give full-rank updates in general, so their LoRA is as wide as the layers (exact, but as large as the
weights it updates).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from transformers.utils import logging

from ..adapters.modeling_adapted import AdaptedTransformerConfig, AdaptedTransformerModel
from .methods import merge_task_vectors
from .records import merge_record
from .task_vectors import check_same_base, lora_task_vector

WEIGHT_SUFFIX = ".weight"


def _rank(update: torch.Tensor) -> int:
    """The update's numerical rank at its own precision (a float32 product ``B A`` has rounding noise in every
    direction, far below its own singular values)."""
    values = torch.linalg.svdvals(update.double())
    if values.numel() == 0 or values[0] == 0:
        return 0
    return int((values > values[0] * max(update.shape) * torch.finfo(update.dtype).eps).sum())


def _factors(update: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``B`` ``[out, rank]`` and ``A`` ``[rank, in]`` with ``B A = update`` (zero-padded past its own rank)."""
    left, values, right = torch.linalg.svd(update.double(), full_matrices=False)
    own = min(rank, values.numel())
    root = values[:own].sqrt()
    B = torch.zeros(update.shape[0], rank, dtype=torch.float64)
    A = torch.zeros(rank, update.shape[1], dtype=torch.float64)
    B[:, :own] = left[:, :own] * root
    A[:own] = root[:, None] * right[:own]
    return B, A


def lora_model_from_updates(
    template: AdaptedTransformerModel,
    updates: Mapping[str, torch.Tensor],
    tasks: Sequence[Mapping[str, Any]],
    heads: Mapping[str, torch.nn.Module],
    merge: Mapping[str, Any] | None = None,
) -> AdaptedTransformerModel:
    """An adapted model on ``template``'s base whose plain LoRA applies exactly ``updates`` (base parameter name
    to ``ΔW`` in the weight's layout, as `lora_task_vector` gives them), with a head per task (``heads``, copied)
    and ``merge`` recorded in its config."""
    backbone = template.backbone
    base = copy.deepcopy(backbone).unload() if isinstance(backbone, PeftModel) else copy.deepcopy(backbone)
    modules = [name.removesuffix(WEIGHT_SUFFIX) for name in updates]
    rank = max(1, max(_rank(update) for update in updates.values()))
    config = AdaptedTransformerConfig(**{
        **template.config.to_dict(),
        "tasks": [dict(task) for task in tasks],
        "adapter_method": "lora",
        # Exactly the layers updated; scale lora_alpha / r = 1, so that B A is the update itself.
        "adapter": {"target_modules": "|".join(re.escape(module) for module in modules), "r": rank, "lora_alpha": rank,
                    "lora_dropout": 0.0},
        "alignment_weight": None,
        "merge": dict(merge) if merge is not None else None,
    })
    model = AdaptedTransformerModel(config, backbone=base)
    layers = {name.removeprefix("base_model.model."): module for name, module in model.backbone.named_modules()
              if isinstance(module, LoraLayer)}
    with torch.no_grad():
        for name, update in logging.tqdm(updates.items(), desc="writing LoRA factors", unit="layer", leave=False):
            layer = layers[name.removesuffix(WEIGHT_SUFFIX)]
            # A fan_in_fan_out layer (GPT-2's Conv1D) holds its weight, and so the update, as [in, out].
            B, A = _factors(update.T if layer.fan_in_fan_out else update, rank)
            layer.lora_B["default"].weight.copy_(B)
            layer.lora_A["default"].weight.copy_(A)
        for task in tasks:
            model.heads[task["name"]].load_state_dict(heads[task["name"]].state_dict())
    return model.eval()


def _tasks_and_heads(sources: Sequence[AdaptedTransformerModel]) -> tuple[list[dict], dict[str, torch.nn.Module]]:
    """Every source's tasks, in order, and their heads; a task name in two sources is an error."""
    tasks, heads = [], {}
    for index, source in enumerate(sources):
        for task in source.config.tasks:
            if task["name"] in heads:
                raise ValueError(
                    f"Task {task['name']!r} is in more than one source (source {index} among them): each source brings "
                    "its own tasks, and a merged model keeps one head per task name."
                )
            tasks.append(task)
            heads[task["name"]] = source.heads[task["name"]]
    return tasks, heads


def merge_lora_models(
    sources: Sequence[AdaptedTransformerModel],
    method: str,
    options: Mapping[str, Any] | None = None,
    source_names: Sequence[str] | None = None,
    scalings: Sequence[float] | None = None,
    score: Callable[[AdaptedTransformerModel], float] | None = None,
) -> AdaptedTransformerModel:
    """One adapted model from LoRA fine-tunes of one base, their tasks' heads kept: the sources' weight updates
    merged by ``method`` (a name of `moezoo.merging.MERGING_METHODS`, with ``options``). ``source_names`` (folders,
    zoo names or Hub ids) are recorded in the config's ``merge`` with the method and options.

    With ``scalings`` and ``score`` the method's scaling ``λ`` is chosen: every candidate's merged model is
    scored by ``score(model)`` (higher is better; a validation split's mean metric, say) and the best kept; the
    scores are recorded in ``merge["scaling_scores"]`` (``[{"scaling": λ, "score": s}, ...]``). Every method's ``λ`` multiplies its merged vector, so
    the sources are merged once.

    Raises:
        ValueError: sources of different bases, an adapter that is not one plain LoRA, layers adapted in one
            source and not another, two sources with a task of the same name, an unknown method or option,
            ``scalings`` without ``score`` (or the reverse) or beside a ``scaling`` option.
    """
    if not sources:
        raise ValueError("Nothing to merge: give at least one source model.")
    if (scalings is None) != (score is None):
        raise ValueError("Choosing the scaling needs both the candidates (scalings) and a score function (score).")
    options = dict(options or {})
    if scalings is not None and "scaling" in options:
        raise ValueError("Give either the scaling option or candidate scalings to choose from, not both.")
    if scalings is not None and not scalings:
        raise ValueError("scalings is empty: give at least one candidate.")
    check_same_base(sources)
    tasks, heads = _tasks_and_heads(sources)
    vectors = [lora_task_vector(source) for source in sources]
    if scalings is None:
        merged = merge_task_vectors(vectors, method, options)
        record = merge_record(method, options, source_names)
        return lora_model_from_updates(sources[0], merged, tasks, heads, record)
    unit = merge_task_vectors(vectors, method, {**options, "scaling": 1.0})
    scores, best = [], None
    for scaling in scalings:
        record = merge_record(method, {**options, "scaling": float(scaling)}, source_names)
        candidate = lora_model_from_updates(
            sources[0], {name: scaling * update for name, update in unit.items()}, tasks, heads, record
        )
        scores.append({"scaling": float(scaling), "score": float(score(candidate))})
        if best is None or scores[-1]["score"] > best[0]:
            best = (scores[-1]["score"], candidate)
    best[1].config.merge["scaling_scores"] = scores
    return best[1]
