"""Routing diagnostics: how often experts output zeros, and how much weight each gate gives each expert.

HoME's diagnosis of multi-task MoE, made measurable for every model built on `moezoo.routing`:
*expert collapse* shows as experts whose outputs are zero most of the time (ReLU experts), and
*expert degradation* as shared experts that one task's gate monopolises.
"""

from __future__ import annotations

import torch
from torch import nn

from .dselect_k import DSelectKGate
from .experts import ExpertBank
from .gates import LinearGate
from .router import TaskRouter


def effective_num_parameters(model: nn.Module) -> int:
    """Parameters that can affect the output: all of them, less those that gates store only so that one
    computation serves all of them (`LinearGate.num_unused_parameters`: weights of masked-out
    (gate, expert) pairs; `DSelectKGate.num_unused_parameters`: switches of surplus bits). The number to
    equalise when architectures are compared at the same parameter budget."""
    total = sum(parameter.numel() for parameter in model.parameters())
    return total - sum(
        module.num_unused_parameters() for module in model.modules() if isinstance(module, (LinearGate, DSelectKGate))
    )


class RoutingStatistics:
    """Accumulates routing statistics over every batch a model processes while attached.

    Forward hooks on each `ExpertBank` (experts and task towers alike) and on each `TaskRouter`'s gate
    record, per module path:

    - `zero_activation_rate`: ``[E]``, the fraction of an expert's output values that are exactly 0;
    - `mean_gate_weights`: ``[G, E]``, each gate's mean weight on each expert.

    Example:
        >>> with RoutingStatistics(model) as stats:
        ...     for batch in loader:
        ...         model(**batch)
        >>> stats.zero_activation_rate()["router.levels.0.experts"]
    """

    def __init__(self, model: nn.Module) -> None:
        self._zeros: dict[str, torch.Tensor] = {}
        self._values: dict[str, int] = {}
        self._gate_sums: dict[str, torch.Tensor] = {}
        self._examples: dict[str, int] = {}
        self._handles = []
        for name, module in model.named_modules():
            if isinstance(module, ExpertBank):
                self._handles.append(module.register_forward_hook(self._expert_hook(name)))
            elif isinstance(module, TaskRouter):
                self._handles.append(module.gate.register_forward_hook(self._gate_hook(name)))
        if not self._handles:
            raise ValueError(f"{type(model).__name__} has no ExpertBank or TaskRouter to observe.")

    def _expert_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            batch, _, size = output.shape
            zeros = (output.detach() == 0).sum(dim=(0, 2)).cpu()
            self._zeros[name] = self._zeros.get(name, 0) + zeros
            self._values[name] = self._values.get(name, 0) + batch * size

        return hook

    def _gate_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output) -> None:
            probs = output.probs.detach()
            self._gate_sums[name] = self._gate_sums.get(name, 0) + probs.sum(dim=0).cpu()
            self._examples[name] = self._examples.get(name, 0) + probs.shape[0]

        return hook

    def zero_activation_rate(self) -> dict[str, torch.Tensor]:
        """Per expert bank (by module path): the fraction of each expert's outputs that were exactly 0."""
        return {name: self._zeros[name].double() / self._values[name] for name in self._zeros}

    def mean_gate_weights(self) -> dict[str, torch.Tensor]:
        """Per router (by module path): ``[G, E]`` mean gate weight of each gate on each expert."""
        return {name: self._gate_sums[name].double() / self._examples[name] for name in self._gate_sums}

    def reset(self) -> None:
        """Forget what was recorded so far."""
        self._zeros.clear()
        self._values.clear()
        self._gate_sums.clear()
        self._examples.clear()

    def remove(self) -> None:
        """Detach the hooks from the model."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> RoutingStatistics:
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()
