#!/usr/bin/env python
"""Padding on GLUE-5, before and after batches the length of their content, side by side in one run.

    python benchmarks/glue_padding.py [--sampled_steps 60] [--batch_size 32]

One epoch of the GLUE recipe's training data (the five tasks' whole training files less the validation
hold-out, temperature-2 task mixing, seed 42), batched three ways from the same drawn indices:

- ``padded to 64`` (before): every example padded (and cut) to 64 tokens, as the recipe did;
- ``trimmed, 128``: cut at 128 tokens, each batch padded to its own longest example;
- ``grouped, 128`` (after): the same, with examples of similar length batched together
  (`moezoo.training.lengths.LengthGroupedSampler`, windows of 50 batches).

For each: the share of computed token positions that are padding, over every batch of the epoch, and the
epoch's training time on all-MiniLM-L6-v2 with LoRA of rank 32 (the adapter of the GLUE entries): one full
step (forward, backward, AdamW) on ``--sampled_steps`` batches spread evenly over the epoch, measured in
turn (a batch of each way, then the next), times the epoch's number of batches. Also the share of each
task's examples cut at 64 and at 128 tokens. Results go to benchmarks/results/glue_padding.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch
from recipe_runs import write_results
from torch.utils.data import BatchSampler
from transformers import AutoTokenizer

from moezoo.adapters import AdaptedTransformerModel
from moezoo.adapters.base_models import MINILM, load_pretrained
from moezoo.data.glue import GLUE_TASKS, encode_glue_split, glue_subsets, glue_task_specs, truncated_share
from moezoo.training import TaskMixingSampler
from moezoo.training.lengths import LengthGroupedSampler, padding_share, token_lengths, trim_padding

BEFORE_LENGTH, AFTER_LENGTH = 64, 128
TARGET_RATIO = 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--sampled_steps", type=int, default=60)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tokenizer = load_pretrained(AutoTokenizer, MINILM)
    train = glue_subsets(tasks=list(GLUE_TASKS), splits=("train",))["train"]
    data = {length: encode_glue_split(train, tokenizer, len(GLUE_TASKS), length) for length in (BEFORE_LENGTH, AFTER_LENGTH)}
    lengths = {length: token_lengths(columns["attention_mask"]) for length, columns in data.items()}
    mixing = TaskMixingSampler(data[AFTER_LENGTH]["task_ids"], "temperature", 2.0, seed=args.seed)
    drawn = list(mixing)
    grouped = list(LengthGroupedSampler(lengths[AFTER_LENGTH], args.batch_size, mixing, seed=args.seed))
    ways = {
        "padded to 64": (BEFORE_LENGTH, drawn, False),
        "trimmed, 128": (AFTER_LENGTH, drawn, True),
        "grouped, 128": (AFTER_LENGTH, grouped, True),
    }
    batches = {
        way: [torch.tensor(batch) for batch in BatchSampler(order, args.batch_size, drop_last=False)]
        for way, (_, order, _) in ways.items()
    }

    torch.manual_seed(0)
    model = AdaptedTransformerModel.from_base(
        MINILM, glue_task_specs(), "lora", adapter={"target_modules": ["query", "value"], "r": 32}
    ).train()
    optimizer = torch.optim.AdamW([parameter for parameter in model.parameters() if parameter.requires_grad], lr=1e-4)

    def step(way: str, index: int) -> tuple[float, int]:
        length, _, trim = ways[way]
        batch = {name: value[batches[way][index]] for name, value in data[length].items()}
        if trim:
            batch = trim_padding(batch)
        started = time.perf_counter()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - started, batch["input_ids"].numel()

    for way in ways:  # warm-up
        step(way, 0)
    timed: dict[str, list[tuple[float, int]]] = {way: [] for way in ways}
    for sample in range(args.sampled_steps):
        for way in ways:
            index = sample * len(batches[way]) // args.sampled_steps
            timed[way].append(step(way, index))
            print(f"{way} batch {index}: {timed[way][-1][0] * 1000:.0f} ms, {timed[way][-1][1]} tokens", flush=True)

    rows = []
    for way, (length, _, trim) in ways.items():
        mean_seconds = sum(seconds for seconds, _ in timed[way]) / len(timed[way])
        rows.append({
            "way": way, "max_length": length, "batches": len(batches[way]),
            "padding_share": padding_share(lengths[length], batches[way], None if trim else length),
            "mean_tokens_per_example": sum(tokens for _, tokens in timed[way]) / len(timed[way]) / args.batch_size,
            "step_ms": 1000 * mean_seconds, "epoch_minutes": mean_seconds * len(batches[way]) / 60,
        })
    summary = {
        "examples": len(drawn), "batch_size": args.batch_size, "sampled_steps": args.sampled_steps,
        "threads": args.threads, "torch": torch.__version__, "rows": rows,
        "truncated_share": {str(length): truncated_share(train, tokenizer, length) for length in (BEFORE_LENGTH, AFTER_LENGTH)},
    }
    write_results("glue_padding", summary, report(summary))


def report(summary: dict[str, Any]) -> str:
    rows = {row["way"]: row for row in summary["rows"]}
    before = rows["padded to 64"]
    lines = [
        "### Padding on GLUE-5: before and after batches the length of their content",
        "",
        f"One epoch of the GLUE recipe's training data ({summary['examples']:,} examples drawn with temperature-2 task "
        f"mixing, batches of {summary['batch_size']}), all-MiniLM-L6-v2 with LoRA of rank 32, {summary['threads']} CPU "
        f"threads, torch {summary['torch']}. Padding share over every batch of the epoch; step time the mean of "
        f"{summary['sampled_steps']} full training steps on batches spread over the epoch, measured in turn; epoch "
        f"time that mean times the epoch's batches. Target: the epoch at most {TARGET_RATIO}x the time of "
        "`padded to 64` while keeping up to 128 tokens.",
        "",
        "| batching | max tokens | padded share | tokens / example computed | step ms | epoch min | epoch vs before |",
        "|---|---|---|---|---|---|---|",
    ]
    for way, row in rows.items():
        lines.append(
            f"| {way} | {row['max_length']} | {row['padding_share']:.1%} | {row['mean_tokens_per_example']:.1f} | "
            f"{row['step_ms']:.0f} | {row['epoch_minutes']:.1f} | {row['epoch_minutes'] / before['epoch_minutes']:.2f}x |"
        )
    lines += ["", "Share of each task's training examples longer than the maximum (cut):", "",
              "| max tokens | " + " | ".join(GLUE_TASKS) + " |", "|---|" + "---|" * len(GLUE_TASKS)]
    for length, shares in summary["truncated_share"].items():
        lines.append(f"| {length} | " + " | ".join(f"{shares[task]:.1%}" for task in GLUE_TASKS) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
