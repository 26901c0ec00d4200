"""The loss-weighting multi-task methods: each turns the tasks' losses into one scalar to back-propagate (one
backward pass), with weights that follow the run.

Every method reads the tasks' losses as one ``[K]`` tensor. Under data parallelism the caller passes
losses already averaged over the processes, so that every process updates identical state: the
weights never drift apart. Methods with state keep it in buffers and parameters (``state_dict``), so that
a run resumed from a checkpoint continues with the same weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

#: Added to a loss before a logarithm or a ratio (FAMO's and DWA's guard against a zero loss).
LOSS_EPS = 1e-8


def step_held_tensor(
    optimizer: torch.optim.Optimizer, held: torch.Tensor, gradient: Callable[[torch.Tensor], torch.Tensor]
) -> None:
    """One step of a method's own ``optimizer``, whose only tensor mirrors the buffer ``held`` (a buffer, so that
    the model's optimizer never sees it and ``state_dict`` saves it): the tensor takes the buffer's value and the
    gradient ``gradient(tensor)``, the optimizer steps, and the buffer takes the result."""
    (tensor,) = optimizer.param_groups[0]["params"]
    with torch.no_grad():
        tensor.copy_(held)
    tensor.grad = gradient(tensor)
    optimizer.step()
    optimizer.zero_grad()
    with torch.no_grad():
        held.copy_(tensor)


class LossWeighting(nn.Module):
    """A loss-weighting method: `combine` gives the scalar to back-propagate and records the weights it
    used (`last_weights`); `after_step` and `end_epoch` update the state where the method has any."""

    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        if num_tasks < 1:
            raise ValueError(f"A loss weighting needs at least one task, got {num_tasks}.")
        self.num_tasks = num_tasks
        self.register_buffer("last_weights", torch.ones(num_tasks), persistent=False)

    def _checked(self, losses: torch.Tensor) -> torch.Tensor:
        if losses.shape != (self.num_tasks,):
            raise ValueError(f"Expected the {self.num_tasks} task losses as a [{self.num_tasks}] tensor, got {list(losses.shape)}.")
        if not torch.isfinite(losses).all():
            raise ValueError(f"A task loss is not finite: {losses.detach().tolist()}.")
        return losses

    def combine(self, losses: torch.Tensor) -> torch.Tensor:
        """The scalar to back-propagate for the task losses ``losses`` ``[K]``."""
        raise NotImplementedError

    #: What `after_step` needs besides the losses `combine` saw: ``"losses_after"`` (the same batch's
    #: losses under the updated model) or ``"gradient_norms"`` (each task's unweighted gradient norm on the
    #: last shared layer); ``None`` for nothing.
    needs: str | None = None

    def after_step(
        self,
        losses_before: torch.Tensor,
        *,
        losses_after: torch.Tensor | None = None,
        gradient_norms: torch.Tensor | None = None,
    ) -> None:
        """Update after the optimizer step from ``losses_before`` (the losses `combine` saw) and what the
        method `needs`."""

    def end_epoch(self) -> None:
        """Update at the end of an epoch (DWA reads the epoch's mean losses)."""


class EqualWeighting(LossWeighting):
    """A fixed weighted sum, ``Σ w_k L_k`` (the tasks' own weights; 1 each by default)."""

    def __init__(self, num_tasks: int, task_weights: list[float] | None = None) -> None:
        super().__init__(num_tasks)
        weights = torch.ones(num_tasks) if task_weights is None else torch.as_tensor(task_weights, dtype=torch.float32)
        if weights.shape != (num_tasks,) or (weights < 0).any():
            raise ValueError(f"task_weights must be {num_tasks} non-negative numbers, got {task_weights}.")
        self.register_buffer("task_weights", weights, persistent=False)

    def combine(self, losses: torch.Tensor) -> torch.Tensor:
        losses = self._checked(losses)
        self.last_weights = self.task_weights.to(losses)
        return (self.last_weights * losses).sum()


class UncertaintyWeighting(LossWeighting):
    """Uncertainty weighting (Kendall, Gal & Cipolla 2018): a learned log-variance ``s_k`` per task, trained
    with the model, and ``Σ (e^(-s_k) L_k + s_k) / 2``: the Gaussian-likelihood form of the paper, used for
    every task as LibMTL does (the paper's classification form drops the 1/2 on ``e^(-s_k) L_k``). The
    weights reported are ``e^(-s_k) / 2``."""

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks)
        self.log_variances = nn.Parameter(torch.zeros(num_tasks))

    def combine(self, losses: torch.Tensor) -> torch.Tensor:
        losses = self._checked(losses)
        scale = torch.exp(-self.log_variances).to(losses)
        self.last_weights = (scale / 2).detach()
        return ((scale * losses + self.log_variances.to(losses)) / 2).sum()


