"""moezoo: multi-task Mixture-of-Experts models on one task-routing layer, native to Hugging Face.

Importing moezoo registers every architecture with transformers' Auto classes, so that
``transformers.AutoModel.from_pretrained(folder)`` loads a moezoo checkpoint.
"""

from transformers.models.vit import ViTImageProcessorPil

from . import adapters, routing
from .models import (
    CGCConfig,
    CGCModel,
    DSelectKConfig,
    DSelectKModel,
    DSelectKStaticConfig,
    DSelectKStaticModel,
    HoMEConfig,
    HoMEModel,
    M3ViTConfig,
    M3ViTModel,
    MMoEConfig,
    MMoEModel,
    MultiTaskConfig,
    MultiTaskPreTrainedModel,
    OMoEConfig,
    OMoEModel,
    PLEConfig,
    PLEModel,
    SharedBottomConfig,
    SharedBottomModel,
)
from .outputs import MultiTaskOutput
from . import inference
from .registry import create_model, get_model_classes, list_models, register_model
from .tabular import FeatureSchema, TabularProcessor
from .tasks import TaskSpec
from .zoo import from_pretrained, list_pretrained, processor_from_pretrained

__version__ = "0.1.0.dev0"

for _config_class, _model_class in (
    (MMoEConfig, MMoEModel),
    (SharedBottomConfig, SharedBottomModel),
    (OMoEConfig, OMoEModel),
    (CGCConfig, CGCModel),
    (PLEConfig, PLEModel),
    (DSelectKConfig, DSelectKModel),
    (DSelectKStaticConfig, DSelectKStaticModel),
    (HoMEConfig, HoMEModel),
):
    register_model(_config_class, _model_class)
register_model(M3ViTConfig, M3ViTModel, image_processor_class=ViTImageProcessorPil)

__all__ = [
    "CGCConfig",
    "CGCModel",
    "DSelectKConfig",
    "DSelectKModel",
    "DSelectKStaticConfig",
    "DSelectKStaticModel",
    "FeatureSchema",
    "HoMEConfig",
    "HoMEModel",
    "M3ViTConfig",
    "M3ViTModel",
    "MMoEConfig",
    "MMoEModel",
    "MultiTaskConfig",
    "MultiTaskOutput",
    "MultiTaskPreTrainedModel",
    "OMoEConfig",
    "OMoEModel",
    "PLEConfig",
    "PLEModel",
    "SharedBottomConfig",
    "SharedBottomModel",
    "TabularProcessor",
    "TaskSpec",
    "adapters",
    "create_model",
    "from_pretrained",
    "get_model_classes",
    "inference",
    "list_models",
    "list_pretrained",
    "processor_from_pretrained",
    "register_model",
    "routing",
]
