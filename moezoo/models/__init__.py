"""moezoo architectures."""

from .mmoe import *  # noqa: F403
from .mmoe import __all__ as _mmoe_all
from .modeling_utils import MultiTaskConfig, MultiTaskPreTrainedModel, TaskHeads

__all__ = ["MultiTaskConfig", "MultiTaskPreTrainedModel", "TaskHeads", *_mmoe_all]
