"""moezoo architectures."""

from .dselect_k import *  # noqa: F403
from .dselect_k import __all__ as _dselect_k_all
from .home import *  # noqa: F403
from .home import __all__ as _home_all
from .m3vit import *  # noqa: F403
from .m3vit import __all__ as _m3vit_all
from .mmoe import *  # noqa: F403
from .mmoe import __all__ as _mmoe_all
from .modeling_utils import MultiTaskConfig, MultiTaskPreTrainedModel, TaskHeads
from .routed import RoutedMultiTaskConfig, RoutedMultiTaskModel

__all__ = [
    "MultiTaskConfig",
    "MultiTaskPreTrainedModel",
    "RoutedMultiTaskConfig",
    "RoutedMultiTaskModel",
    "TaskHeads",
    *_dselect_k_all,
    *_home_all,
    *_m3vit_all,
    *_mmoe_all,
]
