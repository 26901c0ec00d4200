"""Batches at the speed of the model.

A dataset that fits in memory is turned into tensors once (`materialize`) and batched by indexing
those tensors (`TensorDataset.__getitems__`): a 1,024-row batch costs one ``index_select`` per
column instead of 1,024 row reads through Arrow. Batches are drawn by a standard seeded
`torch.utils.data.RandomSampler` inside a `torch.utils.data.BatchSampler`, which Accelerate replaces
by its seedable sampler and shards across processes, and which `accelerate.skip_first_batches`
restarts mid-epoch. A dataset too large for memory, or a streaming one, keeps the `datasets` path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset
from datasets import IterableDataset as HFIterableDataset
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Sampler, SequentialSampler, default_collate

from .lengths import longest_first, token_lengths, trim_padding

#: Arrow tables up to this size (bytes) are materialised as tensors by default.
DEFAULT_IN_MEMORY_LIMIT = 4 * 2**30


class TensorDataset(torch.utils.data.Dataset):
    """Columns of equal length held as tensors; a batch of indices is one ``index_select`` per column.

    `torch.utils.data.DataLoader` calls `__getitems__` with a whole batch of indices, and the result
    is already the batch (use `collate_batch` as the loader's ``collate_fn``).

    Args:
        columns: Column name -> tensor ``[N, ...]``, every tensor with the same ``N``.
    """

    def __init__(self, columns: Mapping[str, torch.Tensor]) -> None:
        if not columns:
            raise ValueError("A TensorDataset needs at least one column.")
        lengths = {name: len(value) for name, value in columns.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"Columns must have the same number of rows, got {lengths}.")
        self.columns = dict(columns)
        self.num_rows = next(iter(lengths.values()))
        self.column_names = list(self.columns)

    def __len__(self) -> int:
        return self.num_rows

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {name: value[index] for name, value in self.columns.items()}

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return {name: value.index_select(0, index) for name, value in self.columns.items()}


#: Columns named ``labels.{task}`` hold one task's labels (a dense task's per-pixel map, say); a batch
#: passes them to the model as one mapping, ``labels={task: ...}``.
TASK_LABEL_PREFIX = "labels."


def nest_task_labels(columns: Mapping[str, Any]) -> dict[str, Any]:
    """A batch (or a dataset's columns) with its ``labels.{task}`` columns gathered into one ``labels``
    mapping from task name to labels, the form that models with per-task label shapes (such as
    `moezoo.M3ViTModel`'s dense tasks) take. Columns without the prefix are passed through.

    Raises:
        ValueError: the columns hold both ``labels`` and ``labels.{task}`` columns.
    """
    task_columns = [name for name in columns if name.startswith(TASK_LABEL_PREFIX)]
    if not task_columns:
        return dict(columns)
    if "labels" in columns:
        raise ValueError(
            f"The data has both a 'labels' column and per-task label columns {task_columns}; keep one form."
        )
    nested = {name: value for name, value in columns.items() if not name.startswith(TASK_LABEL_PREFIX)}
    nested["labels"] = {name[len(TASK_LABEL_PREFIX) :]: columns[name] for name in task_columns}
    return nested


def collate_batch(batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The ``collate_fn`` of a `TensorDataset` loader: `TensorDataset.__getitems__` already returns the
    batch; token columns are cut to the batch's longest example (`moezoo.training.lengths.trim_padding`)
    and per-task label columns are nested (`nest_task_labels`)."""
    return nest_task_labels(trim_padding(batch))


def collate_rows(rows: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """The ``collate_fn`` of a loader that reads rows through ``datasets``: PyTorch's default collation,
    then as `collate_batch`."""
    return collate_batch(default_collate(rows))


def materialize(dataset: Dataset, columns: Iterable[str] | None = None) -> TensorDataset:
    """Read a `datasets.Dataset` into memory as tensors.

    One call reads the rows as an Arrow table (``with_format("arrow")[:]``, which also applies any
    ``select`` / ``shuffle`` of the dataset); each column of numbers, or of equally long (nested) lists
    of numbers, then becomes one tensor straight from its flat Arrow buffer. (datasets' own torch
    formatter builds the same tensors row by row: 0.5 s for Census-Income, 17 s for MultiMNIST.)

    Args:
        dataset: A `datasets.Dataset` whose columns hold numbers or fixed-size arrays of numbers.
        columns: The columns to keep (default: all).

    Raises:
        KeyError: a requested column does not exist.
        ValueError: a column is not numeric, has missing rows, or its rows differ in shape (pad it
            first, or read batches through datasets with ``in_memory=False``).
    """
    names = list(columns) if columns is not None else list(dataset.column_names)
    missing = [name for name in names if name not in dataset.column_names]
    if missing:
        raise KeyError(f"Column(s) {missing} are not in the dataset; it has {dataset.column_names}.")
    table = dataset.with_format("arrow", columns=names)[:]
    return TensorDataset({name: _column_to_tensor(name, table.column(name)) for name in names})


def _column_to_tensor(name: str, column: pa.ChunkedArray) -> torch.Tensor:
    array = column.combine_chunks()
    shape = [len(array)]
    while pa.types.is_list(array.type) or pa.types.is_large_list(array.type) or pa.types.is_fixed_size_list(array.type):
        if array.null_count:
            raise ValueError(f"Column {name!r} has {array.null_count} missing row(s); fill them before training.")
        lengths = np.diff(array.offsets.to_numpy()) if not pa.types.is_fixed_size_list(array.type) else None
        width = array.type.list_size if lengths is None else (int(lengths[0]) if len(lengths) else 0)
        if lengths is not None and (lengths != width).any():
            raise ValueError(
                f"Column {name!r} cannot be held as one tensor: its rows have different lengths "
                f"({sorted(set(lengths.tolist()))[:5]}...). Pad it to a fixed size, or pass in_memory=False to "
                "read batches through datasets."
            )
        shape.append(width)
        array = array.flatten()
    if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_boolean(array.type)):
        raise ValueError(
            f"Column {name!r} holds {array.type} values, not numbers: encode it (e.g. with the processor) before training."
        )
    if array.null_count:
        raise ValueError(f"Column {name!r} has {array.null_count} missing value(s); fill them before training.")
    # A copy: the tensors must not share (read-only) Arrow memory.
    return torch.from_numpy(array.to_numpy(zero_copy_only=False, writable=True).reshape(shape))


def fits_in_memory(dataset: Any, limit: int = DEFAULT_IN_MEMORY_LIMIT) -> bool:
    """Whether ``dataset`` should be materialised: a `TensorDataset` already is; a `datasets.Dataset`
    is when its Arrow data is at most ``limit`` bytes; a streaming dataset never is."""
    if isinstance(dataset, TensorDataset):
        return True
    if isinstance(dataset, HFIterableDataset) or not isinstance(dataset, Dataset):
        return False
    return dataset.data.nbytes <= limit


def make_dataloader(
    dataset: Dataset | HFIterableDataset | TensorDataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    drop_last: bool = False,
    in_memory: bool | None = None,
    sampler: Sampler[int] | Sequence[int] | None = None,
) -> DataLoader:
    """A `DataLoader` over a processed dataset.

    Args:
        dataset: A `TensorDataset`, or a `datasets.Dataset` / streaming `datasets.IterableDataset`
            whose columns are the model's inputs and ``labels``.
        batch_size: Examples per batch (per process, once Accelerate prepares the loader).
        shuffle: Draw batches in a random order, seeded by ``seed`` (re-drawn every epoch by
            Accelerate's seedable sampler).
        seed: Seed of the order.
        drop_last: Drop the last batch when it is incomplete.
        in_memory: ``True``: materialise the dataset as tensors (`materialize`); ``False``: read
            batches through ``datasets``; ``None``: materialise whatever `fits_in_memory`.
        sampler: Draw example indices from this sampler (such as a
            `moezoo.training.mixing.TaskMixingSampler`), or in this order (a sequence of indices), instead
            of a plain random or sequential order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    # Every iteration of a DataLoader draws a base seed from its generator, or from the global RNG when
    # it has none: that draw would shift dropout after a resume, whose iteration starts mid-epoch.
    loader_generator = torch.Generator().manual_seed(seed)
    if isinstance(dataset, HFIterableDataset):
        if sampler is not None:
            raise ValueError("A streaming dataset is read in its own order; it takes no sampler.")
        if in_memory:
            raise ValueError("A streaming dataset cannot be materialised in memory; pass in_memory=False or None.")
        if shuffle:
            dataset = dataset.shuffle(seed=seed)
        return DataLoader(
            dataset.with_format("torch"), batch_size=batch_size, drop_last=drop_last, generator=loader_generator,
            collate_fn=collate_rows,
        )
    if in_memory is None:
        in_memory = fits_in_memory(dataset)
    sampler_generator = torch.Generator().manual_seed(seed)
    if in_memory:
        if not isinstance(dataset, TensorDataset):
            dataset = materialize(dataset)
        if sampler is None:
            sampler = _default_sampler(dataset, shuffle, sampler_generator)
        return DataLoader(
            dataset,
            batch_sampler=BatchSampler(sampler, batch_size, drop_last),
            collate_fn=collate_batch,
            generator=loader_generator,
        )
    if isinstance(dataset, TensorDataset):
        raise ValueError("A TensorDataset is already in memory; in_memory=False does not apply to it.")
    if sampler is None:
        sampler = _default_sampler(dataset, shuffle, sampler_generator)
    return DataLoader(
        dataset.with_format("torch"), batch_size=batch_size, sampler=sampler, drop_last=drop_last,
        generator=loader_generator, collate_fn=collate_rows,
    )


def make_eval_dataloader(
    dataset: Dataset | HFIterableDataset | TensorDataset, batch_size: int, in_memory: bool | None = None
) -> DataLoader:
    """A `make_dataloader` for evaluation: every example once, in a fixed order. Token data (an
    ``attention_mask`` column) is read longest first (`moezoo.training.lengths.longest_first`), so that
    each batch holds examples of similar length and is trimmed to them: a GLUE-5 evaluation computes a
    fraction of the padding it would in the data's order. Metrics do not depend on the order."""
    order = None
    if not isinstance(dataset, HFIterableDataset) and "attention_mask" in _column_names(dataset):
        order = longest_first(token_lengths(column_tensor(dataset, "attention_mask", "evaluation")))
    return make_dataloader(dataset, batch_size, shuffle=False, seed=0, in_memory=in_memory, sampler=order)


#: What each column an option reads is, for its error message.
COLUMN_MEANINGS = {
    "task_ids": "mixed-task data: a 'task_ids' column (see moezoo.training.mixing.concatenate_tasks)",
    "attention_mask": "token data: an 'attention_mask' column",
}


def column_tensor(dataset: Dataset | HFIterableDataset | TensorDataset, name: str, option: str) -> torch.Tensor:
    """Column ``name`` of an in-memory or ``datasets`` dataset as a tensor, which ``option`` needs.

    Raises:
        ValueError: the dataset is streaming (it has no index), or has no column ``name``.
    """
    if isinstance(dataset, HFIterableDataset):
        raise ValueError(f"{option} reorders examples: it needs a dataset with an index, not a streaming one.")
    columns = _column_names(dataset)
    if name not in columns:
        raise ValueError(f"{option} needs {COLUMN_MEANINGS.get(name, repr(name))}; the data has {sorted(columns)}.")
    return (dataset if isinstance(dataset, TensorDataset) else materialize(dataset, [name])).columns[name]


def _column_names(dataset: Any) -> list[str]:
    return list(dataset.columns) if isinstance(dataset, TensorDataset) else list(getattr(dataset, "column_names", None) or [])


def _default_sampler(dataset: Any, shuffle: bool, generator: torch.Generator) -> Sampler[int]:
    # A plain RandomSampler: Accelerate swaps it for its seedable sampler, which reseeds every epoch.
    return RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