class DynamicWeightAveraging(LossWeighting):
    """DWA (Liu, Johns & Davison 2019): ``w_k = K softmax_k(r_k / T)`` with ``r_k = L̄_k(e-1) / L̄_k(e-2)``
    the ratio of the task's mean training losses over the last two epochs; 1 each for the first two
    epochs. The epoch means are accumulated from the losses `combine` sees."""

    def __init__(self, num_tasks: int, temperature: float = 2.0) -> None:
        super().__init__(num_tasks)
        if temperature <= 0:
            raise ValueError(f"DWA's temperature must be positive, got {temperature}.")
        self.temperature = temperature
        self.register_buffer("epoch_loss_sum", torch.zeros(num_tasks, dtype=torch.float64))
        self.register_buffer("epoch_steps", torch.zeros((), dtype=torch.long))
        # The mean losses of the last two completed epochs, oldest first; NaN until there are two.
        self.register_buffer("epoch_means", torch.full((2, num_tasks), float("nan"), dtype=torch.float64))

    def current_weights(self) -> torch.Tensor:
        """The weights of the present epoch."""
        if torch.isnan(self.epoch_means).any():
            return torch.ones(self.num_tasks, dtype=torch.float64)
        ratios = self.epoch_means[1] / (self.epoch_means[0] + LOSS_EPS)
        return self.num_tasks * torch.softmax(ratios / self.temperature, 0)

    def combine(self, losses: torch.Tensor) -> torch.Tensor:
        losses = self._checked(losses)
        self.epoch_loss_sum += losses.detach().double().to(self.epoch_loss_sum.device)
        self.epoch_steps += 1
        self.last_weights = self.current_weights().to(losses)
        return (self.last_weights * losses).sum()

    def end_epoch(self) -> None:
        if int(self.epoch_steps) == 0:
            return
        mean = self.epoch_loss_sum / self.epoch_steps
        self.epoch_means = torch.stack([self.epoch_means[1], mean])
        self.epoch_loss_sum.zero_()
        self.epoch_steps.zero_()


class RandomLossWeighting(LossWeighting):
    """RLW (Lin et al. 2022): weights drawn afresh every step, ``softmax(z)`` with ``z ~ N(0, I)``, from the
    method's own generator (seeded alike on every process, its state saved with the run)."""

    def __init__(self, num_tasks: int, seed: int = 0) -> None:
        super().__init__(num_tasks)
        self.generator = torch.Generator().manual_seed(seed)

    def combine(self, losses: torch.Tensor) -> torch.Tensor:
        losses = self._checked(losses)
        self.last_weights = torch.softmax(torch.randn(self.num_tasks, generator=self.generator), 0).to(losses)
        return (self.last_weights * losses).sum()

    def get_extra_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


#: Where FAMO reads a step's effect on the losses (`FAMO`'s ``update_from``).
FAMO_UPDATES = ("same_batch", "next_batch")


class FAMO(LossWeighting):
    """FAMO (Liu et al. 2023, "Fast Adaptive Multitask Optimization"), as the authors' code computes it:
    task logits ``ξ``, ``z = softmax(ξ)``; the loss back-propagated is ``Σ_k z_k log(L_k - m_k + ε) / c``
    with ``c = Σ_k z_k / (L_k - m_k + ε)`` (held constant), so each task's gradient is scaled by
    ``z_k / (c (L_k - m_k))``. After the step, the same batch's new losses update ``ξ`` by Adam
    (``lr``, ``weight_decay``) along ``J_softmaxᵀ δ``, ``δ_k = log(L_k - m_k + ε) - log(L'_k - m_k + ε)``:
    a task whose loss fell less gets more weight. ``m`` is each task's lowest attainable loss (0).

    ``update_from="same_batch"`` (the default) is the paper's: ``L'`` is the same batch under the updated
    model, a second forward pass (without gradients) after every step. ``"next_batch"`` saves that pass:
    ``L'`` is the next step's batch, before its own update (so ``δ`` also carries the change of batch, noise
    that averages out over steps); the update then happens in `combine`, before the weights are formed.
    """

    def __init__(
        self, num_tasks: int, lr: float = 0.025, weight_decay: float = 1e-3, update_from: str = "same_batch"
    ) -> None:
        super().__init__(num_tasks)
        if lr <= 0 or weight_decay < 0:
            raise ValueError(f"FAMO needs lr > 0 and weight_decay >= 0, got lr={lr}, weight_decay={weight_decay}.")
        if update_from not in FAMO_UPDATES:
            raise ValueError(f"FAMO's update_from is one of {list(FAMO_UPDATES)}, got {update_from!r}.")
        self.update_from = update_from
        self.needs = "losses_after" if update_from == "same_batch" else None
        # Not an nn.Parameter: FAMO's own optimizer, not the model's, updates the logits.
        self.register_buffer("logits", torch.zeros(num_tasks))
        self.register_buffer("min_losses", torch.zeros(num_tasks))
        # The last step's losses, awaiting the next batch's ("next_batch"; NaN: none yet).
        self.register_buffer("pending_losses", torch.full((num_tasks,), float("nan")))
        self.logit_optimizer = torch.optim.Adam([torch.zeros(num_tasks, requires_grad=True)], lr=lr, weight_decay=weight_decay)

    def _shifted(self, losses: torch.Tensor) -> torch.Tensor:
        return losses - self.min_losses.to(losses) + LOSS_EPS

    def combine(self, losses: torch.Tensor) -> torch.Tensor:
        losses = self._checked(losses)
        if self.update_from == "next_batch":
            if not torch.isnan(self.pending_losses).any():
                self._update_logits(self.pending_losses, losses)
            self.pending_losses = losses.detach().to(self.pending_losses)
        z = torch.softmax(self.logits, 0).to(losses)
        shifted = self._shifted(losses)
        c = (z / shifted).sum().detach()
        self.last_weights = (z / (c * shifted)).detach()  # the factor on each task's gradient
        return (z * shifted.log() / c).sum()

    def after_step(
        self,
        losses_before: torch.Tensor,
        *,
        losses_after: torch.Tensor | None = None,
        gradient_norms: torch.Tensor | None = None,
    ) -> None:
        if self.update_from == "next_batch":
            return  # the next batch's `combine` updates the logits
        if losses_after is None:
            raise ValueError("FAMO updates its weights from the batch's losses after the step: pass losses_after.")
        self._update_logits(self._checked(losses_before), self._checked(losses_after))

    def _update_logits(self, losses_before: torch.Tensor, losses_after: torch.Tensor) -> None:
        delta = (self._shifted(losses_before.detach()).log() - self._shifted(losses_after.detach()).log()).to(self.logits)

        def gradient(logits: torch.Tensor) -> torch.Tensor:  # J_softmaxᵀ δ
            with torch.enable_grad():
                return torch.autograd.grad(torch.softmax(logits, 0), logits, grad_outputs=delta)[0]

        step_held_tensor(self.logit_optimizer, self.logits, gradient)

    def get_extra_state(self) -> dict:
        return self.logit_optimizer.state_dict()

    def set_extra_state(self, state: dict) -> None:
        self.logit_optimizer.load_state_dict(state)


