"""The task-routing layer every moezoo architecture is built from: expert banks, gates, routers."""

from .diagnostics import RoutingStatistics
from .dselect_k import DSelectKGate, binary_codes, selector_distribution, smooth_step
from .experts import EXPERT_NORMALIZATIONS, BatchedLinear, ExpertBank
from .gates import GateOutput, SoftmaxGate, validate_availability_mask
from .plans import RoutingLevel, progressive_layered_plan
from .router import GATE_TYPES, RouterOutput, StackedTaskRouter, TaskRouter, build_gate

__all__ = [
    "EXPERT_NORMALIZATIONS",
    "GATE_TYPES",
    "BatchedLinear",
    "DSelectKGate",
    "ExpertBank",
    "GateOutput",
    "RouterOutput",
    "RoutingLevel",
    "RoutingStatistics",
    "SoftmaxGate",
    "StackedTaskRouter",
    "TaskRouter",
    "binary_codes",
    "build_gate",
    "progressive_layered_plan",
    "selector_distribution",
    "smooth_step",
    "validate_availability_mask",
]
