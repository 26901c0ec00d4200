from .configuration_m3vit import M3ViTConfig
from .modeling_m3vit import M3ViTModel, SingleTaskExport, image_processor_for

__all__ = ["M3ViTConfig", "M3ViTModel", "SingleTaskExport", "image_processor_for"]