class GradNorm(LossWeighting):
    """GradNorm (Chen et al. 2018): weights ``w_k`` (starting at 1) trained so that each task's weighted
    gradient norm on the last shared layer, ``G_k = w_k ‖∇_W L_k‖``, approaches ``Ḡ r_k^α``, with ``Ḡ`` the
    mean of the ``G_k``, ``r_k = L̃_k / mean(L̃)`` the task's relative inverse training rate and
    ``L̃_k = L_k / L_k(0)`` (its loss against its first step's). The loss ``Σ |G_k - Ḡ r_k^α|`` (targets
    held constant, as in the paper) moves ``w`` by Adam at ``lr``; the weights are then renormalised to sum
    to ``K``. `after_step` takes the unweighted norms ``‖∇_W L_k‖``."""

    def __init__(self, num_tasks: int, alpha: float = 1.5, lr: float = 0.025) -> None:
        super().__init__(num_tasks)
        if alpha < 0 or lr <= 0:
            raise ValueError(f"GradNorm needs alpha >= 0 and lr > 0, got alpha={alpha}, lr={lr}.")
        self.alpha = alpha
        self.register_buffer("weights", torch.ones(num_tasks))
        self.register_buffer("initial_losses", torch.full((num_tasks,), float("nan")))
        self.weight_optimizer = torch.optim.Adam([torch.ones(num_tasks, requires_grad=True)], lr=lr)

    def combine(self, losses: torch.Tensor) -> torch.Tensor:
        losses = self._checked(losses)
        if torch.isnan(self.initial_losses).any():
            self.initial_losses = losses.detach().float().clamp_min(LOSS_EPS).to(self.initial_losses.device)
        self.last_weights = self.weights.to(losses)
        return (self.last_weights * losses).sum()

    def targets(self, losses: torch.Tensor, gradient_norms: torch.Tensor) -> torch.Tensor:
        """The target norms ``Ḡ r_k^α`` for the losses and unweighted gradient norms of a step."""
        weighted = self.weights * gradient_norms
        inverse_rate = losses / self.initial_losses
        return weighted.mean() * (inverse_rate / inverse_rate.mean()) ** self.alpha

    needs = "gradient_norms"

    def after_step(
        self,
        losses_before: torch.Tensor,
        *,
        losses_after: torch.Tensor | None = None,
        gradient_norms: torch.Tensor | None = None,
    ) -> None:
        if gradient_norms is None:
            raise ValueError("GradNorm updates its weights from the tasks' gradient norms: pass gradient_norms.")
        losses = self._checked(losses_before).detach().to(self.weights)
        norms = gradient_norms.detach().to(self.weights)
        # d/dw_k Σ_j |w_j n_j - target_j| with the targets held constant.
        gradient = torch.sign(self.weights * norms - self.targets(losses, norms)) * norms
        step_held_tensor(self.weight_optimizer, self.weights, lambda weights: gradient)
        positive = self.weights.clamp_min(0)
        self.weights.copy_(self.num_tasks * positive / positive.sum().clamp_min(LOSS_EPS))

    def get_extra_state(self) -> dict:
        return self.weight_optimizer.state_dict()

    def set_extra_state(self, state: dict) -> None:
        self.weight_optimizer.load_state_dict(state)
