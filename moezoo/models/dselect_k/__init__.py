from .configuration_dselect_k import DSelectKConfig, DSelectKStaticConfig
from .modeling_dselect_k import DSelectKModel, DSelectKStaticModel

__all__ = ["DSelectKConfig", "DSelectKModel", "DSelectKStaticConfig", "DSelectKStaticModel"]
