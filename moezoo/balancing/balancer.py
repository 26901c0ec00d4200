"""One object per multi-task optimisation method: it turns a batch's task losses into the gradients of the
model's parameters, the same on every process as on one process that saw the whole batch.

    balancer = TaskBalancer(model, "pcgrad")
    output = model(**batch)
    balancer.backward(output)      # sets every trainable parameter's .grad
    optimizer.step()

**Across processes.** A task's loss is a mean over its present labels, and a process may hold few or none
of a task's labels. Each process therefore weighs its share of task ``k`` by ``n_k,p / N_k`` (its present
labels over all processes'), so that the shares sum to the loss (and gradient) of the whole batch, and a
task without labels on a process weighs 0 there. Loss-weighting methods compute their weights from those
global losses (identical everywhere) and back-propagate one local surrogate, whose gradient data
parallelism averages into the exact global one. Gradient methods take each task's gradient on each
process, sum the weighted shares over processes once (one all-reduce of a ``[K + 1, P]`` matrix), and
every process combines the same global gradients into the same update. A model under
`torch.nn.parallel.DistributedDataParallel` must then run its forward pass under ``no_sync``
(`TaskBalancer.sets_gradients`: the balancer sets the gradients itself).

**What is shared.** Gradient methods combine the tasks' gradients only over the blocks of parameters that
more than one task reaches (`moezoo.models.modeling_utils.MultiTaskPreTrainedModel.task_dependence`); a
block of one task (a tower, a head, a task's own expert or router row) keeps that task's gradient, scaled
by its task weight.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import PartialState
from accelerate.utils import reduce
from torch import nn

from ..outputs import MultiTaskOutput
from ..suggestions import closest_names
from .gradient_rules import (
    aligned_mtl_weights,
    cagrad_weights,
    imtl_g_weights,
    mgda_weights,
    nash_mtl_weights,
    pcgrad_weights,
)
from .loss_weighting import (
    FAMO,
    DynamicWeightAveraging,
    EqualWeighting,
    GradNorm,
    RandomLossWeighting,
    UncertaintyWeighting,
)

#: Methods that weigh the losses (one backward pass), by name.
LOSS_WEIGHTINGS = {
    "equal": EqualWeighting,
    "uncertainty": UncertaintyWeighting,
    "dwa": DynamicWeightAveraging,
    "rlw": RandomLossWeighting,
    "famo": FAMO,
    "gradnorm": GradNorm,
}
#: Methods that combine the tasks' gradients, by name: the rule and the options it takes.
#: ``representation`` (the representation-level variant, see `TaskBalancer`) applies where the update is a
#: reweighting of the task losses; PCGrad and CAGrad act on the parameters' gradients themselves.
GRADIENT_RULES = {
    "mgda": (mgda_weights, ("representation",)),
    "pcgrad": (pcgrad_weights, ()),
    "cagrad": (cagrad_weights, ("c", "rescale")),
    "imtl_g": (imtl_g_weights, ("representation",)),
    "aligned_mtl": (aligned_mtl_weights, ("representation",)),
    "nash_mtl": (nash_mtl_weights, ("normalize_gram", "representation")),
}
#: Below this, a task's coefficient counts as zero (its task-only blocks then get their gradient apart).
COEFFICIENT_EPS = 1e-12
METHODS = (*LOSS_WEIGHTINGS, *GRADIENT_RULES)


def gradient_cosines(gram: torch.Tensor) -> torch.Tensor:
    """``[K, K]`` cosines between the task gradients of a Gram matrix (0 where a gradient is zero)."""
    norms = gram.diagonal().clamp_min(0).sqrt()
    return torch.where(norms[:, None] * norms[None, :] > 0, gram / (norms[:, None] * norms[None, :]), 0.0)


class TaskBalancer(nn.Module):
    """A multi-task optimisation method, by name (``METHODS``), for ``model``'s tasks.

    Args:
        model: A moezoo multi-task model (its ``task_names`` and, for gradient methods, `task_dependence`);
            the model itself, not a `DistributedDataParallel` wrapper.
        method: One of ``METHODS``: a loss weighting (``LOSS_WEIGHTINGS``) or a gradient rule (``GRADIENT_RULES``).
        options: The method's options (see each method), e.g. ``{"c": 0.4}`` for CAGrad; an option the method
            does not take is an error naming the ones it does. ``{"representation": true}`` (MGDA, IMTL-G,
            Aligned-MTL, Nash-MTL) takes the tasks' gradients of the representation every task reads
            (``model.shared_representation_module()``) instead of the parameters', and reweighs the losses by
            the rule's coefficients: one backward pass of the model instead of one per task (MGDA-UB, Sener &
            Koltun 2018, for MGDA).
        seed: Seed of the method's random draws (RLW's weights, PCGrad's orders), the same on every process.

    The tasks' own weights (``TaskSpec.weight``) scale their losses before any method, as in the model's
    plain loss. ``last_weights`` holds the weights of the last step (the loss weights, or the coefficients
    of the tasks' gradients in the update) and ``last_cosines`` the cosines between the tasks' gradients
    (gradient methods).
    """

    def __init__(self, model: nn.Module, method: str = "equal", options: Mapping[str, Any] | None = None, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(method, str) or method not in METHODS:
            suggestion = closest_names(method, METHODS) if isinstance(method, str) else ""
            raise ValueError(f"Unknown loss balancing method {method!r}{suggestion}; choose one of {list(METHODS)}.")
        options = dict(options or {})
        self.method = method
        self.representation = False  # the representation-level variant of a gradient rule (its option)
        self.task_names = list(model.task_names)
        self.task_weights = torch.tensor([task.weight for task in model.task_specs], dtype=torch.float64)
        num_tasks = len(self.task_names)
        if method in LOSS_WEIGHTINGS:
            weighting = LOSS_WEIGHTINGS[method]
            # The tasks' own weights come from the model's task specs, not from an option.
            accepted = _option_names(weighting, skip=("num_tasks", "task_weights"))
            _check_options(method, options, accepted)
            if method == "rlw":
                options.setdefault("seed", seed)
            self.weighting: nn.Module | None = weighting(num_tasks, **options)
            self.rule_options: dict[str, Any] = {}
        if method == "gradnorm" or method in GRADIENT_RULES:
            if num_tasks < 2:
                raise ValueError(f"The method {method!r} compares several tasks' gradients; this model has one task.")
            if method in GRADIENT_RULES:
                _, accepted = GRADIENT_RULES[method]
                _check_options(method, options, accepted)
                self.weighting = None
                self.representation = bool(options.pop("representation", False))
                self.rule_options = options
                GRADIENT_RULES[method][0](torch.eye(num_tasks, dtype=torch.float64), **options)  # bad values fail now
            self.shared_masks = _shared_masks(model)
            # Not a submodule: the balancer only sets the model's gradients (and is saved apart from it).
            self._parameters_by_name = {name: parameter for name, parameter in model.named_parameters() if name in self.shared_masks}
            if not any(mask.any() for mask in self.shared_masks.values()):
                raise ValueError(
                    f"The method {method!r} reads the tasks' gradients on the parameters they share, and no "
                    f"trainable parameter of this {type(model).__name__} serves more than one task."
                )
            # Per parameter, Long [R]: the task a block serves alone, -1 for a shared (or unreached) one.
            self.block_owners = {name: torch.where(uses.sum(0) == 1, uses.long().argmax(0), -1)
                                 for name, uses in model.task_dependence().items()}
            if method == "gradnorm":
                self._gradnorm_layer = _last_shared_layer(model, self.shared_masks)
            if self.representation:
                module = model.shared_representation_module()
                if module is None:
                    raise ValueError(
                        f"The representation-level variant of {method!r} needs the representation every task reads, and "
                        f"this {type(model).__name__} exposes none: drop the 'representation' option."
                    )
                self._representation: torch.Tensor | None = None
                self._hook = module.register_forward_hook(self._capture_representation)
        self.generator = torch.Generator().manual_seed(seed)
        self._losses_before: torch.Tensor | None = None  # the global losses of the last `backward`
        self._replay: tuple[nn.Module, tuple] | None = None  # what FAMO's second pass replays
        self._gradient_norms: torch.Tensor | None = None  # GradNorm's, of the last `backward`
        self.register_buffer("last_weights", torch.ones(num_tasks, dtype=torch.float64), persistent=False)
        self.register_buffer("last_cosines", torch.eye(num_tasks, dtype=torch.float64), persistent=False)
        # The epoch's statistics, saved with the run so that a resumed epoch reports the whole epoch.
        self.register_buffer("epoch_weight_sum", torch.zeros(num_tasks, dtype=torch.float64))
        self.register_buffer("epoch_cosine_sum", torch.zeros(num_tasks, num_tasks, dtype=torch.float64))
        self.register_buffer("epoch_conflicts", torch.zeros(num_tasks, num_tasks, dtype=torch.float64))
        self.register_buffer("epoch_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("epoch_gradient_steps", torch.zeros((), dtype=torch.long))

    def _capture_representation(self, module: nn.Module, inputs: Any, output: Any) -> None:
        hidden = output[0] if isinstance(output, tuple) else output
        self._representation = hidden if torch.is_grad_enabled() and hidden.requires_grad else None

    @property
    def is_gradient_method(self) -> bool:
        """Whether the method reads the tasks' gradients (a gradient rule) rather than only their losses."""
        return self.weighting is None

    @property
    def sets_gradients(self) -> bool:
        """Whether `backward` writes the gradients itself, already summed over the processes (a gradient rule on
        the parameters): the forward pass must then run under data parallelism's ``no_sync``. The loss
        weightings and the representation-level variant back-propagate a loss as usual."""
        return self.is_gradient_method and not self.representation

    @contextlib.contextmanager
    def backward_context(self, accelerator: Accelerator, model: nn.Module) -> Iterator[None]:
        """The context of the forward pass and `backward` of a step under ``accelerator``: data parallelism's
        ``no_sync`` where the balancer sets the gradients itself (`sets_gradients`). For FAMO
        (`needs_output_after`) it also records the random state the forward pass starts from, so that
        `after_step` replays that pass with the same draws (dropout masks, M³ViT's sampled tasks)."""
        if self.needs_output_after:
            self._replay = (model, _random_state(accelerator.device))
        with accelerator.no_sync(model) if self.sets_gradients else contextlib.nullcontext():
            yield

    @contextlib.contextmanager
    def _replaying(self) -> Iterator[None]:
        """Around FAMO's second forward pass: the random state of the step's own forward pass (recorded by
        `backward_context`), and the model's buffers (BatchNorm's running statistics) as they were, so that
        the pass measures the same batch again and leaves the run as if it had not happened."""
        if self._replay is None:
            yield
            return
        model, (cpu_state, device, device_state) = self._replay
        self._replay = None
        buffers = [(buffer, buffer.clone()) for buffer in model.buffers()]
        with torch.random.fork_rng(devices=[device] if device_state is not None else []):
            torch.set_rng_state(cpu_state)
            if device_state is not None:
                torch.cuda.set_rng_state(device_state, device)
            yield
        with torch.no_grad():
            for buffer, value in buffers:
                buffer.copy_(value)

    def get_extra_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)

    def _global_shares(self, output: MultiTaskOutput) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """The local task losses (``K`` scalars, each its own task's graph), each process's share of each task
        ``[K]`` (``n_k,p / N_k``, 0 where the task has no labels anywhere) and the global task losses ``[K]``
        (detached, identical on every process)."""
        missing = [name for name in self.task_names if name not in (output.task_losses or {})]
        if missing:
            raise ValueError(f"The model output has no loss for task(s) {missing}: compute every task, with labels.")
        task_losses = [output.task_losses[name] for name in self.task_names]
        losses = torch.stack(task_losses)
        finite = torch.isfinite(losses)
        if not finite.all():
            bad = [name for name, ok in zip(self.task_names, finite.tolist()) if not ok]
            raise ValueError(f"The loss of task(s) {bad} is not finite: {losses.detach().tolist()}.")
        counts = torch.stack([output.task_label_counts[name] for name in self.task_names]).to(losses)
        total_counts = reduce(counts.detach(), "sum")
        shares = torch.where(total_counts > 0, counts / total_counts.clamp_min(1), 0.0)
        global_losses = reduce((shares * losses).detach(), "sum")
        return task_losses, shares.detach(), global_losses

    def backward(
        self, output: MultiTaskOutput | Mapping[str, torch.Tensor], backward: Callable[..., None] | None = None
    ) -> torch.Tensor:
        """Set the gradient of every trainable parameter of the model from ``output``: a model output (its
        ``task_losses``, ``task_label_counts`` and ``aux_loss``), or a dict of task losses from a loop of
        one's own (each process then counts alike for every task). A loss weighting back-propagates its
        surrogate with ``backward`` (default ``Tensor.backward``; the training loop passes
        ``accelerator.backward``).

        Returns:
            The batch's loss over all processes, detached, the same on every process: the tasks' weighted
            losses plus the auxiliary loss (for logging: comparable whatever the method).
        """
        if not isinstance(output, MultiTaskOutput):
            losses = dict(output)
            output = MultiTaskOutput(task_losses=losses, task_label_counts={name: torch.ones(()) for name in losses})
        task_losses, shares, global_losses = self._global_shares(output)
        weighted = self.task_weights.to(global_losses) * global_losses
        processes = PartialState().num_processes
        aux_loss = output.aux_loss if output.aux_loss is not None and output.aux_loss.requires_grad else None
        total = weighted.sum().detach()
        if aux_loss is not None:
            total = total + reduce(aux_loss.detach(), "mean")
        self._backward(task_losses, shares, weighted, aux_loss, processes, backward or torch.Tensor.backward)
        self.epoch_weight_sum += self.last_weights.to(self.epoch_weight_sum)
        self.epoch_steps += 1
        if self.is_gradient_method:
            self.epoch_cosine_sum += self.last_cosines.to(self.epoch_cosine_sum)
            self.epoch_conflicts += (self.last_cosines < 0).to(self.epoch_conflicts)
            self.epoch_gradient_steps += 1
        return total

    def _backward(
        self,
        task_losses: list[torch.Tensor],
        shares: torch.Tensor,
        weighted: torch.Tensor,
        aux_loss: torch.Tensor | None,
        processes: int,
        backward: Callable[..., None],
    ) -> None:
        if self.weighting is not None:
            losses = torch.stack(task_losses)
            # The method's factor on each task's loss at the global losses, then one local surrogate whose
            # gradient, averaged over the processes by data parallelism, is the global one.
            scaled = weighted.detach().requires_grad_(True)
            method_parameters = [parameter for parameter in self.weighting.parameters() if parameter.requires_grad]
            value = self.weighting.combine(scaled)
            factors, *method_gradients = torch.autograd.grad(value, [scaled, *method_parameters])
            for parameter, gradient in zip(method_parameters, method_gradients):
                parameter.grad = gradient if parameter.grad is None else parameter.grad + gradient
            self.last_weights = (factors * self.task_weights.to(factors)).detach().double()
            surrogate = (factors * self.task_weights.to(losses) * shares * processes * losses).sum()
            if aux_loss is not None:
                surrogate = surrogate + aux_loss
            if self.method == "gradnorm":
                # GradNorm's norms: each task's weighted gradient of the last shared layer's shared blocks, summed
                # over the processes as the gradient methods take them. The paper's choice of layer, and cheap:
                # each task's pass reaches back through its own head only (LibMTL takes every shared parameter).
                # Taken before the backward pass, which may then free the graph as it goes.
                task_rows, shared, _ = self._global_task_gradients(task_losses, shares, None, self._gradnorm_layer, batched=False)
                self._gradient_norms = task_rows[:, shared].double().norm(dim=1)
            backward(surrogate)
            self._losses_before = weighted.detach()
            return
        if self.representation:
            self._reweigh_by_representation(task_losses, shares, aux_loss, processes, backward)
        else:
            self._combine_task_gradients(task_losses, shares, aux_loss)

    def _reweigh_by_representation(
        self,
        task_losses: list[torch.Tensor],
        shares: torch.Tensor,
        aux_loss: torch.Tensor | None,
        processes: int,
        backward: Callable[..., None],
    ) -> None:
        """The representation-level variant (MGDA-UB, Sener & Koltun 2018): the rule's coefficients from the
        tasks' gradients of the shared representation (its Gram matrix summed over the processes, whose rows
        are distinct examples), then one backward pass of the reweighted losses; each task-only block keeps
        its own task's gradient."""
        representation = self._representation
        if representation is None:
            raise RuntimeError("No shared representation was recorded: call backward on the output of a training forward pass.")
        losses = torch.stack(task_losses)
        weights = self.task_weights.to(losses)
        rows = [share * weight * loss for share, weight, loss in zip(shares, weights, task_losses)]
        (gradients,) = task_gradients(rows, [representation])
        flat = gradients.flatten(1).double()
        gram = reduce(flat @ flat.T, "sum")
        rule, _ = GRADIENT_RULES[self.method]
        alpha = rule(gram, **self.rule_options)
        silent = alpha <= COEFFICIENT_EPS
        surrogate = (alpha.to(losses) * shares * weights * processes * losses).sum()
        if aux_loss is not None:
            surrogate = surrogate + aux_loss
        backward(surrogate, retain_graph=bool(silent.any()))
        # A task-only block got α_t times its task's gradient: undo the factor, or, where α_t is 0, take its
        # gradient apart (summed over the processes like the others).
        parameters = self._parameters_by_name
        for task in silent.nonzero().flatten().tolist():
            owned = [name for name, owners in self.block_owners.items() if (owners == task).any()]
            own = torch.autograd.grad(rows[task], [parameters[name] for name in owned], retain_graph=True, allow_unused=True)
            for name, gradient in zip(owned, own):
                gradient = reduce(gradient if gradient is not None else torch.zeros_like(parameters[name]), "sum")
                self._set_owned_blocks(name, task, gradient)
        for task in (~silent).nonzero().flatten().tolist():
            for name, owners in self.block_owners.items():
                if (owners == task).any() and parameters[name].grad is not None:
                    self._set_owned_blocks(name, task, parameters[name].grad / alpha[task].item())
        self.last_weights = alpha.detach()
        self.last_cosines = gradient_cosines(gram).detach()

    def _set_owned_blocks(self, name: str, task: int, gradient: torch.Tensor) -> None:
        """Write ``gradient``'s entries of the blocks ``task`` owns into the parameter's gradient."""
        parameter = self._parameters_by_name[name]
        owners = self.block_owners[name].to(parameter.device)
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        blocks = parameter.grad.view(len(owners), -1)
        blocks[owners == task] = gradient.reshape(len(owners), -1)[owners == task].to(blocks.dtype)

    def after_step(self, forward_again: Callable[[], MultiTaskOutput] | None = None) -> None:
        """Update the method's state once the optimizer has stepped: FAMO reads the same batch's losses under
        the updated model (``forward_again()``, the step's forward pass run again, here without gradients;
        `needs_output_after`; when the step ran in `backward_context`, with that pass's random draws and with
        the model's buffers restored after), GradNorm the gradient norms of the last `backward`; the other
        methods have nothing to do (and ``forward_again`` is not called)."""
        if self.weighting is None or self.weighting.needs is None:
            return
        if self._losses_before is None:
            raise RuntimeError("after_step follows a backward: call backward(output) first.")
        if self.weighting.needs == "losses_after":
            if forward_again is None:
                raise ValueError(
                    f"{self.method!r} updates its weights from the batch's losses after the step: pass forward_again, "
                    "which runs the step's forward pass again."
                )
            with torch.no_grad(), self._replaying():
                _, _, global_after = self._global_shares(forward_again())
            self.weighting.after_step(self._losses_before, losses_after=self.task_weights.to(global_after) * global_after)
        else:
            self.weighting.after_step(self._losses_before, gradient_norms=self._gradient_norms)

    @property
    def needs_output_after(self) -> bool:
        """Whether `after_step` needs a second forward pass on the batch (FAMO)."""
        return self.weighting is not None and self.weighting.needs == "losses_after"

    def end_epoch(self) -> None:
        """Close an epoch (DWA's epoch means)."""
        if self.weighting is not None:
            self.weighting.end_epoch()

    def _global_task_gradients(
        self,
        task_losses: Sequence[torch.Tensor],
        shares: torch.Tensor,
        aux_loss: torch.Tensor | None,
        names: Sequence[str] | None = None,
        batched: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Over every trainable parameter (those ``names`` only, when given), flattened: each task's global
        weighted gradient ``[K, P]``, the mask of the shared blocks' entries ``[P]``, and the auxiliary loss's
        global gradient ``[P]`` (``None`` without one), taken as `task_gradients` takes them (``batched``).
        Each process's weighted shares are summed over the processes in one all-reduce."""
        names = list(self._parameters_by_name) if names is None else list(names)
        parameters = [self._parameters_by_name[name] for name in names]
        masks = [self.shared_masks[name] for name in names]
        rows = [share * weight * loss for share, weight, loss in zip(shares, self.task_weights.to(shares), task_losses)]
        if aux_loss is not None:
            rows.append(aux_loss / PartialState().num_processes)
        gradients = task_gradients(rows, parameters, batched=batched)
        flat = reduce(torch.cat([gradient.flatten(1) for gradient in gradients], dim=1), "sum")
        shared = torch.cat([
            mask.repeat_interleave(parameter.numel() // mask.numel()) for mask, parameter in zip(masks, parameters)
        ]).to(flat.device)
        num_tasks = len(self.task_names)
        return flat[:num_tasks], shared, flat[num_tasks] if aux_loss is not None else None

    def _combine_task_gradients(
        self, task_losses: list[torch.Tensor], shares: torch.Tensor, aux_loss: torch.Tensor | None
    ) -> None:
        task_rows, shared, aux_gradient = self._global_task_gradients(task_losses, shares, aux_loss)
        gram = task_rows[:, shared].double() @ task_rows[:, shared].double().T
        rule, _ = GRADIENT_RULES[self.method]
        options = {"generator": self.generator} if self.method == "pcgrad" else self.rule_options
        alpha = rule(gram, **options)
        # Shared entries: the rule's combination; an entry of one task: that task's gradient (the others' are 0).
        combined = torch.where(shared, alpha.to(task_rows) @ task_rows, task_rows.sum(0))
        if aux_gradient is not None:
            combined = combined + aux_gradient
        offset = 0
        for parameter in self._parameters_by_name.values():
            size = parameter.numel()
            parameter.grad = combined[offset : offset + size].view_as(parameter).to(parameter.dtype).clone()
            offset += size
        self.last_weights = alpha.detach()
        self.last_cosines = gradient_cosines(gram).detach()

    def epoch_record(self) -> dict[str, float]:
        """The epoch's statistics for the run's history, then reset: each task's mean weight
        (``task_weight/{task}``), and for the methods that read the tasks' gradients each pair's mean
        gradient cosine (``gradient_cosine/{a}|{b}``) and the conflict rate (``gradient_conflict_rate``: the
        share of the epoch's pairs and steps whose cosine was negative)."""
        record: dict[str, float] = {}
        steps = int(self.epoch_steps)
        if steps:
            for task, weight in zip(self.task_names, (self.epoch_weight_sum / steps).tolist()):
                record[f"task_weight/{task}"] = weight
        gradient_steps = int(self.epoch_gradient_steps)
        if gradient_steps:
            pairs = torch.triu_indices(len(self.task_names), len(self.task_names), offset=1)
            cosines = self.epoch_cosine_sum / gradient_steps
            for first, second in pairs.T.tolist():
                record[f"gradient_cosine/{self.task_names[first]}|{self.task_names[second]}"] = cosines[first, second].item()
            record["gradient_conflict_rate"] = (self.epoch_conflicts[pairs[0], pairs[1]].sum() / (gradient_steps * pairs.shape[1])).item()
        for buffer in (self.epoch_weight_sum, self.epoch_cosine_sum, self.epoch_conflicts, self.epoch_steps, self.epoch_gradient_steps):
            buffer.zero_()
        return record


def task_gradients(
    rows: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor], batched: bool | None = None
) -> list[torch.Tensor]:
    """The gradient of each of ``rows`` (``R`` scalars of one graph) with respect to each of ``inputs``
    (parameters, or tensors of the graph such as a representation), ``[R, *input.shape]``: with ``batched``,
    one batched backward pass (``is_grads_batched``) where the model's operations allow it, otherwise one
    pass per row; by default (``None``) batched on an accelerator and one pass per row on the CPU. An input
    a row does not reach gets zeros.

    A batched pass runs every node of the graph the rows reach once per row, in fewer and larger operations;
    a pass per row runs only the nodes its own row reaches. On the CPU the passes per row measured faster even
    where the rows share the whole graph (benchmarks/task_gradients_cost.py: the M³ViT recipe's model at 32
    canvases, 4 tasks and the auxiliary loss, 472 ms against 873 ms; the census MMoE 5.0 ms against 5.7 ms),
    the batched pass's R-fold intermediate tensors no longer fitting the caches. Pass the rows as separate scalars: the entries of one stacked
    tensor each reach the graph of every entry."""
    if batched is None:
        batched = inputs[0].device.type != "cpu"
    gradients: Sequence[torch.Tensor | None] | None = None
    if batched:
        stacked = torch.stack(list(rows))
        identity = torch.eye(len(stacked), dtype=stacked.dtype, device=stacked.device)
        try:
            gradients = torch.autograd.grad(stacked, inputs, grad_outputs=identity, is_grads_batched=True,
                                            retain_graph=True, allow_unused=True)
        except RuntimeError:  # an operation without a batching rule
            gradients = None
    if gradients is None:
        per_row = [torch.autograd.grad(row, inputs, retain_graph=True, allow_unused=True) for row in rows]
        gradients = [torch.stack([row[index] if row[index] is not None else torch.zeros_like(tensor) for row in per_row])
                     for index, tensor in enumerate(inputs)]
    return [gradient if gradient is not None else tensor.new_zeros(len(rows), *tensor.shape)
            for gradient, tensor in zip(gradients, inputs)]


def _option_names(method_class: type, skip: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name for name in inspect.signature(method_class).parameters if name not in skip)


#: The type each method option takes (a whole number is a number too; a bool is neither).
OPTION_TYPES: dict[str, type] = {
    "c": float, "rescale": int, "normalize_gram": bool, "representation": bool, "temperature": float, "seed": int,
    "lr": float, "weight_decay": float, "alpha": float, "update_from": str,
}


def _check_options(method: str, options: Mapping[str, Any], accepted: tuple[str, ...]) -> None:
    unknown = [name for name in options if name not in accepted]
    if unknown:
        raise ValueError(
            f"Unknown option {unknown[0]!r} for the loss balancing method {method!r}{closest_names(unknown[0], accepted)}; "
            f"it takes {list(accepted) or 'no options'}."
        )
    for name, value in options.items():
        expected = OPTION_TYPES[name]
        allowed = (int, float) if expected is float else (expected,)
        # A non-finite number would train to NaN (or not at all) several steps later, far from its cause.
        if (
            isinstance(value, bool) != (expected is bool)
            or not isinstance(value, allowed)
            or (expected is float and not math.isfinite(value))
        ):
            kind = {float: "a finite number", int: "a whole number", bool: "true or false", str: "a string"}[expected]
            raise ValueError(f"Option {name!r} of the loss balancing method {method!r} must be {kind}, got {value!r}.")


def _random_state(device: torch.device) -> tuple[torch.Tensor, int | None, torch.Tensor | None]:
    """torch's CPU random state, and the CUDA device's (index and state) when ``device`` is one."""
    if device.type != "cuda":
        return torch.get_rng_state(), None, None
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.get_rng_state(), index, torch.cuda.get_rng_state(index)


def _last_shared_layer(model: nn.Module, shared_masks: Mapping[str, torch.Tensor]) -> list[str]:
    """GradNorm's ``W``: the parameters with shared blocks of the last module, in the model's registration
    order (inputs to heads), that holds any (a ViT's final LayerNorm, the last level's experts)."""
    last: list[str] = []
    for module_name, module in model.named_modules():
        names = [f"{module_name}.{name}" if module_name else name for name, _ in module.named_parameters(recurse=False)]
        shared = [name for name in names if name in shared_masks and shared_masks[name].any()]
        last = shared or last
    return last


def _shared_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Per trainable parameter, Bool ``[R]``: the blocks (rows of its ``[R, -1]`` view) more than one task reaches."""
    return {name: uses.sum(0) > 1 for name, uses in model.task_dependence().items()}
