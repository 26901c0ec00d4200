#!/usr/bin/env python
"""Train M³ViT (or a dense multi-task ViT) on MultiMNIST / MultiFashion-MNIST with image-level and dense
tasks, with Accelerate.

    python recipes/train_vit.py recipes/configs/multi_mnist_m3vit.yaml
    accelerate launch recipes/train_vit.py recipes/configs/multi_mnist_m3vit.yaml --dataset fashion-mnist

Four tasks per canvas (`moezoo.data.load_multi_mnist` with ``dense_labels``): the classes of the top-left
and the bottom-right item (``top_left``, ``bottom_right``), and per pixel the class of the item under it,
background included (``pixel_class``, 11 classes), and which item it is (``pixel_item``: background,
top-left, bottom-right). ``--tasks`` trains a subset (a single-task baseline, say).

Baselines and upcycling go through the same recipe: ``--model_config '{"moe_layers": []}'`` is a dense ViT of
the same width with a head per task; ``--upcycle_from <a dense checkpoint>`` starts an M³ViT from a trained
dense ViT (`moezoo.M3ViTModel.from_dense`: each expert copies its block's MLP) and continues training.
Images go through the model's ViT image processor, saved beside the best checkpoint. Flags after the YAML
file override it; ``--help`` lists them. Metrics go to ``{output_dir}/results.json``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import ClassVar

from moezoo.cli import run_reporting_errors
from moezoo.data import MULTI_MNIST_DENSE_TASKS, MULTI_MNIST_TASK_SPECS, load_multi_mnist
from moezoo.models.m3vit import M3ViTModel
from moezoo.models.m3vit.modeling_m3vit import image_processor_for
from moezoo.training import (
    ModelArguments,
    RecipeResult,
    TensorDataset,
    TrainingConfig,
    build_model,
    config_to_dict,
    parse_config_and_args,
    start_run,
    subset_selector,
    train_and_test,
)
from moezoo.training.splits import encode_multi_mnist_for_vit
from train_image import DataArguments

TASK_NAMES = [task["name"] for task in MULTI_MNIST_TASK_SPECS]


@dataclass
class VisionDataArguments(DataArguments):
    """The image recipe's data settings, plus the tasks to train and a dense checkpoint to upcycle."""

    tasks: list[str] = field(
        default_factory=lambda: list(TASK_NAMES),
        metadata={"help": f"The tasks to train, from {TASK_NAMES} (default: all)."},
    )
    known_tasks: ClassVar[tuple[str, ...]] = tuple(TASK_NAMES)
    upcycle_from: str | None = field(
        default=None,
        metadata={
            "help": "Start an M3ViT from this dense ViT checkpoint (a moezoo ViT without MoE layers, or a "
            "transformers ViTModel): its experts copy the dense MLPs, its heads are kept for shared tasks."
        },
    )


def build_vit(model_args: ModelArguments, data_args: VisionDataArguments) -> M3ViTModel:
    """The model to train: fresh, from ``--model_name_or_path``, or upcycled with ``--upcycle_from``."""
    tasks = [task for task in MULTI_MNIST_TASK_SPECS if task["name"] in data_args.tasks]
    dense = [name for name in data_args.tasks if name in MULTI_MNIST_DENSE_TASKS]
    if data_args.upcycle_from is None:
        return build_model(model_args, tasks, task_config={"dense_tasks": dense})
    if model_args.model_name_or_path is not None or model_args.model_name != "m3vit":
        raise ValueError("--upcycle_from builds an M3ViT from a dense checkpoint: leave --model_name_or_path unset.")
    return M3ViTModel.from_dense(
        data_args.upcycle_from, tasks=model_args.weighted(tasks), dense_tasks=dense, **model_args.config_overrides()
    )


def main(argv: list[str] | None = None) -> RecipeResult:
    data_args, model_args, training_config = parse_config_and_args(
        (VisionDataArguments, ModelArguments, TrainingConfig), argv
    )
    if model_args.model_name != "m3vit":
        raise ValueError(f"train_vit.py trains ViTs (--model_name m3vit), got {model_args.model_name!r}.")
    accelerator = start_run(training_config)
    model = build_vit(model_args, data_args)  # a bad config fails before the data is read

    # Only the canvases the run uses are built (with their per-pixel labels, all 60,000 take 3 GB).
    splits = load_multi_mnist(
        data_args.data_dir, dataset=data_args.dataset, validation_size=data_args.validation_size,
        seed=data_args.data_seed, dense_labels=True,
        select_rows=subset_selector(data_args.max_train_samples, data_args.max_eval_samples, training_config.seed),
    )
    processor = image_processor_for(model.config)
    encoded = {
        name: TensorDataset(encode_multi_mnist_for_vit(split, processor, data_args.tasks)) for name, split in splits.items()
    }
    return train_and_test(
        model, encoded, training_config, accelerator, processor=processor,
        arguments={**config_to_dict(data_args), **config_to_dict(model_args)},
    )


if __name__ == "__main__":
    # A mistake in the flags or the data is one line on standard error, not a traceback.
    sys.exit(run_reporting_errors(lambda: main(sys.argv[1:]), "train_vit.py"))
