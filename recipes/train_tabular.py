#!/usr/bin/env python
"""Train a moezoo multi-task model on a tabular data set with Accelerate.

    python recipes/train_tabular.py recipes/configs/census_income_mmoe.yaml
    accelerate launch recipes/train_tabular.py recipes/configs/census_income_mmoe.yaml --model_name ple

Flags after the YAML file override it; `--help` lists them. The best checkpoint (by
`metric_for_best_model` on the validation split) is saved with `save_pretrained`, its processor beside
it, and evaluated on the test split; metrics go to `{output_dir}/results.json`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed

import moezoo
from moezoo.data import census_feature_columns, load_census_income
from moezoo.training import TrainingConfig, evaluate, make_dataloader, parse_config_and_args, train
from moezoo.training.loop import config_to_dict


@dataclass
class DataArguments:
    dataset: str = field(default="census_income", metadata={"help": "Data set to train on.", "choices": ["census_income"]})
    data_dir: str | None = field(default=None, metadata={"help": "Folder holding the data set (default: ../shared/data)."})
    tasks: list[str] = field(default_factory=lambda: ["income", "marital"], metadata={"help": "Tasks to learn."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on a random subset of this size."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on the first rows only."})
    embedding_dim: int = field(default=8, metadata={"help": "Embedding size of each categorical feature."})


@dataclass
class ModelArguments:
    model_name: str = field(default="mmoe", metadata={"help": f"One of {moezoo.list_models()}."})
    model_config: str | None = field(
        default=None, metadata={"help": 'Config overrides as JSON, e.g. \'{"num_shared_experts": 4}\'.'}
    )


def encode_splits(dataset, processor, max_train_samples, max_eval_samples, seed):
    """Subsample, then turn raw rows into model tensors with the fitted processor."""
    if max_train_samples is not None:
        dataset["train"] = dataset["train"].shuffle(seed=seed).select(range(min(max_train_samples, len(dataset["train"]))))
    for split in ("validation", "test"):
        if max_eval_samples is not None:
            dataset[split] = dataset[split].select(range(min(max_eval_samples, len(dataset[split]))))
    encoded = dataset.map(
        lambda batch: dict(processor(batch, return_tensors=None, require_labels=True)),
        batched=True,
        batch_size=10_000,
        remove_columns=dataset["train"].column_names,
        desc="encoding",
    )
    return encoded.with_format("torch")


def main(argv: list[str] | None = None) -> moezoo.training.TrainingResult:
    data_args, model_args, training_config = parse_config_and_args(
        (DataArguments, ModelArguments, TrainingConfig), argv
    )
    accelerator = Accelerator(dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
    # Checkpoints are saved every time validation improves; one progress bar (ours) is enough.
    transformers.utils.logging.disable_progress_bar()
    set_seed(training_config.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)

    raw = load_census_income(data_args.data_dir, tasks=data_args.tasks, seed=training_config.seed)
    numeric, categorical = census_feature_columns(data_args.tasks)
    processor = moezoo.TabularProcessor.fit(
        raw["train"].to_pandas(), numeric, categorical, label_columns=data_args.tasks,
        embedding_dim=data_args.embedding_dim,
    )
    encoded = encode_splits(raw, processor, data_args.max_train_samples, data_args.max_eval_samples, training_config.seed)

    overrides = json.loads(model_args.model_config) if model_args.model_config else {}
    model = moezoo.create_model(
        model_args.model_name,
        tasks=[{"name": name, "kind": "binary"} for name in data_args.tasks],
        features=processor.feature_schema.to_dict(),
        **overrides,
    )
    result = train(model, encoded["train"], encoded["validation"], training_config, accelerator, processor=processor)

    # Score the best checkpoint on the test split, loaded the way a user would load it.
    _, model_class = moezoo.get_model_classes(model_args.model_name)
    best_model = model_class.from_pretrained(result.best_checkpoint)
    test_loader = accelerator.prepare(
        make_dataloader(encoded["test"], training_config.per_device_eval_batch_size, shuffle=False, seed=0)
    )
    test_metrics = evaluate(best_model.to(accelerator.device), test_loader, accelerator)
    summary = {
        "model_name": model_args.model_name,
        "num_processes": result.num_processes,
        "best_epoch": result.best_epoch,
        "validation": result.best_metrics,
        "test": test_metrics,
        "arguments": {**config_to_dict(data_args), **config_to_dict(model_args), **config_to_dict(training_config)},
    }
    if accelerator.is_main_process:
        Path(training_config.output_dir, "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    accelerator.print(f"best epoch {result.best_epoch}; checkpoint: {result.best_checkpoint}")
    for split in ("validation", "test"):
        scores = summary[split]
        accelerator.print(
            f"{split}: " + "  ".join(f"{name}={scores[name]:.4f}" for name in sorted(scores) if name.endswith("auc"))
        )
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
