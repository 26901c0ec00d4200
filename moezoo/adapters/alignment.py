"""Align-LoRA's alignment loss ("Align, Don't Divide", 2025): one shared LoRA adapter, and a loss that pulls
the tasks' representations together in every LoRA layer.

In each layer the representation is the output of the LoRA ``A`` projection (``[B, S, r]``). Examples are
grouped by their ``task_ids`` (never by their position in the batch, which is wrong once batches mix
tasks), and for every pair of tasks present in the batch a distance between their groups is taken:

- ``"kl"`` (default): the symmetric KL divergence between two diagonal Gaussians fitted to the tasks'
  token representations (padding tokens left out), ``KL(p || q) + KL(q || p)``, summed over the ``r``
  dimensions;
- ``"mmd"``: the squared maximum mean discrepancy between the tasks' examples (each the mean of its
  non-padding tokens) under a sum of Gaussian kernels whose bandwidths are the mean squared distance
  times each of ``MMD_BANDWIDTH_MULTIPLIERS``.

The loss is ``weight`` times the mean over task pairs and layers; a batch with a single task has no pair
and gives zero (still attached to the graph).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from peft.tuners.lora import LoraLayer
from torch import nn
from torch.utils.hooks import RemovableHandle

from .task_routing import TaskRouting

DISTANCES = ("kl", "mmd")
ALIGNMENT_WEIGHT = 0.2
MMD_BANDWIDTH_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)
VARIANCE_EPS = 1e-5


def symmetric_kl_of_moments(
    mean_p: torch.Tensor, var_p: torch.Tensor, mean_q: torch.Tensor, var_q: torch.Tensor
) -> torch.Tensor:
    """``KL(p || q) + KL(q || p)`` of two diagonal Gaussians given by their means and variances (last
    dimension ``d``), summed over the ``d`` dimensions."""
    squared_gap = (mean_p - mean_q) ** 2
    # The log-variance terms of the two directions cancel.
    return 0.5 * ((var_p + squared_gap) / var_q + (var_q + squared_gap) / var_p - 2).sum(-1)


def gaussian_symmetric_kl(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """``KL(p || q) + KL(q || p)`` of diagonal Gaussians fitted to two sets of vectors ``[n, d]`` / ``[m, d]``
    (means and population variances, plus `VARIANCE_EPS`), summed over the ``d`` dimensions."""
    return symmetric_kl_of_moments(
        first.mean(0), first.var(0, unbiased=False) + VARIANCE_EPS, second.mean(0), second.var(0, unbiased=False) + VARIANCE_EPS
    )


def multi_kernel_mmd(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Squared MMD between two samples ``[n, d]`` / ``[m, d]`` under a sum of Gaussian kernels
    ``exp(-||x - y||^2 / h)``, ``h`` the mean squared distance of the pooled sample times each multiplier."""
    pooled = torch.cat([first, second])
    distances = torch.cdist(pooled, pooled).pow(2)
    scale = distances.detach().sum() / max(len(pooled) ** 2 - len(pooled), 1)
    kernel = sum(torch.exp(-distances / (scale * multiplier + VARIANCE_EPS)) for multiplier in MMD_BANDWIDTH_MULTIPLIERS)
    n = len(first)
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()


class LoraAlignment:
    """Collects the LoRA ``A`` outputs of a forward pass and computes Align-LoRA's loss from them.

    Args:
        routing: Where the batch's ``task_ids`` are (`TaskRouting.set`).
        distance: ``"kl"`` or ``"mmd"`` (see the module's docstring).
        weight: λ, the loss weight (0.2 by default, as the paper).
        adapter_name: The LoRA adapter whose ``A`` outputs are aligned.
    """

    def __init__(
        self, routing: TaskRouting, distance: str = "kl", weight: float = ALIGNMENT_WEIGHT, adapter_name: str = "default"
    ) -> None:
        if distance not in DISTANCES:
            raise ValueError(f"Unknown alignment distance {distance!r}; choose one of {DISTANCES}.")
        if weight < 0:
            raise ValueError(f"The alignment weight cannot be negative, got {weight}.")
        self.routing = routing
        self.distance = distance
        self.weight = weight
        self.adapter_name = adapter_name
        self.attention_mask: torch.Tensor | None = None
        self._outputs: list[torch.Tensor] = []
        self._handles: list[RemovableHandle] = []

    def attach(self, model: nn.Module) -> list[str]:
        """Record the ``A`` output of every PEFT LoRA layer of ``model``; returns the layers' names."""
        reached = []
        for name, module in model.named_modules():
            if isinstance(module, LoraLayer) and self.adapter_name in module.lora_A:
                self._handles.append(module.lora_A[self.adapter_name].register_forward_hook(self._record))
                reached.append(name)
        if not reached:
            raise ValueError(f"{type(model).__name__} has no LoRA layer with adapter {self.adapter_name!r} to align.")
        return reached

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def start(self, attention_mask: torch.Tensor | None = None) -> None:
        """Call before each forward pass: forget the last pass's outputs; ``attention_mask`` ``[B, S]``
        (1 for real tokens) marks the padding to leave out."""
        self._outputs.clear()
        self.attention_mask = attention_mask

    def _record(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        # A block recomputed under gradient checkpointing records again, after `loss` was taken; `start`
        # clears those with the rest.
        self._outputs.append(output)

    def loss(self) -> torch.Tensor:
        """λ times the mean over layers and task pairs of the distance between the tasks' representations
        in the pass since `start`; zero (attached to the graph) when the batch holds one task."""
        if not self._outputs:
            raise ValueError("No LoRA layer ran since start(): call start() and then the model's forward.")
        task_ids = self.routing.task_ids
        if task_ids is None:
            raise ValueError("Align-LoRA groups examples by task: pass task_ids.")
        tasks = torch.unique(task_ids).tolist()
        pairs = list(itertools.combinations(tasks, 2))
        if not pairs:
            return self.weight * sum(output.sum() for output in self._outputs) * 0.0
        per_layer = [self._layer_distance(output, task_ids, pairs) for output in self._outputs]
        return self.weight * torch.stack(per_layer).mean()

    def layer_tokens(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each LoRA layer's ``A`` output in the pass since `start`, as ``(output [B, S, r] in float32, mask
        [B, S])`` with ``mask`` true on the real (non-padding) tokens."""
        return [self._tokens(output) for output in self._outputs]

    def _tokens(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = output.float()
        if output.dim() == 2:  # a layer that sees one vector per example
            output = output.unsqueeze(1)
        mask = self.attention_mask
        mask = torch.ones(output.shape[:2], dtype=torch.bool, device=output.device) if mask is None else mask.bool().to(output.device)
        if mask.shape != output.shape[:2]:
            raise ValueError(f"attention_mask has shape {list(mask.shape)}, the LoRA layer's tokens {list(output.shape[:2])}.")
        return output, mask

    def _layer_distance(self, output: torch.Tensor, task_ids: torch.Tensor, pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
        output, mask = self._tokens(output)
        task_ids = task_ids.to(output.device)
        distances = []
        for first, second in pairs:
            distances.append(self._distance(output, mask, task_ids == first, task_ids == second))
        return torch.stack(distances).mean()

    def _distance(self, output: torch.Tensor, mask: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        if self.distance == "kl":
            return gaussian_symmetric_kl(output[first][mask[first]], output[second][mask[second]])
        pooled = (output * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        return multi_kernel_mmd(pooled[first], pooled[second])
