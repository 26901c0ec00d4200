"""Align-LoRA's alignment loss ("Align, Don't Divide", 2025): one shared LoRA adapter, and a loss that pulls
the tasks' representations together in every LoRA layer.

In each layer the representation is the output of the LoRA ``A`` projection (``[B, S, r]``). Examples are
grouped by their ``task_ids`` (never by their position in the batch: the authors' code cuts each batch into
equal blocks, one per task, which only a fixed layout of tasks in a batch fills correctly), and for every
pair of tasks in the batch a distance between their groups is taken. Two forms:

- ``"authors"`` (default): as the authors' code computes it. ``"kl"``: a diagonal Gaussian per token
  position fitted to a task's examples (mean and unbiased variance over the examples, plus 1e-8), the KL
  divergence summed over the ``r`` dimensions and averaged over positions, the two directions averaged;
  padding positions count like any other (their code masks none). A task needs two examples in the batch
  to have a variance; tasks with one are left out of that batch's pairs. ``"mmd"``: the squared maximum
  mean discrepancy per token position under a sum of Gaussian kernels ``exp(-||x - y||^2 / (2 sigma))``
  over their 19 ``sigma`` from 1e-6 to 1e6 (`AUTHORS_MMD_SIGMAS`), averaged over positions. Its KL is large
  (a median of 593 on MiniLM's fresh LoRA outputs, benchmarks/alignment_forms.py), so the paper's λ = 0.2
  (their train.py) weighs it heavily.
- ``"pooled"``: moezoo's earlier reading of the paper. ``"kl"``: one diagonal Gaussian per task fitted to
  all its real tokens (padding masked; population variance plus 1e-5), ``KL(p || q) + KL(q || p)`` summed
  over the ``r`` dimensions; ``"mmd"``: between the tasks' examples, each the mean of its real tokens, under
  a sum of Gaussian kernels whose bandwidths are the mean squared distance times each of
  ``POOLED_MMD_BANDWIDTH_MULTIPLIERS``. Its KL is 174 times smaller on the same outputs (a median of 3.4),
  so it takes its own λ (`ALIGNMENT_WEIGHTS`).

The loss is λ times the mean over task pairs and layers; a batch with no pair gives zero (still attached to
the graph). Where the authors' code differs beyond the grouping: it adds the loss once per optimiser step
over the features of all its gradient-accumulation micro-batches (10), and their Trainer divides that
step's loss by the 10 micro-batches; here the loss is taken on every batch.
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
ALIGNMENT_FORMS = ("authors", "pooled")
#: λ of each form when none is given: the paper's for the authors' form, and the same for the pooled form,
#: whose scale differs (benchmarks/results/alignment_forms.md): `benchmarks/glue_adapters.py
#: --tune_pooled_weight` chooses its λ on GLUE-5 validation data for the benchmark's pooled row.
ALIGNMENT_WEIGHTS = {"authors": 0.2, "pooled": 0.2}
#: Each form in a phrase, for model cards.
ALIGNMENT_FORM_SUMMARIES = {
    "authors": "as the authors' code computes it: a diagonal Gaussian per token position over a task's examples "
    "in the batch, padding positions included",
    "pooled": "moezoo's variant: one diagonal Gaussian per task over all its real (non-padding) tokens in the batch, "
    "with its own weight",
}
#: The kernel scales of the authors' MMD.
AUTHORS_MMD_SIGMAS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 100.0, 1e3, 1e4, 1e5, 1e6)
AUTHORS_VARIANCE_EPS = 1e-8
POOLED_MMD_BANDWIDTH_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)
POOLED_VARIANCE_EPS = 1e-5


def symmetric_kl_of_moments(
    mean_p: torch.Tensor, var_p: torch.Tensor, mean_q: torch.Tensor, var_q: torch.Tensor
) -> torch.Tensor:
    """``KL(p || q) + KL(q || p)`` of two diagonal Gaussians given by their means and variances (last
    dimension ``d``), summed over the ``d`` dimensions."""
    squared_gap = (mean_p - mean_q) ** 2
    # The log-variance terms of the two directions cancel.
    return 0.5 * ((var_p + squared_gap) / var_q + (var_q + squared_gap) / var_p - 2).sum(-1)


def gaussian_symmetric_kl(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """The pooled form's KL: ``KL(p || q) + KL(q || p)`` of diagonal Gaussians fitted to two sets of vectors
    ``[n, d]`` / ``[m, d]`` (means and population variances, plus `POOLED_VARIANCE_EPS`), summed over ``d``."""
    return symmetric_kl_of_moments(
        first.mean(0), first.var(0, unbiased=False) + POOLED_VARIANCE_EPS,
        second.mean(0), second.var(0, unbiased=False) + POOLED_VARIANCE_EPS,
    )


def positional_gaussian_kl(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """The authors' KL: for ``[n, S, d]`` / ``[m, S, d]`` (``n, m >= 2``), a diagonal Gaussian per position fitted
    over the examples (unbiased variance plus `AUTHORS_VARIANCE_EPS`), ``(KL(p || q) + KL(q || p)) / 2`` summed
    over ``d`` and averaged over the ``S`` positions."""
    moments = [
        (features.mean(0), features.var(0, unbiased=True) + AUTHORS_VARIANCE_EPS) for features in (first, second)
    ]
    return 0.5 * symmetric_kl_of_moments(*moments[0], *moments[1]).mean()


def mmd_from_kernels(within_first: torch.Tensor, within_second: torch.Tensor, between: torch.Tensor) -> torch.Tensor:
    """The squared MMD estimate ``mean k(x, x') + mean k(y, y') - 2 mean k(x, y)`` from the three kernel blocks."""
    return within_first.mean() + within_second.mean() - 2 * between.mean()


def multi_kernel_mmd(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """The pooled form's MMD between two samples ``[n, d]`` / ``[m, d]`` under a sum of Gaussian kernels
    ``exp(-||x - y||^2 / h)``, ``h`` the mean squared distance of the pooled sample times each multiplier."""
    pooled = torch.cat([first, second])
    distances = torch.cdist(pooled, pooled).pow(2)
    scale = distances.detach().sum() / max(len(pooled) ** 2 - len(pooled), 1)
    kernel = sum(
        torch.exp(-distances / (scale * multiplier + POOLED_VARIANCE_EPS)) for multiplier in POOLED_MMD_BANDWIDTH_MULTIPLIERS
    )
    n = len(first)
    return mmd_from_kernels(kernel[:n, :n], kernel[n:, n:], kernel[:n, n:])


def positional_mmd(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """The authors' MMD between ``[n, S, d]`` and ``[m, S, d]``: per position, kernels
    ``sum_sigma exp(-||x - y||^2 / (2 sigma))`` over `AUTHORS_MMD_SIGMAS`, every block averaged over pairs and
    positions."""
    betas = 1.0 / (2.0 * torch.tensor(AUTHORS_MMD_SIGMAS, dtype=first.dtype, device=first.device))

    def kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # [n, m, S]
        distances = (x.unsqueeze(1) - y.unsqueeze(0)).pow(2).sum(-1)
        return torch.exp(-betas.view(-1, 1, 1, 1) * distances).sum(0)

    return mmd_from_kernels(kernel(first, first), kernel(second, second), kernel(first, second))


class LoraAlignment:
    """Collects the LoRA ``A`` outputs of a forward pass and computes Align-LoRA's loss from them.

    Args:
        routing: Where the batch's ``task_ids`` are (`TaskRouting.set`).
        distance: ``"kl"`` or ``"mmd"`` (see the module's docstring).
        weight: λ, the loss weight; ``None``: the form's (`ALIGNMENT_WEIGHTS`: the paper's 0.2 for the authors' form).
        form: ``"authors"`` or ``"pooled"`` (see the module's docstring).
        adapter_name: The LoRA adapter whose ``A`` outputs are aligned.
    """

    def __init__(
        self, routing: TaskRouting, distance: str = "kl", weight: float | None = None, form: str = "authors",
        adapter_name: str = "default",
    ) -> None:
        if distance not in DISTANCES:
            raise ValueError(f"Unknown alignment distance {distance!r}; choose one of {DISTANCES}.")
        if form not in ALIGNMENT_FORMS:
            raise ValueError(f"Unknown alignment form {form!r}; choose one of {ALIGNMENT_FORMS}.")
        weight = ALIGNMENT_WEIGHTS[form] if weight is None else weight
        if weight < 0:
            raise ValueError(f"The alignment weight cannot be negative, got {weight}.")
        self.routing = routing
        self.distance = distance
        self.form = form
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

    def loss(self, distance: str | None = None, form: str | None = None, weight: float | None = None) -> torch.Tensor:
        """λ times the mean over layers and task pairs of the distance between the tasks' representations
        in the pass since `start`; zero (attached to the graph) when the batch holds one task.

        ``distance``, ``form`` and ``weight`` take the loss of the same pass in another distance or form, or with
        another λ, than this alignment's own (to compare them)."""
        distance, form = distance or self.distance, form or self.form
        weight = self.weight if weight is None else weight
        if distance not in DISTANCES or form not in ALIGNMENT_FORMS:
            raise ValueError(f"Unknown alignment distance {distance!r} or form {form!r}; choose from {DISTANCES} and {ALIGNMENT_FORMS}.")
        if not self._outputs:
            raise ValueError("No LoRA layer ran since start(): call start() and then the model's forward.")
        task_ids = self.routing.task_ids
        if task_ids is None:
            raise ValueError("Align-LoRA groups examples by task: pass task_ids.")
        tasks, counts = torch.unique(task_ids, return_counts=True)
        if form == "authors" and distance == "kl":  # a variance over the task's examples needs two
            tasks = tasks[counts >= 2]
        pairs = list(itertools.combinations(tasks.tolist(), 2))
        if not pairs:
            return weight * sum(output.sum() for output in self._outputs) * 0.0
        per_layer = [self._layer_distance(output, task_ids, pairs, distance, form) for output in self._outputs]
        return weight * torch.stack(per_layer).mean()

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

    def _layer_distance(
        self, output: torch.Tensor, task_ids: torch.Tensor, pairs: Sequence[tuple[int, int]], distance: str, form: str
    ) -> torch.Tensor:
        output, mask = self._tokens(output)
        task_ids = task_ids.to(output.device)
        distances = []
        for first, second in pairs:
            distances.append(self._distance(output, mask, task_ids == first, task_ids == second, distance, form))
        return torch.stack(distances).mean()

    @staticmethod
    def _distance(
        output: torch.Tensor, mask: torch.Tensor, first: torch.Tensor, second: torch.Tensor, distance: str, form: str
    ) -> torch.Tensor:
        if form == "authors":  # every position, padding included, as their code
            between = positional_gaussian_kl if distance == "kl" else positional_mmd
            return between(output[first], output[second])
        if distance == "kl":
            return gaussian_symmetric_kl(output[first][mask[first]], output[second][mask[second]])
        pooled = (output * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        return multi_kernel_mmd(pooled[first], pooled[second])
