"""moezoo architectures."""

from .dselect_k import *  # noqa: F403
from .dselect_k import __all__ as _dselect_k_all
from .mmoe import *  # noqa: F403
from .mmoe import __all__ as _mmoe_all
from .modeling_utils import MultiTaskConfig, MultiTaskPreTrainedModel, TaskHeads

__all__ = ["MultiTaskConfig", "MultiTaskPreTrainedModel", "TaskHeads", *_dselect_k_all, *_mmoe_all]
