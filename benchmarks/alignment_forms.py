#!/usr/bin/env python
"""How large Align-LoRA's two loss forms are on the same LoRA outputs: the authors' and the pooled one.

    python benchmarks/alignment_forms.py [--batches 20] [--batch_size 32]

all-MiniLM-L6-v2 with a fresh LoRA of rank 32 in the query and value maps (LoRA's A as PEFT draws it), on mixed batches of the GLUE recipe's training data (temperature-2 task
mixing, batched by length as the recipe batches them, 128 tokens). For each batch, one forward pass records
the LoRA A outputs, and each form's loss is taken on them with λ = 1: the authors' (a Gaussian per token
position, the two KL directions averaged; their per-position MMD) and the pooled one (a Gaussian per task
over its real tokens; the MMD between mean-pooled examples). The median over the batches goes to
benchmarks/results/alignment_forms.{json,md}: what a λ means in each form.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
from recipe_runs import write_results
from torch.utils.data import BatchSampler
from transformers import AutoTokenizer

from moezoo.adapters import AdaptedTransformerModel
from moezoo.adapters.alignment import ALIGNMENT_FORMS, DISTANCES
from moezoo.adapters.base_models import MINILM, load_pretrained
from moezoo.data.glue import GLUE_TASKS, encode_glue_split, glue_subsets, glue_task_specs
from moezoo.training import TaskMixingSampler
from moezoo.training.lengths import LengthGroupedSampler, token_lengths, trim_padding


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    tokenizer = load_pretrained(AutoTokenizer, MINILM)
    columns = encode_glue_split(glue_subsets(splits=("train",))["train"], tokenizer, len(GLUE_TASKS), 128)
    mixing = TaskMixingSampler(columns["task_ids"], "temperature", 2.0, seed=args.seed)
    order = LengthGroupedSampler(token_lengths(columns["attention_mask"]), args.batch_size, mixing, seed=args.seed)
    batches = list(BatchSampler(order, args.batch_size, drop_last=True))
    step = max(len(batches) // args.batches, 1)
    chosen = batches[::step][: args.batches]

    torch.manual_seed(args.seed)
    model = AdaptedTransformerModel.from_base(
        MINILM, glue_task_specs(), "align_lora", adapter={"target_modules": ["query", "value"], "r": 32}
    ).eval()
    recorder = model.alignment
    losses: dict[str, list[float]] = {f"{form}/{distance}": [] for form in ALIGNMENT_FORMS for distance in DISTANCES}
    tasks_per_batch = []
    with torch.no_grad():
        for indices in chosen:
            batch = trim_padding({name: value[torch.tensor(indices)] for name, value in columns.items()})
            model(**{name: value for name, value in batch.items() if name != "labels"})
            tasks_per_batch.append(len(torch.unique(batch["task_ids"])))
            for name in losses:
                form, distance = name.split("/")
                losses[name].append(recorder.loss(distance=distance, form=form, weight=1.0).item())
    summary = {
        "batches": len(chosen), "batch_size": args.batch_size, "mean_tasks_per_batch": statistics.mean(tasks_per_batch),
        "median_loss": {name: statistics.median(values) for name, values in losses.items()},
    }
    lines = [
        "### Align-LoRA's two loss forms on the same LoRA outputs",
        "",
        f"all-MiniLM-L6-v2 with a fresh LoRA of rank 32 (query, value), {summary['batches']} mixed GLUE batches of "
        f"{args.batch_size} batched by length ({summary['mean_tasks_per_batch']:.1f} tasks per batch on average); median "
        "loss with λ = 1.",
        "",
        "| distance | authors' form | pooled form | ratio |",
        "|---|---|---|---|",
    ]
    for distance in DISTANCES:
        authors, pooled = summary["median_loss"][f"authors/{distance}"], summary["median_loss"][f"pooled/{distance}"]
        lines.append(f"| {distance} | {authors:,.4g} | {pooled:,.4g} | {authors / pooled:,.0f}x |" if pooled else
                     f"| {distance} | {authors:,.4g} | {pooled:,.4g} | |")
    write_results("alignment_forms", summary, "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
