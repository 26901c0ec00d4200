"""Synthetic multi-task data whose tasks are built from known experts (DSelect-k's expert-selection test).

Ground-truth experts ``f_1 .. f_n`` are random tanh networks, expert ``i`` reading its own block of
the input features. Task ``t`` draws a subset ``S_t`` of ``k`` of them and a readout ``u_t``; its
target is ``u_t . mean_{i in S_t} f_i(x)``, standardised, plus Gaussian noise. A model given the same (frozen) experts fits the tasks exactly when task ``t``'s gate
puts weight ``1/k`` on each expert of ``S_t`` and none elsewhere, so a trained gate can be checked
against ``S_t``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from datasets import Dataset, DatasetDict

from ..routing import ExpertBank


@dataclass
class ExpertSelectionProblem:
    """A synthetic expert-selection problem.

    Attributes:
        dataset: ``train`` / ``validation`` / ``test`` splits with columns ``inputs_embeds`` ``[d]`` and
            ``labels`` ``[T]`` (one regression target per task), in torch format.
        experts: The ground-truth experts (an `ExpertBank`, parameters frozen).
        task_experts: ``S_t`` for each task: the sorted indices of the experts its target uses.
    """

    dataset: DatasetDict
    experts: ExpertBank
    task_experts: list[list[int]]


@torch.no_grad()
def make_expert_selection_problem(
    num_experts: int = 16,
    num_tasks: int = 8,
    experts_per_task: int = 2,
    input_size: int = 16,
    expert_hidden_sizes: Sequence[int] = (8, 1),
    expert_activation: str = "tanh",
    split_sizes: tuple[int, int, int] = (20_000, 5_000, 5_000),
    noise_std: float = 0.01,
    seed: int = 0,
) -> ExpertSelectionProblem:
    """Build the problem described in the module docstring; everything is drawn from ``seed``."""
    if input_size < num_experts:
        raise ValueError(f"input_size ({input_size}) must be at least num_experts ({num_experts}): each expert reads its own block.")
    if not 1 <= experts_per_task <= num_experts:
        raise ValueError(f"experts_per_task must be in [1, num_experts={num_experts}], got {experts_per_task}.")
    generator = torch.Generator().manual_seed(seed)
    experts = ExpertBank(num_experts, input_size, list(expert_hidden_sizes), activation=expert_activation)
    # Expert e reads only its own block of input features, so that the experts' outputs are
    # independent and a task's target is correlated with its own experts only.
    block = input_size // num_experts
    fan_ins = [block, *list(expert_hidden_sizes)[:-1]]
    for layer, fan_in in zip(experts.layers, fan_ins):
        # Unit-variance pre-activations, so tanh experts are neither linear nor saturated.
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) / fan_in**0.5)
        layer.bias.copy_(0.5 * torch.randn(layer.bias.shape, generator=generator))
    first = experts.layers[0].weight  # [E, h, d]
    own_block = torch.zeros(num_experts, 1, input_size)
    for expert in range(num_experts):
        own_block[expert, 0, expert * block : (expert + 1) * block] = 1.0
    first.mul_(own_block)
    experts.requires_grad_(False)
    task_experts = [
        sorted(torch.randperm(num_experts, generator=generator)[:experts_per_task].tolist()) for _ in range(num_tasks)
    ]
    readouts = torch.randn(num_tasks, experts.output_size, generator=generator)

    def targets(inputs: torch.Tensor) -> torch.Tensor:
        outputs = experts(inputs)  # [N, E, h]
        columns = [outputs[:, subset].mean(dim=1) @ readouts[task] for task, subset in enumerate(task_experts)]
        return torch.stack(columns, dim=1)

    total = sum(split_sizes)
    inputs = torch.randn(total, input_size, generator=generator)
    clean = targets(inputs)
    # Standardise with the training split's statistics (rescaling a readout keeps the optimal gate).
    train_size = split_sizes[0]
    clean = (clean - clean[:train_size].mean(dim=0)) / clean[:train_size].std(dim=0)
    labels = clean + noise_std * torch.randn(clean.shape, generator=generator)

    splits = {}
    start = 0
    for name, size in zip(("train", "validation", "test"), split_sizes):
        part = slice(start, start + size)
        splits[name] = Dataset.from_dict({"inputs_embeds": inputs[part].numpy(), "labels": labels[part].numpy()})
        start += size
    dataset = DatasetDict(splits).with_format("torch")
    return ExpertSelectionProblem(dataset=dataset, experts=experts, task_experts=task_experts)
