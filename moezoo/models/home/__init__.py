from .configuration_home import HoMEConfig
from .modeling_home import HoMEModel

__all__ = ["HoMEConfig", "HoMEModel"]
