#!/usr/bin/env python
"""Train a moezoo multi-task model with a CNN bottom on MultiMNIST or MultiFashion-MNIST with Accelerate.

    python recipes/train_image.py recipes/configs/multi_mnist_dselect_k.yaml
    accelerate launch recipes/train_image.py recipes/configs/multi_mnist_dselect_k.yaml --dataset fashion-mnist

Two 10-way tasks per canvas: the top-left and the bottom-right item (`moezoo.data.load_multi_mnist`).
The model's experts and gates read the features of a small shared CNN (`image_encoder` in the model
config; `{}` for the default LeNet-style one). Flags after the YAML file override it; `--help` lists
them. The best checkpoint (by `metric_for_best_model` on the validation split) is saved with
`save_pretrained` and evaluated on the test split; metrics go to `{output_dir}/results.json`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from moezoo.cli import run_reporting_errors
from moezoo.data import MULTI_MNIST_TASKS, load_multi_mnist
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

    def __post_init__(self) -> None:
        require_positive(
            validation_size=self.validation_size, max_train_samples=self.max_train_samples,
            max_eval_samples=self.max_eval_samples,
        )


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

    # An image recipe always has a CNN bottom; --model_config may resize it.
    model = build_model(
        model_args, [{"name": name, "kind": "multiclass", "num_labels": 10} for name in MULTI_MNIST_TASKS],
        image_encoder={},
    )
    return train_and_test(
        model, splits, training_config, accelerator,
        arguments={**config_to_dict(data_args), **config_to_dict(model_args)},
    )


if __name__ == "__main__":
    # A mistake in the flags or the data is one line on standard error, not a traceback.
    sys.exit(run_reporting_errors(lambda: main(sys.argv[1:]), "train_image.py"))
