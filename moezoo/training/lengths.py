"""Batches the length of their content: padding trimmed per batch, and examples grouped by length.

Token data is stored padded to the run's maximum length (so that it can be held as tensors and batched
by index, `moezoo.training.data`). `trim_padding` then cuts each batch's token columns to its own longest
example: the trailing columns that are padding in every row. That alone saves little when batches mix
short and long examples (a GLUE-5 batch of 32 nearly always holds one long RTE or MRPC pair), so
`LengthGroupedSampler` also reorders the training indices, as transformers' ``group_by_length`` does:
it takes the indices of another sampler (a `moezoo.training.mixing.TaskMixingSampler`, whose task
frequencies it keeps, or a seeded shuffle) in windows of ``group_size`` batches, sorts each window by
length, cuts it into batches and shuffles the batches' order. Every index drawn is kept, so the task
mixing of an epoch is unchanged; only which examples share a batch changes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sized
from typing import Any

import torch
from torch.utils.data import Sampler

#: Columns that hold one value per token, trimmed with the attention mask.
TOKEN_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "special_tokens_mask")
#: Batches per window of `LengthGroupedSampler` (transformers' ``group_by_length`` uses 50 too).
DEFAULT_GROUP_SIZE = 50


def trim_padding(batch: Mapping[str, Any]) -> dict[str, Any]:
    """``batch`` with its token columns (`TOKEN_COLUMNS`) cut after the last position that is a real token
    (``attention_mask`` 1) in some row. Only trailing padding is cut (right padding): the real tokens keep
    their positions, so a model's outputs for them are unchanged. A batch without an attention mask is
    returned as it is."""
    mask = batch.get("attention_mask")
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or mask.shape[1] == 0:
        return dict(batch)
    used = torch.nonzero(mask.any(0)).flatten()
    length = int(used[-1]) + 1 if len(used) else 1
    if length == mask.shape[1]:
        return dict(batch)
    return {
        name: value[:, :length] if name in TOKEN_COLUMNS and isinstance(value, torch.Tensor) and value.dim() >= 2 else value
        for name, value in batch.items()
    }


def token_lengths(attention_mask: torch.Tensor) -> torch.Tensor:
    """Each example's length in tokens (``[N]``) from its attention mask ``[N, S]``."""
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be [N, S], got shape {list(attention_mask.shape)}.")
    return attention_mask.long().sum(1)


class LengthGroupedSampler(Sampler[int]):
    """Indices in an order where every run of ``batch_size`` indices holds examples of similar length (see
    the module's docstring). Use it inside a ``BatchSampler`` of the same ``batch_size``.

    Args:
        lengths: Each example's length ``[N]`` (`token_lengths`).
        batch_size: Examples per batch (per process: Accelerate hands whole batches to the processes).
        sampler: The indices to regroup (a `moezoo.training.mixing.TaskMixingSampler`, say); default: every
            example once per epoch in a shuffled order.
        group_size: Batches per window: larger windows give batches of closer lengths, smaller ones keep
            more of the sampler's order.
        seed: Seed of the shuffles; epoch ``e`` uses ``seed + e`` (`set_epoch`, which the inner sampler also
            receives), so an epoch's order is the same after a resume.

    Within each window the last, possibly incomplete, batch of the epoch stays last, so that the batches a
    ``BatchSampler`` cuts are the groups formed here.
    """

    def __init__(
        self,
        lengths: torch.Tensor,
        batch_size: int,
        sampler: Sampler[int] | None = None,
        group_size: int = DEFAULT_GROUP_SIZE,
        seed: int = 0,
    ) -> None:
        lengths = torch.as_tensor(lengths)
        if lengths.dim() != 1 or lengths.is_floating_point():
            raise ValueError(f"lengths must be an integer tensor [N], got {lengths.dtype} {list(lengths.shape)}.")
        if batch_size < 1 or group_size < 1:
            raise ValueError(f"batch_size and group_size must be positive, got {batch_size} and {group_size}.")
        if sampler is not None and isinstance(sampler, Sized) and len(sampler) == 0:
            raise ValueError("The sampler to group by length draws no index.")
        self.lengths = lengths.long()
        self.batch_size = batch_size
        self.sampler = sampler
        self.group_size = group_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler) if self.sampler is not None else len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.sampler is None:
            indices = torch.randperm(len(self.lengths), generator=generator)
        else:
            indices = torch.as_tensor(list(self.sampler), dtype=torch.long)
        window = self.batch_size * self.group_size
        for start in range(0, len(indices), window):
            group = indices[start : start + window]
            # Longest first within the window (stable: equal lengths keep the sampler's order).
            group = group[torch.sort(self.lengths[group], descending=True, stable=True).indices]
            batches = list(torch.split(group, self.batch_size))
            incomplete = batches.pop() if len(batches[-1]) < self.batch_size else None
            for position in torch.randperm(len(batches), generator=generator).tolist():
                yield from batches[position].tolist()
            if incomplete is not None:
                yield from incomplete.tolist()


def longest_first(lengths: torch.Tensor) -> list[int]:
    """The indices of ``lengths`` (``[N]``) from the longest example to the shortest (equal lengths keep
    their order). An evaluation read in this order batches examples of similar length, so that trimming
    (`trim_padding`) cuts nearly all the padding; the metrics do not depend on the order. The longest batch
    comes first, so a batch too large for memory fails at once."""
    return torch.sort(torch.as_tensor(lengths), descending=True, stable=True).indices.tolist()


def padding_share(lengths: torch.Tensor, batches: list[torch.Tensor], padded_length: int | None = None) -> float:
    """The share of the token positions computed that are padding, when each batch of ``batches`` (index
    tensors) is padded to its longest example, or to ``padded_length`` when given."""
    real = padded = 0
    for batch in batches:
        batch_lengths = lengths[batch]
        width = padded_length if padded_length is not None else int(batch_lengths.max())
        real += int(batch_lengths.sum())
        padded += width * len(batch)
    return 1.0 - real / padded if padded else 0.0
