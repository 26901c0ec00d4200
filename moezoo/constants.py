"""Config-derived constant tensors (masks, index maps) held as buffers that survive loading.

transformers builds a model on the meta device in `from_pretrained` and replaces non-persistent
buffers with uninitialised tensors, expecting `_init_weights` to rebuild them. `register_constant`
keeps a CPU copy of each constant so that `restore_constants` can.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def register_constant(module: nn.Module, name: str, value: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Register ``value`` as a non-persistent buffer of ``module`` and remember it; returns the buffer."""
    # An explicit CPU device: under transformers' meta-device context a tensor would otherwise hold no data.
    value = torch.as_tensor(value, dtype=dtype, device="cpu")
    module.register_buffer(name, value.clone(), persistent=False)
    module.__dict__.setdefault("_constant_values", {})[name] = value
    return getattr(module, name)


@torch.no_grad()
def restore_constants(module: nn.Module) -> None:
    """Write back the values of the constants registered on ``module`` (not its children)."""
    for name, value in module.__dict__.get("_constant_values", {}).items():
        getattr(module, name).copy_(value)
