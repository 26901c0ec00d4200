"""Every data set the recipes train on, each described once: its files (with their checksums and public
sources), its tasks, the recipe that trains on it, what a model card says of it, and how a run's split is
rebuilt from the run's settings. The recipes, ``moezoo train``, the card writer, the zoo and ``moezoo
evaluate`` read this registry; adding a data set means adding one entry here (and its loader)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from datasets import DatasetDict

from ..data import CENSUS_TASKS, MULTI_MNIST_TASK_SPECS, load_census_income, load_multi_mnist
from ..data.census_income import CENSUS_SOURCE
from ..data.glue import GLUE_SOURCES, GLUE_TASKS, load_glue
from ..data.multi_mnist import SOURCES as MULTI_MNIST_SOURCES
from ..data.sources import DataSource
from ..hub.cards import DatasetDescription
from ..hub.datasets import CENSUS_INCOME_DESCRIPTION, describe_glue, describe_multi_mnist
from ..suggestions import closest_names
from .splits import SPLITS, census_income_split, glue_split, multi_mnist_split

SplitBuilder = Callable[[Mapping[str, Any], str | os.PathLike, str], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class RegisteredDataset:
    """One data set of the registry.

    Attributes:
        name: The ``dataset`` setting of the runs that train on it.
        sources: Its files, their checksums and where they are downloaded from (`moezoo.data.sources`).
        load: Its loader, returning the raw ``train`` / ``validation`` / ``test`` splits (a local copy, else
            downloaded and checked: `moezoo.data.sources`).
        tasks: The tasks it offers, by name.
        recipes: The recipe scripts (under ``recipes/``) that train on it; the first is the one ``moezoo train``
            runs for a YAML that names this data set.
        describe: What a model card says of it, given a run's settings (``results.json``'s ``arguments``).
        rebuild_split: A split of the data a run used, encoded as its recipe encoded it: ``(arguments,
            checkpoint folder, split) -> tensors``.
    """

    name: str
    sources: tuple[DataSource, ...]
    load: Callable[..., DatasetDict]
    tasks: tuple[str, ...]
    recipes: tuple[str, ...]
    describe: Callable[[Mapping[str, Any]], DatasetDescription]
    rebuild_split: SplitBuilder

    @property
    def hub_id(self) -> str | None:
        """Its Hub dataset id, where one exists."""
        return self.describe({}).hub_id


DATASETS: dict[str, RegisteredDataset] = {
    entry.name: entry
    for entry in (
        RegisteredDataset(
            "census_income", (CENSUS_SOURCE,), load_census_income, tuple(CENSUS_TASKS), ("train_tabular.py",),
            lambda arguments: CENSUS_INCOME_DESCRIPTION, census_income_split,
        ),
        RegisteredDataset(
            "mnist", (MULTI_MNIST_SOURCES["mnist"],), partial(load_multi_mnist, dataset="mnist"),
            tuple(task["name"] for task in MULTI_MNIST_TASK_SPECS),
            ("train_image.py", "train_vit.py"), describe_multi_mnist, multi_mnist_split,
        ),
        RegisteredDataset(
            "fashion-mnist", (MULTI_MNIST_SOURCES["fashion-mnist"],), partial(load_multi_mnist, dataset="fashion-mnist"),
            tuple(task["name"] for task in MULTI_MNIST_TASK_SPECS), ("train_image.py", "train_vit.py"),
            partial(describe_multi_mnist, dataset="fashion-mnist"), multi_mnist_split,
        ),
        RegisteredDataset(
            "glue", tuple(GLUE_SOURCES.values()), load_glue, tuple(GLUE_TASKS), ("train_glue.py",), describe_glue,
            glue_split,
        ),
    )
}


def get_dataset(name: str | None) -> RegisteredDataset:
    """The registered data set ``name``.

    Raises:
        ValueError: an unknown name, with the closest known ones.
    """
    if name not in DATASETS:
        raise ValueError(
            f"Unknown data set {name!r}{closest_names(str(name), DATASETS)}; moezoo's recipes train on {sorted(DATASETS)}."
        )
    return DATASETS[name]


def dataset_names(recipe: str) -> list[str]:
    """The data sets recipe script ``recipe`` (``train_image.py``) trains on: its ``--dataset`` choices."""
    return [name for name, entry in DATASETS.items() if recipe in entry.recipes]


def run_split(arguments: Mapping[str, Any], checkpoint: str | os.PathLike, split: str = "test") -> dict[str, torch.Tensor]:
    """Split ``split`` of the data a run used, encoded as its recipe encoded it: the model's input columns and
    ``labels``, as tensors.

    Args:
        arguments: The run's settings (``results.json``'s ``arguments``): its data set, tasks, seeds, data
            folder and subsets.
        checkpoint: The run's checkpoint folder; its processor (tabular, image) or tokenizer (GLUE) is read from
            there.
        split: ``train``, ``validation`` or ``test``.

    Raises:
        ValueError: an unknown split, or settings that name no registered data set.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose one of {SPLITS}.")
    return get_dataset(arguments.get("dataset")).rebuild_split(arguments, checkpoint, split)


def evaluate_run_split(
    model: Any, arguments: Mapping[str, Any], checkpoint: str | os.PathLike, split: str = "test",
    batch_size: int | None = None, show_progress: bool = False,
) -> dict[str, float]:
    """``model``'s metrics on split ``split`` of the data its run used (`run_split`), in the run's evaluation
    batches (or ``batch_size``), with the metrics as moezoo defines them now."""
    from accelerate import Accelerator

    from .data import TensorDataset
    from .loop import evaluate, prepare_eval_loader
    from .splits import run_eval_batch_size

    accelerator = Accelerator()
    data = TensorDataset(run_split(arguments, checkpoint, split))
    loader = prepare_eval_loader(model, data, accelerator, batch_size or run_eval_batch_size(arguments))
    return evaluate(model, loader, accelerator, show_progress=show_progress)


def describe_dataset(arguments: Mapping[str, Any]) -> DatasetDescription:
    """What a model card says of the data set named by a run's settings (``results.json``'s ``arguments``)."""
    return get_dataset(arguments.get("dataset")).describe(arguments)
