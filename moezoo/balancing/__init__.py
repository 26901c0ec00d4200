"""Multi-task optimisation: how the tasks' losses or gradients are combined into one update."""

from .balancer import GRADIENT_RULES, LOSS_WEIGHTINGS, METHODS, TaskBalancer, gradient_cosines, task_gradients
from .gradient_rules import (
    aligned_mtl_balance,
    aligned_mtl_weights,
    cagrad_weights,
    imtl_g_weights,
    mgda_weights,
    nash_mtl_weights,
    pcgrad_weights,
    two_task_min_norm,
)
from .loss_weighting import (
    FAMO,
    DynamicWeightAveraging,
    EqualWeighting,
    GradNorm,
    LossWeighting,
    RandomLossWeighting,
    UncertaintyWeighting,
)
from .trainer import BalancedTrainer

__all__ = [
    "BalancedTrainer",
    "GRADIENT_RULES",
    "LOSS_WEIGHTINGS",
    "METHODS",
    "TaskBalancer",
    "gradient_cosines",
    "task_gradients",
    "FAMO",
    "DynamicWeightAveraging",
    "EqualWeighting",
    "GradNorm",
    "LossWeighting",
    "RandomLossWeighting",
    "UncertaintyWeighting",
    "aligned_mtl_balance",
    "aligned_mtl_weights",
    "cagrad_weights",
    "imtl_g_weights",
    "mgda_weights",
    "nash_mtl_weights",
    "pcgrad_weights",
    "two_task_min_norm",
]
