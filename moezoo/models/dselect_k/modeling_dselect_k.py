"""MMoE with DSelect-k gates: the MMoE model with another gate on the same routing layer."""

from __future__ import annotations

from ..mmoe.modeling_mmoe import MMoEModel
from .configuration_dselect_k import DSelectKConfig, DSelectKStaticConfig


class DSelectKModel(MMoEModel):
    """MMoE with per-example DSelect-k gates; the gates' regularisers are returned as ``aux_loss``."""

    config_class = DSelectKConfig


class DSelectKStaticModel(MMoEModel):
    """MMoE with static DSelect-k gates (one learned expert selection per task)."""

    config_class = DSelectKStaticConfig
