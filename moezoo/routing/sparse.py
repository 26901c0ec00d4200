"""Sparse, per-token routing: a top-k gate (V-MoE style) and the mixture that runs only the experts it
chooses.

A `TopKGate` scores every token against every expert, keeps the k best, and returns them with their
weights (`TopKRouting`); `ExpertBank.forward_sparse` then computes each token's k experts only, on the
same ``[E, out, in]`` parameters as the dense path. `SparseMoE` puts the two together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .experts import ExpertBank, sort_by_expert
from .gates import LinearGate

#: Default weight of the load-balancing loss (cv² of importance plus cv² of load), as in M³ViT.
BALANCE_LOSS_WEIGHT = 0.01


@dataclass
class TopKRouting:
    """What a `TopKGate` decided for ``N`` tokens.

    Attributes:
        expert_indices: ``[N, k]`` the experts each token goes to, best first.
        expert_weights: ``[N, k]`` their mixture weights (renormalised to sum to 1 when the gate says so).
        probs: ``[N, E]`` the softmax over every expert the selection was made from.
        kept: ``[N, k]`` bool, which (token, expert) pairs fit in the experts' capacity; ``None`` when
            there is no capacity limit (every pair is kept).
        aux_loss: The weighted load-balancing loss (training mode only; else ``None``).
    """

    expert_indices: torch.Tensor
    expert_weights: torch.Tensor
    probs: torch.Tensor
    kept: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None


def cv_squared(values: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """The squared coefficient of variation along the last axis, ``Var(x) / (mean(x)^2 + eps)``, with the
    population variance (Shazeer et al., 2017): 0 for a perfectly even distribution."""
    mean = values.mean(dim=-1)
    variance = values.var(dim=-1, unbiased=False)
    return variance / (mean**2 + eps)


def load_balancing_loss(importance: torch.Tensor, load: torch.Tensor, groups_present: torch.Tensor) -> torch.Tensor:
    """``cv²(importance) + cv²(load)``, computed per group of tokens (rows of ``[groups, E]``) and averaged
    over the groups that had tokens (``groups_present``, bool ``[groups]``)."""
    per_group = cv_squared(importance) + cv_squared(load)
    return per_group[groups_present].mean()


class TopKGate(LinearGate):
    """``num_gates`` top-k gates over ``num_experts`` experts (V-MoE style), one chosen per token.

    For a token ``x`` routed by gate ``g``: ``p = softmax(W_g x + b_g + eps)`` over all (available)
    experts, with ``eps ~ N(0, noise_std^2)`` in training only; the ``k`` largest entries of ``p`` are
    kept, optionally renormalised to sum to 1. In training the gate also returns
    ``balance_loss_weight * (cv²(importance) + cv²(load))``: importance is each expert's summed
    probability over the tokens, load the number of tokens sent to it (with noise, its smooth estimate
    ``sum_n P(expert in top-k)`` of Shazeer et al., 2017, which has a gradient). Both are taken within each
    group of tokens (``groups``, e.g. one per task) and the losses averaged over the groups present.

    An optional capacity limits each expert to ``ceil(capacity_factor * N * k / E)`` of the ``N*k``
    (token, expert) pairs of a call, in token order; the pairs beyond it are marked not kept.

    Args:
        input_size: Size of the routing input.
        num_experts: Number of experts ``E``.
        num_experts_per_tok: ``k``.
        num_gates: Number of gates ``G`` (e.g. one per task).
        noise_std: Standard deviation of the training noise on the logits; ``None`` for ``1/E`` (V-MoE),
            0 for none.
        normalize_top_k: Renormalise the kept weights to sum to 1.
        capacity_factor: ``None`` (default) for no capacity limit.
        balance_loss_weight: Weight of the load-balancing loss.
        mask: Optional bool ``[G, E]`` availability mask; every gate must have at least ``k`` experts.
    """

    def __init__(
        self,
        input_size: int,
        num_experts: int,
        num_experts_per_tok: int = 4,
        num_gates: int = 1,
        noise_std: float | None = None,
        normalize_top_k: bool = True,
        capacity_factor: float | None = None,
        balance_loss_weight: float = BALANCE_LOSS_WEIGHT,
        mask: torch.Tensor | None = None,
    ) -> None:
        super().__init__(input_size, num_experts, num_gates, mask)
        available = int(self.mask.sum(dim=1).min())
        if not 1 <= num_experts_per_tok <= available:
            raise ValueError(
                f"num_experts_per_tok must be between 1 and the experts available to every gate ({available}), "
                f"got {num_experts_per_tok}."
            )
        noise_std = 1.0 / num_experts if noise_std is None else noise_std
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}.")
        if capacity_factor is not None and capacity_factor <= 0:
            raise ValueError(f"capacity_factor must be positive (or None for no limit), got {capacity_factor}.")
        if balance_loss_weight < 0:
            raise ValueError(f"balance_loss_weight must be >= 0, got {balance_loss_weight}.")
        self.num_experts_per_tok = num_experts_per_tok
        self.noise_std = noise_std
        self.normalize_top_k = normalize_top_k
        self.capacity_factor = capacity_factor
        self.balance_loss_weight = balance_loss_weight

    def gate_logits(self, inputs: torch.Tensor, gate_ids: torch.Tensor | int | None = None) -> torch.Tensor:
        """``[N, E]`` logits of each token under its gate (``gate_ids``: ``[N]``, one gate for all, or
        ``None`` for gate 0), with unavailable experts at ``-inf``."""
        if inputs.dim() != 2 or inputs.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__} expects [tokens, {self.input_size}] inputs, got {list(inputs.shape)}.")
        if gate_ids is None or isinstance(gate_ids, int):
            gate = gate_ids or 0
            if not 0 <= gate < self.num_gates:
                raise ValueError(f"Gate {gate} does not exist; this gate has {self.num_gates}.")
            logits = F.linear(inputs, self.weight[gate], self.bias[gate])
            return logits.masked_fill(~self.mask[gate], float("-inf")) if self.is_masked else logits
        if gate_ids.shape != inputs.shape[:1]:
            raise ValueError(f"gate_ids must be [tokens={inputs.shape[0]}], got {list(gate_ids.shape)}.")
        if self.num_gates == 1:
            logits = F.linear(inputs, self.weight[0], self.bias[0])
        else:
            # Every gate's logits in one GEMM, then each token's own: G is small, a sort by gate costs more.
            all_logits = F.linear(inputs, self.weight.flatten(0, 1), self.bias.flatten())
            all_logits = all_logits.view(-1, self.num_gates, self.num_experts)
            logits = all_logits.gather(1, gate_ids.view(-1, 1, 1).expand(-1, 1, self.num_experts)).squeeze(1)
        return logits.masked_fill(~self.mask[gate_ids], float("-inf")) if self.is_masked else logits

    def forward(
        self,
        inputs: torch.Tensor,
        gate_ids: torch.Tensor | int | None = None,
        groups: torch.Tensor | None = None,
        num_groups: int | None = None,
    ) -> TopKRouting:
        """Route ``inputs`` ``[N, d]``.

        Args:
            inputs: The routing input of each token.
            gate_ids: ``[N]`` the gate of each token, an int for one gate for all, or ``None`` (gate 0).
            groups: ``[N]`` group of each token for the balance loss (default: ``gate_ids`` when it is a
                tensor, else one group).
            num_groups: How many groups there can be (default: ``num_gates``).
        """
        clean_logits = self.gate_logits(inputs, gate_ids)
        add_noise = self.training and self.noise_std > 0
        logits = clean_logits + torch.randn_like(clean_logits) * self.noise_std if add_noise else clean_logits
        probs = torch.softmax(logits, dim=-1)
        top_probs, expert_indices = probs.topk(self.num_experts_per_tok, dim=-1)
        expert_weights = top_probs / top_probs.sum(dim=-1, keepdim=True) if self.normalize_top_k else top_probs
        kept = self._within_capacity(expert_indices) if self.capacity_factor is not None else None

        aux_loss = None
        if self.training:
            if groups is None:
                groups = gate_ids if isinstance(gate_ids, torch.Tensor) else None
            num_groups = num_groups or self.num_gates
            load = self._smooth_load(clean_logits, logits) if add_noise else self._token_counts(expert_indices, kept)
            importance = self._per_group(probs, groups, num_groups)
            load = self._per_group(load, groups, num_groups)
            present = self._per_group(torch.ones_like(probs[:, :1]), groups, num_groups).squeeze(1) > 0
            aux_loss = self.balance_loss_weight * load_balancing_loss(importance, load, present)
        return TopKRouting(expert_indices, expert_weights, probs, kept, aux_loss)

    def _within_capacity(self, expert_indices: torch.Tensor) -> torch.Tensor:
        num_tokens, k = expert_indices.shape
        capacity = math.ceil(self.capacity_factor * num_tokens * k / self.num_experts)
        flat = expert_indices.reshape(-1)
        order, counts = sort_by_expert(flat, self.num_experts)  # token order within each expert
        starts = torch.cumsum(counts, 0) - counts
        position = torch.empty_like(flat)
        position[order] = torch.arange(flat.numel(), device=flat.device) - starts[flat[order]]
        return (position < capacity).view(num_tokens, k)

    def _token_counts(self, expert_indices: torch.Tensor, kept: torch.Tensor | None) -> torch.Tensor:
        """``[N, E]``: 1 where a token is sent to an expert (and kept)."""
        sent = torch.zeros(expert_indices.shape[0], self.num_experts, device=expert_indices.device)
        values = kept.float() if kept is not None else torch.ones(expert_indices.shape, device=expert_indices.device)
        return sent.scatter_(1, expert_indices, values)

    def _smooth_load(self, clean_logits: torch.Tensor, noisy_logits: torch.Tensor) -> torch.Tensor:
        """``[N, E]``: the probability that each expert is in the token's top k, were the noise drawn
        again for that expert alone (Shazeer et al., 2017): a differentiable stand-in for the count."""
        k = self.num_experts_per_tok
        if k == self.num_experts:
            return torch.ones_like(clean_logits)
        top = noisy_logits.topk(k + 1, dim=-1).values
        # An expert in the top k must beat the (k+1)-th other logit; one outside it, the k-th.
        threshold_if_in, threshold_if_out = top[:, k : k + 1], top[:, k - 1 : k]
        is_in = noisy_logits > threshold_if_in
        normal = torch.distributions.Normal(clean_logits.new_tensor(0.0), clean_logits.new_tensor(self.noise_std))
        return torch.where(
            is_in, normal.cdf(clean_logits - threshold_if_in), normal.cdf(clean_logits - threshold_if_out)
        )

    @staticmethod
    def _per_group(values: torch.Tensor, groups: torch.Tensor | None, num_groups: int) -> torch.Tensor:
        """Sum ``[N, E]`` per group of tokens: ``[num_groups, E]`` (one row when ``groups`` is ``None``)."""
        if groups is None:
            return values.sum(dim=0, keepdim=True)
        return values.new_zeros(num_groups, values.shape[1]).index_add(0, groups, values)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, num_experts_per_tok={self.num_experts_per_tok}, noise_std={self.noise_std}, "
            f"normalize_top_k={self.normalize_top_k}, capacity_factor={self.capacity_factor}"
        )


@dataclass
class SparseMoEOutput:
    """What a `SparseMoE` returns: the mixed expert outputs ``[N, out]`` and the routing behind them."""

    hidden_states: torch.Tensor
    routing: TopKRouting


class SparseMoE(nn.Module):
    """A top-k routed mixture of experts: a `TopKGate` and an `ExpertBank` that runs only the chosen
    experts of each token (`ExpertBank.forward_sparse`).

    Args:
        input_size: Size ``d`` of each token.
        num_experts: ``E``.
        expert_hidden_sizes: The experts' layer sizes; the last one is the output size.
        num_experts_per_tok: ``k``.
        num_gates: Gates to choose from per token (one per task for task-routed layers).
        gate_input_size: Size of the gate's input when it is not the token itself (e.g. the token and a
            task embedding side by side); default ``input_size``.
        activation: The experts' activation.
        output_activation: Whether the activation follows the experts' last layer.
        gate_kwargs: `TopKGate` settings (``noise_std``, ``normalize_top_k``, ``capacity_factor``,
            ``balance_loss_weight``, ``mask``).
    """

    def __init__(
        self,
        input_size: int,
        num_experts: int,
        expert_hidden_sizes: list[int],
        num_experts_per_tok: int = 4,
        num_gates: int = 1,
        gate_input_size: int | None = None,
        activation: str = "gelu",
        output_activation: bool = False,
        **gate_kwargs,
    ) -> None:
        super().__init__()
        self.gate = TopKGate(gate_input_size or input_size, num_experts, num_experts_per_tok, num_gates, **gate_kwargs)
        self.experts = ExpertBank(
            num_experts, input_size, expert_hidden_sizes, activation=activation, output_activation=output_activation
        )

    def forward(
        self,
        inputs: torch.Tensor,
        gate_inputs: torch.Tensor | None = None,
        gate_ids: torch.Tensor | int | None = None,
        groups: torch.Tensor | None = None,
        num_groups: int | None = None,
    ) -> SparseMoEOutput:
        """``inputs`` ``[N, d]`` -> `SparseMoEOutput` (``hidden_states`` ``[N, out]``); the gate reads
        ``gate_inputs`` when given, else ``inputs`` (see `TopKGate.forward` for the rest)."""
        routing = self.gate(inputs if gate_inputs is None else gate_inputs, gate_ids, groups, num_groups)
        hidden = self.experts.forward_sparse(inputs, routing.expert_indices, routing.expert_weights, routing.kept)
        return SparseMoEOutput(hidden, routing)
