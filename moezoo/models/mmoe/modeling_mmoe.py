"""The MMoE family's models: the routed model body with `progressive_layered_plan` routing."""

from __future__ import annotations

from ..routed import RoutedMultiTaskModel
from .configuration_mmoe import CGCConfig, MMoEConfig, OMoEConfig, PLEConfig, SharedBottomConfig


class MMoEModel(RoutedMultiTaskModel):
    """Multi-gate Mixture-of-Experts: ``y_t = tower_t(sum_i softmax(W_t x)_i E_i(x))``.

    The same class, with other routing plans, is Shared-Bottom, OMoE, CGC and PLE.
    """

    config_class = MMoEConfig


class SharedBottomModel(MMoEModel):
    config_class = SharedBottomConfig


class OMoEModel(MMoEModel):
    config_class = OMoEConfig


class CGCModel(MMoEModel):
    config_class = CGCConfig


class PLEModel(MMoEModel):
    config_class = PLEConfig
