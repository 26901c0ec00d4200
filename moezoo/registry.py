"""Architectures by name, and their registration with transformers' Auto classes."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, AutoFeatureExtractor, AutoImageProcessor, AutoModel

from .models.modeling_utils import MultiTaskConfig, MultiTaskPreTrainedModel
from .tabular import TabularProcessor

_REGISTRY: dict[str, tuple[type[MultiTaskConfig], type[MultiTaskPreTrainedModel]]] = {}


def register_model(
    config_class: type[MultiTaskConfig],
    model_class: type[MultiTaskPreTrainedModel],
    image_processor_class: type | None = None,
) -> None:
    """Make an architecture available by its ``model_type`` in `create_model` and in transformers'
    `AutoConfig`, `AutoModel`, and `AutoImageProcessor` (``image_processor_class``, for a model that reads
    images through one) or else `AutoFeatureExtractor` (the tabular processor)."""
    name = config_class.model_type
    if model_class.config_class is not config_class:
        raise ValueError(f"{model_class.__name__}.config_class is not {config_class.__name__}.")
    if name in _REGISTRY and _REGISTRY[name] != (config_class, model_class):
        raise ValueError(f"An architecture named {name!r} is already registered.")
    _REGISTRY[name] = (config_class, model_class)
    AutoConfig.register(name, config_class, exist_ok=True)
    AutoModel.register(config_class, model_class, exist_ok=True)
    if image_processor_class is not None:
        AutoImageProcessor.register(config_class, image_processor_classes={"pil": image_processor_class}, exist_ok=True)
    else:
        AutoFeatureExtractor.register(config_class, TabularProcessor, exist_ok=True)


def list_models() -> list[str]:
    """Names of the registered architectures."""
    return sorted(_REGISTRY)


def get_model_classes(name: str) -> tuple[type[MultiTaskConfig], type[MultiTaskPreTrainedModel]]:
    """The (config class, model class) registered under ``name``."""
    if name not in _REGISTRY:
        raise KeyError(f"Unknown architecture {name!r}; available: {list_models()}.")
    return _REGISTRY[name]


def create_model(name: str, **config_overrides: Any) -> MultiTaskPreTrainedModel:
    """Build a freshly initialised model of architecture ``name``.

    Example:
        >>> model = create_model("mmoe", num_shared_experts=4, tasks=[{"name": "ctr"}, {"name": "cvr"}])
    """
    config_class, model_class = get_model_classes(name)
    return model_class(config_class(**config_overrides))
