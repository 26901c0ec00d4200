"""The task-routing layer every moezoo architecture is built from: expert banks, gates, routers."""

from .experts import EXPERT_NORMALIZATIONS, ExpertBank
from .gates import SoftmaxGate, validate_availability_mask
from .plans import RoutingLevel, progressive_layered_plan
from .router import RouterOutput, StackedTaskRouter, TaskRouter

__all__ = [
    "EXPERT_NORMALIZATIONS",
    "ExpertBank",
    "RouterOutput",
    "RoutingLevel",
    "SoftmaxGate",
    "StackedTaskRouter",
    "TaskRouter",
    "progressive_layered_plan",
    "validate_availability_mask",
]
