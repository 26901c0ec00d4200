#!/usr/bin/env python
"""Train a moezoo multi-task model with a CNN bottom on MultiMNIST or MultiFashion-MNIST with Accelerate.

    python recipes/train_image.py recipes/configs/multi_mnist_dselect_k.yaml
    accelerate launch recipes/train_image.py recipes/configs/multi_mnist_dselect_k.yaml --dataset fashion-mnist

Two 10-way tasks per canvas: the top-left and the bottom-right item (`moezoo.data.load_multi_mnist`);
``--tasks`` trains one of them alone (a single-task baseline).
The model's experts and gates read the features of a small shared CNN (`image_encoder` in the model
config; `{}` for the default LeNet-style one). Flags after the YAML file override it; `--help` lists
them. The best checkpoint (by `metric_for_best_model` on the validation split) is saved with
`save_pretrained` and evaluated on the test split; metrics go to `{output_dir}/results.json`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import ClassVar

from datasets import DatasetDict

from moezoo.cli import run_reporting_errors
from moezoo.data import MULTI_MNIST_TASKS, load_multi_mnist
from moezoo.suggestions import closest_names
from moezoo.training.datasets import dataset_names
from moezoo.training import (
    ModelArguments,
    RecipeResult,
    TrainingConfig,
    build_model,
    config_to_dict,
    parse_config_and_args,
    require_positive,
    start_run,
    subset_selector,
    train_and_test,
)


@dataclass
class DataArguments:
    dataset: str = field(
        default="mnist",
        metadata={"help": "mnist (MultiMNIST) or fashion-mnist (MultiFashion-MNIST).", "choices": dataset_names("train_image.py")},
    )
    data_dir: str | None = field(default=None, metadata={"help": "Folder holding the data set (default: ../shared/data)."})
    validation_size: int = field(default=10_000, metadata={"help": "Training images held out for validation."})
    data_seed: int = field(default=0, metadata={"help": "Seed of the validation hold-out and of the pairing."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on a random subset of this size."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on the first canvases only."})
    tasks: list[str] = field(
        default_factory=lambda: list(MULTI_MNIST_TASKS),
        metadata={"help": f"The tasks to train, from {list(MULTI_MNIST_TASKS)} (default: both; one for a single-task baseline)."},
    )

    #: The names ``tasks`` may hold.
    known_tasks: ClassVar[tuple[str, ...]] = tuple(MULTI_MNIST_TASKS)

    def __post_init__(self) -> None:
        require_positive(
            validation_size=self.validation_size, max_train_samples=self.max_train_samples,
            max_eval_samples=self.max_eval_samples,
        )
        unknown = [name for name in self.tasks if name not in self.known_tasks]
        if unknown or not self.tasks or len(set(self.tasks)) != len(self.tasks):
            hint = closest_names(unknown[0], self.known_tasks) if unknown else ""
            raise ValueError(f"--tasks must be distinct names from {list(self.known_tasks)}, got {self.tasks}{hint}.")


def select_tasks(splits: DatasetDict, tasks: list[str]) -> DatasetDict:
    """``splits`` whose ``labels`` keep the columns of ``tasks`` only, in that order."""
    if tasks == list(MULTI_MNIST_TASKS):
        return splits
    kept = [MULTI_MNIST_TASKS.index(name) for name in tasks]
    return splits.map(lambda batch: {"labels": batch["labels"][:, kept]}, batched=True, desc="selecting tasks")


def main(argv: list[str] | None = None) -> RecipeResult:
    data_args, model_args, training_config = parse_config_and_args(
        (DataArguments, ModelArguments, TrainingConfig), argv
    )
    accelerator = start_run(training_config)

    # Only the canvases the run uses are built (with their per-pixel labels, all 60,000 take 3 GB).
    splits = load_multi_mnist(
        data_args.data_dir, dataset=data_args.dataset, validation_size=data_args.validation_size,
        seed=data_args.data_seed,
        select_rows=subset_selector(data_args.max_train_samples, data_args.max_eval_samples, training_config.seed),
    )

    splits = select_tasks(splits, data_args.tasks)

    # An image recipe always has a CNN bottom; --model_config may resize it.
    model = build_model(
        model_args, [{"name": name, "kind": "multiclass", "num_labels": 10} for name in data_args.tasks],
        image_encoder={},
    )
    return train_and_test(
        model, splits, training_config, accelerator,
        arguments={**config_to_dict(data_args), **config_to_dict(model_args)},
    )


if __name__ == "__main__":
    # A mistake in the flags or the data is one line on standard error, not a traceback.
    sys.exit(run_reporting_errors(lambda: main(sys.argv[1:]), "train_image.py"))
