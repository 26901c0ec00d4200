"""Model outputs shared by every moezoo architecture."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class MultiTaskOutput(ModelOutput):
    """Output of a multi-task model's forward pass.

    Attributes:
        loss: Weighted sum of the task losses plus ``aux_loss``; present when labels are given.
        task_losses: Each task's unweighted loss, averaged over its present labels.
        task_label_counts: Each task's number of present labels in the batch, the denominator of its loss
            (so that a loss averaged over processes weighs each process by it).
        logits: Each computed task's logits, ``[B, num_labels]``.
        aux_loss: Sum of the model's auxiliary losses (0 for models without any). It is part of
            ``loss`` and returned separately for logging; `forward` never backpropagates it.
        router_probs: When ``output_router_probs=True``: per routing level, the gate weights
            ``[B, G, E]`` of every gate over every expert.
    """

    loss: torch.Tensor | None = None
    task_losses: dict[str, torch.Tensor] | None = None
    task_label_counts: dict[str, torch.Tensor] | None = None
    logits: dict[str, torch.Tensor] | None = None
    aux_loss: torch.Tensor | None = None
    router_probs: tuple[torch.Tensor, ...] | None = None
