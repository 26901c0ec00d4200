"""Task vectors of fine-tuned models, and a base model with a (merged) task vector applied.

A task vector is keyed by the base transformer's parameter names (``encoder.layer.0.attention.self.query.weight``)
so that vectors of full fine-tunes and of LoRA fine-tunes of one base line up, and so that applying one is
adding it to the base's parameter of that name.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from torch import nn

from ..suggestions import closest_names

#: The adapter methods whose whole update is one LoRA per layer, ``s B A``.
LORA_METHODS = ("lora", "align_lora")


def _base_parameter_name(module_name: str) -> str:
    """A PEFT-wrapped layer's name in the base model (``base_model.model.`` dropped), with ``.weight``."""
    return f"{module_name.removeprefix('base_model.model.')}.weight"


def lora_task_vector(model: nn.Module, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """The weight update of every LoRA layer of an adapted model with one LoRA (``lora``, ``align_lora``):
    ``ΔW = s B A`` in the base weight's own layout (PEFT's ``get_delta_weight``, which follows
    ``fan_in_fan_out`` and rsLoRA's scaling), keyed by the base parameter it updates.

    Raises:
        ValueError: the model's adapter is not one plain LoRA, or its update is not ``s B A`` alone (DoRA's
            magnitude vector, LoRA biases): merging it as a weight update would silently change its outputs.
    """
    method = getattr(getattr(model, "config", None), "adapter_method", None)
    if method not in LORA_METHODS:
        raise ValueError(
            f"A task vector of a LoRA fine-tune needs adapter_method 'lora' or 'align_lora', got {method!r}"
            + (" (a task-routed adapter holds several tasks' updates: moezoo.adapters.merge_task takes one out)." if method else ".")
        )
    backbone = model.backbone
    if not isinstance(backbone, PeftModel):
        raise ValueError(f"{type(model).__name__}.backbone is not a PEFT model: it has no LoRA to read.")
    adapter_config = backbone.peft_config[adapter_name]
    if getattr(adapter_config, "use_dora", False):
        raise ValueError("A DoRA adapter rescales each weight column by a learned magnitude: its update is not B·A, and "
                         "is not merged as one.")
    if getattr(adapter_config, "lora_bias", False):
        raise ValueError("A LoRA with biases (lora_bias=True) also changes the layers' biases: it is not merged as B·A.")
    updates = {}
    with torch.no_grad():
        for name, module in backbone.named_modules():
            if isinstance(module, LoraLayer) and adapter_name in module.lora_A:
                updates[_base_parameter_name(name)] = module.get_delta_weight(adapter_name).detach().clone()
    if not updates:
        raise ValueError(f"{type(model).__name__} has no LoRA layer for adapter {adapter_name!r}.")
    return updates


def full_task_vector(fine_tuned: nn.Module, base: nn.Module) -> dict[str, torch.Tensor]:
    """``θ_t - θ_0`` of every floating-point parameter of a full fine-tune of ``base`` (the same architecture).

    Raises:
        ValueError: the two do not have the same parameter names and shapes.
    """
    tuned, original = dict(fine_tuned.named_parameters()), dict(base.named_parameters())
    if tuned.keys() != original.keys():
        missing, extra = sorted(original.keys() - tuned.keys()), sorted(tuned.keys() - original.keys())
        raise ValueError(f"The fine-tune's parameters are not the base's: it lacks {missing[:5]} and has {extra[:5]} in addition.")
    vector = {}
    for name, parameter in tuned.items():
        if parameter.shape != original[name].shape:
            raise ValueError(f"{name!r} has shape {list(parameter.shape)} in the fine-tune and {list(original[name].shape)} in the base.")
        if parameter.is_floating_point():
            vector[name] = (parameter.detach() - original[name].detach()).clone()
    return vector


def apply_task_vector(base: nn.Module, vector: Mapping[str, torch.Tensor]) -> nn.Module:
    """A copy of ``base`` with ``vector`` added to its parameters of the same names; ``base`` is left as it was.

    Raises:
        KeyError: the vector names a parameter ``base`` lacks (with the closest names).
        ValueError: a tensor's shape is not its parameter's.
    """
    merged = copy.deepcopy(base)
    parameters = dict(merged.named_parameters())
    unknown = [name for name in vector if name not in parameters]
    if unknown:
        raise KeyError(f"The task vector names {unknown[:3]}, not parameters of this {type(base).__name__}"
                       f"{closest_names(unknown[0], parameters)}.")
    with torch.no_grad():
        for name, update in vector.items():
            if update.shape != parameters[name].shape:
                raise ValueError(f"{name!r}: an update of shape {list(update.shape)} for a parameter of shape {list(parameters[name].shape)}.")
            parameters[name].add_(update.to(parameters[name]))
    return merged


def check_same_base(models: Sequence[nn.Module]) -> None:
    """Raise a `ValueError` with the reason unless every adapted model was trained on the same base weights
    (`moezoo.adapters.base_models.weights_digest`, recorded in each config). Their LoRA ranks may differ (the
    updates ``B A`` have the base weights' shapes); layers adapted in one and not another are refused when the
    task vectors are merged (`moezoo.merging.check_task_vectors`)."""
    configs = [model.config for model in models]
    first = configs[0]
    for index, config in enumerate(configs[1:], start=1):
        if config.base_model_digest != first.base_model_digest or config.base_model_name_or_path != first.base_model_name_or_path:
            raise ValueError(
                f"Source {index} was fine-tuned from {config.base_model_name_or_path} (weights digest "
                f"{config.base_model_digest}), source 0 from {first.base_model_name_or_path} ({first.base_model_digest}): "
                "task vectors of different bases do not add up."
            )
