"""The data a recipe run was trained and scored on, rebuilt from the settings in its ``results.json``: one
builder per data set, which the registry (`moezoo.training.datasets`) names."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from datasets import Dataset, DatasetDict
from transformers import AutoTokenizer, BaseImageProcessor

from ..data import MULTI_MNIST_TASKS, load_census_income, load_multi_mnist
from ..data.glue import glue_data_settings, load_encoded_glue
from ..tabular import TabularProcessor
from ..zoo import processor_from_pretrained
from .data import TASK_LABEL_PREFIX, materialize
from .recipe import subsample_splits, subset_selector

SPLITS = ("train", "validation", "test")
#: The evaluation batch of a run whose settings do not record one.
DEFAULT_EVAL_BATCH = 8192


def run_eval_batch_size(arguments: Mapping[str, Any]) -> int:
    """The evaluation batch size a run used (its ``per_device_eval_batch_size``): what its model is known
    to fit in memory (a ViT evaluates every image through every task's pathway)."""
    return int(arguments.get("per_device_eval_batch_size") or DEFAULT_EVAL_BATCH)


def multi_mnist_split(arguments: Mapping[str, Any], checkpoint: str | os.PathLike, split: str) -> dict[str, torch.Tensor]:
    """A MultiMNIST / MultiFashion-MNIST run's split (see `moezoo.training.datasets.run_split`): the canvases
    and item classes, or, for an M3ViT run, the canvases through its image processor with the dense labels."""
    vision_transformer = arguments.get("model_name") == "m3vit"
    splits = load_multi_mnist(
        arguments.get("data_dir"), dataset=arguments["dataset"], validation_size=arguments["validation_size"],
        seed=arguments["data_seed"], dense_labels=vision_transformer, splits=(split,),
        select_rows=subset_selector(arguments.get("max_train_samples"), arguments.get("max_eval_samples"), arguments["seed"]),
    )
    if vision_transformer:
        return encode_multi_mnist_for_vit(splits[split], processor_from_pretrained(checkpoint), arguments["tasks"])
    return materialize(splits[split]).columns


def glue_split(arguments: Mapping[str, Any], checkpoint: str | os.PathLike, split: str) -> dict[str, torch.Tensor]:
    """A GLUE run's split, tokenized by the tokenizer saved beside its checkpoint."""
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    return load_encoded_glue(tokenizer, **glue_data_settings(arguments), splits=(split,))[split]


def census_income_split(arguments: Mapping[str, Any], checkpoint: str | os.PathLike, split: str) -> dict[str, torch.Tensor]:
    """A Census-Income run's split, encoded by the processor saved beside its checkpoint."""
    raw = _subsets(load_census_income(arguments.get("data_dir"), tasks=arguments["tasks"], seed=arguments["seed"]), arguments)
    processor = TabularProcessor.from_pretrained(checkpoint)
    return dict(processor(raw[split].to_pandas(), require_labels=True))


def _subsets(splits: DatasetDict, arguments: Mapping[str, Any]) -> DatasetDict:
    """The subsets of the splits the run used (`moezoo.training.subsample_splits` with its settings)."""
    return subsample_splits(
        splits, arguments.get("max_train_samples"), arguments.get("max_eval_samples"), arguments["seed"]
    )


def encode_multi_mnist_for_vit(
    split: Dataset, image_processor: BaseImageProcessor, tasks: Sequence[str]
) -> dict[str, torch.Tensor]:
    """A MultiMNIST split with dense labels (``load_multi_mnist(dense_labels=True)``) as a ViT's inputs:
    the canvases through ``image_processor``, and one ``labels.{task}`` column per task of ``tasks``
    (``[N]`` classes for ``top_left`` / ``bottom_right``, ``[N, 36, 36]`` for the dense tasks)."""
    columns = materialize(split).columns
    # The canvases are bytes / 255: the processor takes the bytes back and applies its own scaling.
    images = (columns["pixel_values"] * 255).round().to(torch.uint8)
    encoded = {"pixel_values": image_processor(images=images, return_tensors="pt")["pixel_values"]}
    for name in tasks:
        if name in MULTI_MNIST_TASKS:
            encoded[TASK_LABEL_PREFIX + name] = columns["labels"][:, MULTI_MNIST_TASKS.index(name)]
        else:
            encoded[TASK_LABEL_PREFIX + name] = columns[name].long()
    return encoded
