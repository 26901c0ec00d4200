"""The data a recipe run was trained and scored on, rebuilt from the settings in its ``results.json``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from ..data import load_census_income, load_multi_mnist
from ..tabular import TabularProcessor
from .data import materialize

SPLITS = ("train", "validation", "test")


def run_split(arguments: Mapping[str, Any], checkpoint: str | os.PathLike, split: str = "test") -> dict[str, torch.Tensor]:
    """Split ``split`` of the data a run used, encoded as its recipe encoded it: the model's input
    columns and ``labels``, as tensors.

    Args:
        arguments: The run's settings (``results.json``'s ``arguments``): its data set, tasks, seeds
            and data folder.
        checkpoint: The run's checkpoint folder; a tabular run's processor is read from there.
        split: ``train``, ``validation`` or ``test``.

    Raises:
        ValueError: an unknown split, or settings of a data set no recipe reads.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose one of {SPLITS}.")
    dataset = arguments.get("dataset")
    if dataset in ("mnist", "fashion-mnist"):
        splits = load_multi_mnist(
            arguments.get("data_dir"), dataset=dataset, validation_size=arguments["validation_size"],
            seed=arguments["data_seed"],
        )
        return materialize(splits[split]).columns
    if dataset == "census_income":
        raw = load_census_income(arguments.get("data_dir"), tasks=arguments["tasks"], seed=arguments["seed"])
        processor = TabularProcessor.from_pretrained(checkpoint)
        encoded = processor(raw[split].to_pandas(), require_labels=True)
        return dict(encoded)
    raise ValueError(f"The run's settings name data set {dataset!r}, which no moezoo recipe reads.")
