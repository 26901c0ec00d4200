"""Mixed-task data: examples that each belong to one task, and a sampler that mixes the tasks.

`concatenate_tasks` joins one dataset per task into one, with a ``task_ids`` column and a label
matrix in which each example holds its own task's label (the others missing). `TaskMixingSampler`
draws example indices with task frequencies

- ``proportional``: every example once per epoch, in a random order (tasks in proportion to their size);
- ``temperature``: task ``t`` with probability ``n_t^(1/T) / sum_s n_s^(1/T)`` (T = 1 is proportional,
  T -> infinity uniform);
- ``uniform``: every task equally often,

so a batch holds several tasks. It is an ordinary index sampler: a `torch.utils.data.BatchSampler`
groups its indices, Accelerate shards those batches across processes, and ``set_epoch`` reseeds it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
from datasets import Dataset, concatenate_datasets
from torch.utils.data import Sampler

from ..suggestions import closest_names
from ..tasks import IGNORE_INDEX, TaskSpec, parse_tasks

TASK_MIXING = ("proportional", "temperature", "uniform")


def task_sampling_probabilities(sizes: Sequence[int], mixing: str, temperature: float = 2.0) -> torch.Tensor:
    """The probability of drawing each task: ``n_t / N`` (proportional), ``n_t^(1/T)`` normalised
    (temperature) or ``1 / num_tasks`` (uniform). Tasks with no example get 0."""
    if mixing not in TASK_MIXING:
        raise ValueError(f"Unknown task mixing {mixing!r}{closest_names(mixing, TASK_MIXING)}; choose one of {TASK_MIXING}.")
    if not temperature > 0:
        raise ValueError(f"The mixing temperature must be positive, got {temperature}.")
    counts = torch.as_tensor(sizes, dtype=torch.float64)
    if counts.numel() == 0 or not bool((counts > 0).any()):
        raise ValueError(f"Task mixing needs at least one task with examples, got sizes {list(sizes)}.")
    present = counts > 0
    if mixing == "proportional":
        weights = counts
    elif mixing == "temperature":
        weights = torch.where(present, counts.clamp_min(1) ** (1.0 / temperature), 0.0)
    else:
        weights = present.double()
    return weights / weights.sum()


class TaskMixingSampler(Sampler[int]):
    """Indices of a mixed-task dataset, with the task frequencies of ``mixing`` (see the module docstring).

    Args:
        task_ids: Long ``[N]``, the task of each example.
        mixing: ``"proportional"``, ``"temperature"`` or ``"uniform"``.
        temperature: ``T`` of the temperature mixing.
        num_samples: Indices per epoch (default: ``N``). Proportional mixing draws without replacement,
            so it takes at most ``N``.
        seed: Seed of the order; epoch ``e`` uses ``seed + e`` (`set_epoch`), as Accelerate's
            seedable sampler does.

    Within a task, temperature and uniform mixing go through the task's examples in a shuffled order
    before repeating any, so a task drawn less often than its size still sees distinct examples.
    """

    def __init__(
        self,
        task_ids: torch.Tensor,
        mixing: str = "proportional",
        temperature: float = 2.0,
        num_samples: int | None = None,
        seed: int = 0,
    ) -> None:
        task_ids = torch.as_tensor(task_ids)
        if task_ids.dim() != 1 or task_ids.is_floating_point() or task_ids.dtype == torch.bool:
            raise ValueError(f"task_ids must be an integer tensor [N], got {task_ids.dtype} {list(task_ids.shape)}.")
        if len(task_ids) and int(task_ids.min()) < 0:
            raise ValueError("task_ids cannot be negative.")
        self.task_ids = task_ids.long()
        self.num_tasks = int(self.task_ids.max()) + 1 if len(self.task_ids) else 0
        self.sizes = torch.bincount(self.task_ids, minlength=self.num_tasks)
        self.probabilities = task_sampling_probabilities(self.sizes.tolist(), mixing, temperature)
        self.mixing = mixing
        self.num_samples = len(self.task_ids) if num_samples is None else num_samples
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {self.num_samples}.")
        if mixing == "proportional" and self.num_samples > len(self.task_ids):
            raise ValueError(
                f"Proportional mixing draws each example at most once per epoch: num_samples={self.num_samples} "
                f"exceeds the {len(self.task_ids)} examples."
            )
        self.seed = seed
        self.epoch = 0
        self.members = [torch.nonzero(self.task_ids == task).flatten() for task in range(self.num_tasks)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.mixing == "proportional":
            yield from torch.randperm(len(self.task_ids), generator=generator)[: self.num_samples].tolist()
            return
        tasks = torch.multinomial(self.probabilities, self.num_samples, replacement=True, generator=generator)
        indices = torch.empty(self.num_samples, dtype=torch.long)
        for task, members in enumerate(self.members):
            slots = torch.nonzero(tasks == task).flatten()
            if len(slots) == 0:
                continue
            # Cycle through the task's examples, reshuffled on each pass.
            passes = -(-len(slots) // len(members))
            order = torch.cat([members[torch.randperm(len(members), generator=generator)] for _ in range(passes)])
            indices[slots] = order[: len(slots)]
        yield from indices.tolist()


def concatenate_tasks(datasets: Mapping[str, Dataset], tasks: Sequence[TaskSpec | Mapping]) -> Dataset:
    """One mixed-task dataset from one dataset per task.

    Each dataset holds the model's input columns (the same in all of them) and a ``label`` column with
    its task's label (a number, or a list for multilabel / multi-output tasks). The result holds the
    inputs, ``task_ids`` (the task's index in ``tasks``) and ``labels``: the label matrix row of every
    example, its own task's columns filled and the others missing (NaN, or -100 for multiclass).

    Raises:
        KeyError: a dataset names no task of ``tasks``, or lacks a ``label`` column.
        ValueError: the datasets' input columns differ.
    """
    specs = parse_tasks(tasks)
    names = [task.name for task in specs]
    unknown = [name for name in datasets if name not in names]
    if unknown:
        raise KeyError(f"Dataset(s) for unknown task(s) {unknown}; the tasks are {names}.")
    offsets = np.cumsum([0, *(task.label_width for task in specs)])
    # A label row with every task missing: NaN, or -100 for multiclass tasks.
    missing = np.concatenate(
        [np.full(task.label_width, IGNORE_INDEX if task.kind == "multiclass" else np.nan) for task in specs]
    )
    inputs = None
    parts = []
    for index, task in enumerate(specs):
        if task.name not in datasets:
            continue
        dataset = datasets[task.name]
        if "label" not in dataset.column_names:
            raise KeyError(f"The {task.name!r} dataset has no 'label' column; it has {dataset.column_names}.")
        columns = sorted(set(dataset.column_names) - {"label"})
        if inputs is None:
            inputs = columns
        elif columns != inputs:
            raise ValueError(f"The {task.name!r} dataset has input columns {columns}; the others have {inputs}.")

        def label_rows(batch, index=index, task=task):
            rows = np.tile(missing, (len(batch["label"]), 1))
            own = np.asarray(batch["label"], dtype=np.float64).reshape(len(rows), task.label_width)
            rows[:, offsets[index] : offsets[index + 1]] = own
            return {"labels": rows, "task_ids": np.full(len(rows), index)}

        parts.append(dataset.map(label_rows, batched=True, remove_columns=["label"], desc=f"task {task.name}"))
    if not parts:
        raise ValueError("concatenate_tasks needs at least one dataset.")
    return concatenate_datasets(parts)
