"""HoME: the routed model body with HoME's hierarchical routing plan."""

from __future__ import annotations

from ..routed import RoutedMultiTaskModel
from .configuration_home import HoMEConfig


class HoMEModel(RoutedMultiTaskModel):
    """Hierarchy of Multi-Gate Experts (Wang et al., Kuaishou 2024).

    A meta level of global and group experts, whose group gates and global gate feed a task level of
    global, group and task experts; each task's tower reads its task gate. Experts are
    ``Linear -> BatchNorm -> Swish``; first-level experts read feature-gated inputs; self-gates add each
    gate's own experts through a residual path. See `HoMEConfig` for the switches.
    """

    config_class = HoMEConfig
