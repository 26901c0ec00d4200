from .configuration_mmoe import CGCConfig, MMoEConfig, OMoEConfig, PLEConfig, SharedBottomConfig
from .modeling_mmoe import CGCModel, MMoEModel, OMoEModel, PLEModel, SharedBottomModel

__all__ = [
    "CGCConfig",
    "CGCModel",
    "MMoEConfig",
    "MMoEModel",
    "OMoEConfig",
    "OMoEModel",
    "PLEConfig",
    "PLEModel",
    "SharedBottomConfig",
    "SharedBottomModel",
]
