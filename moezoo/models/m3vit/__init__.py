from .configuration_m3vit import M3ViTConfig
from .modeling_m3vit import M3ViTModel

__all__ = ["M3ViTConfig", "M3ViTModel"]
