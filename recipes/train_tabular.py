#!/usr/bin/env python
"""Train a moezoo multi-task model on a tabular data set with Accelerate.

    python recipes/train_tabular.py recipes/configs/census_income_mmoe.yaml
    accelerate launch recipes/train_tabular.py recipes/configs/census_income_mmoe.yaml --model_name ple

Flags after the YAML file override it; `--help` lists them. The best checkpoint (by
`metric_for_best_model` on the validation split) is saved with `save_pretrained`, its processor beside
it, and evaluated on the test split; metrics go to `{output_dir}/results.json`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from datasets import DatasetDict

import moezoo
from moezoo.cli import run_reporting_errors
from moezoo.data import census_feature_columns, census_task_columns, load_census_income
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
    subsample_splits,
    train_and_test,
)


@dataclass
class DataArguments:
    dataset: str = field(default="census_income", metadata={"help": "Data set to train on.", "choices": dataset_names("train_tabular.py")})
    data_dir: str | None = field(default=None, metadata={"help": "Folder holding the data set (default: ../shared/data)."})
    tasks: list[str] = field(default_factory=lambda: ["income", "marital"], metadata={"help": "Tasks to learn."})
    withheld_tasks: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Tasks not learnt whose source columns stay out of the inputs all the same (a single-task "
            "baseline of a multi-task run: the run's other tasks), so that both read the same features."
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on a random subset of this size."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on the first rows only."})
    embedding_dim: int = field(default=8, metadata={"help": "Embedding size of each categorical feature."})

    def __post_init__(self) -> None:
        require_positive(
            max_train_samples=self.max_train_samples, max_eval_samples=self.max_eval_samples,
            embedding_dim=self.embedding_dim,
        )
        census_task_columns(self.tasks)  # unknown task names are reported before any work
        if self.withheld_tasks:
            census_task_columns(self.withheld_tasks)


def load_and_fit_processor(
    data_args: DataArguments, seed: int, checkpoint: str | None = None
) -> tuple[DatasetDict, moezoo.TabularProcessor]:
    """The raw splits (subsampled as asked) and a `TabularProcessor` fitted on the training split, or,
    when fine-tuning, the ``checkpoint``'s processor reading the data's tasks as labels."""
    processor = checkpoint_processor(checkpoint, data_args) if checkpoint is not None else None
    raw = load_census_income(data_args.data_dir, tasks=data_args.tasks, seed=seed, withheld_tasks=data_args.withheld_tasks)
    raw = subsample_splits(raw, data_args.max_train_samples, data_args.max_eval_samples, seed)
    if processor is not None:
        return raw, processor
    numeric, categorical = census_feature_columns(data_args.tasks, data_args.withheld_tasks)
    processor = moezoo.TabularProcessor.fit(
        raw["train"].to_pandas(), numeric, categorical, label_columns=data_args.tasks,
        embedding_dim=data_args.embedding_dim,
    )
    return raw, processor


def checkpoint_processor(checkpoint: str, data_args: DataArguments) -> moezoo.TabularProcessor:
    """The processor of the checkpoint a run fine-tunes, reading the data's tasks as labels; checked before any
    data is read: a checkpoint of table rows, with the embedding width the flags ask for."""
    processor = moezoo.processor_from_pretrained(checkpoint)
    if not isinstance(processor, moezoo.TabularProcessor):
        raise ValueError(
            f"{checkpoint} is not a tabular checkpoint (its processor is a {type(processor).__name__}): this recipe "
            "fine-tunes models of table rows. Adapter entries train with recipes/train_glue.py, image models with "
            "recipes/train_image.py or recipes/train_vit.py."
        )
    widths = sorted({feature["embedding_dim"] for feature in processor.feature_schema.to_dict()["categorical"]})
    if widths and data_args.embedding_dim not in widths:
        raise ValueError(
            f"--embedding_dim {data_args.embedding_dim} conflicts with the checkpoint {checkpoint}, whose embeddings "
            f"are {' / '.join(map(str, widths))} wide: a checkpoint brings its own processor and embeddings. Drop "
            "--embedding_dim, or train a new model without --model_name_or_path."
        )
    return processor.with_label_columns(data_args.tasks)


def main(argv: list[str] | None = None) -> RecipeResult:
    data_args, model_args, training_config = parse_config_and_args(
        (DataArguments, ModelArguments, TrainingConfig), argv
    )
    accelerator = start_run(training_config)

    raw, processor = load_and_fit_processor(data_args, training_config.seed, model_args.model_name_or_path)
    encoded = raw.map(
        lambda batch: dict(processor(batch, return_tensors=None, require_labels=True)),
        batched=True,
        batch_size=10_000,
        remove_columns=raw["train"].column_names,
        desc="encoding",
    ).with_format("torch")

    model = build_model(
        model_args, [{"name": name, "kind": "binary"} for name in data_args.tasks],
        features=processor.feature_schema.to_dict(),
    )
    return train_and_test(
        model, encoded, training_config, accelerator, processor=processor,
        arguments={**config_to_dict(data_args), **config_to_dict(model_args)},
    )


if __name__ == "__main__":
    # A mistake in the flags or the data is one line on standard error, not a traceback.
    sys.exit(run_reporting_errors(lambda: main(sys.argv[1:]), "train_tabular.py"))
