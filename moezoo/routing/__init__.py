"""The task-routing layer every moezoo architecture is built from: expert banks, gates, routers."""

from .diagnostics import RoutingStatistics, effective_num_parameters
from .dselect_k import DSelectKGate, binary_codes, selector_distribution, smooth_step
from .experts import EXPERT_NORMALIZATIONS, BatchedLinear, ExpertBank, ExpertBatchNorm
from .feature_gate import FeatureGate
from .gates import GateOutput, LinearGate, SelfGate, SoftmaxGate, validate_availability_mask
from .plans import RoutingLevel, hierarchical_plan, plan_task_dependence, progressive_layered_plan
from .router import GATE_TYPES, RouterOutput, StackedTaskRouter, TaskRouter, build_gate
from .sparse import (
    BALANCE_LOSS_WEIGHT,
    SparseMoE,
    SparseMoEOutput,
    TopKGate,
    TopKRouting,
    cv_squared,
    load_balancing_loss,
)

__all__ = [
    "BALANCE_LOSS_WEIGHT",
    "EXPERT_NORMALIZATIONS",
    "GATE_TYPES",
    "BatchedLinear",
    "DSelectKGate",
    "ExpertBank",
    "ExpertBatchNorm",
    "FeatureGate",
    "GateOutput",
    "LinearGate",
    "RouterOutput",
    "RoutingLevel",
    "RoutingStatistics",
    "SelfGate",
    "SoftmaxGate",
    "SparseMoE",
    "SparseMoEOutput",
    "StackedTaskRouter",
    "TaskRouter",
    "TopKGate",
    "TopKRouting",
    "binary_codes",
    "build_gate",
    "cv_squared",
    "effective_num_parameters",
    "hierarchical_plan",
    "load_balancing_loss",
    "plan_task_dependence",
    "progressive_layered_plan",
    "selector_distribution",
    "smooth_step",
    "validate_availability_mask",
]
