#!/usr/bin/env python
"""Training throughput of the main job (MMoE on Census-Income), in examples per second.

    python benchmarks/training_throughput.py [--rounds 3] [--epochs 10]

Three ways of running the same training steps, side by side and taking turns in every round:

- ``datasets``: `moezoo.training.train` reading batches through `datasets` row access, with every
  value check in `forward` (the loop as it was before the data were held as tensors);
- ``in_memory``: `train` as the recipe runs it now: the encoded split materialised as tensors once,
  checked once, batched by index;
- ``model_step``: the model's own training step (forward, backward, AdamW) on batches sliced
  beforehand and held in a list: the most any data path can give.

Each variant trains a fresh model of the main job's configuration for ``--epochs`` epochs (no
evaluation). Results go to benchmarks/results/training_throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration

import moezoo
from moezoo.training import TrainingConfig, materialize, train

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO / "recipes"))
from train_tabular import DataArguments, load_and_fit_processor  # noqa: E402

BATCH_SIZE = 1024


def build_model(processor: moezoo.TabularProcessor, tasks: list[str]) -> moezoo.MultiTaskPreTrainedModel:
    """The main job's model (recipes/configs/census_income_mmoe.yaml)."""
    torch.manual_seed(0)
    return moezoo.create_model(
        "mmoe", tasks=[{"name": name} for name in tasks], features=processor.feature_schema.to_dict(),
        num_shared_experts=8, expert_hidden_sizes=[16], tower_hidden_sizes=[8],
    )


def time_loop(model, train_split, epochs: int, in_memory: bool) -> float:
    """Seconds `train` takes for ``epochs`` epochs without evaluation."""
    config = TrainingConfig(
        output_dir=tempfile.mkdtemp(), num_train_epochs=epochs, per_device_train_batch_size=BATCH_SIZE,
        dataloader_in_memory=in_memory,
    )
    accelerator = Accelerator(dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
    start = time.perf_counter()
    train(model, train_split, None, config, accelerator)
    return time.perf_counter() - start


def time_model_step(model, batches: list[dict[str, torch.Tensor]], epochs: int) -> float:
    """Seconds of the bare training step over pre-sliced batches."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    start = time.perf_counter()
    with model.skip_input_value_checks(labels_complete=True):
        for _ in range(epochs):
            for batch in batches:
                loss = model(**batch).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every variant; medians are reported")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per timed run (the main job trains 10)")
    args = parser.parse_args()

    data_args = DataArguments()
    raw, processor = load_and_fit_processor(data_args, seed=42)
    train_split = raw["train"].map(
        lambda batch: dict(processor(batch, return_tensors=None, require_labels=True)),
        batched=True, batch_size=10_000, remove_columns=raw["train"].column_names,
    ).with_format("torch")
    num_examples = len(train_split)
    columns = materialize(train_split).columns
    batches = [
        {name: value[start : start + BATCH_SIZE] for name, value in columns.items()}
        for start in range(0, num_examples, BATCH_SIZE)
    ]
    # One untimed pass of each, so that allocator and thread-pool start-up land in no measurement.
    time_model_step(build_model(processor, data_args.tasks), batches[:20], 1)
    time_loop(build_model(processor, data_args.tasks), train_split.select(range(20 * BATCH_SIZE)), 1, True)

    seconds: dict[str, list[float]] = {"datasets": [], "in_memory": [], "model_step": []}
    for round_index in range(args.rounds):
        seconds["datasets"].append(time_loop(build_model(processor, data_args.tasks), train_split, args.epochs, False))
        seconds["in_memory"].append(time_loop(build_model(processor, data_args.tasks), train_split, args.epochs, True))
        seconds["model_step"].append(time_model_step(build_model(processor, data_args.tasks), batches, args.epochs))
        print(f"round {round_index}: " + ", ".join(f"{name} {values[-1]:.2f}s" for name, values in seconds.items()), flush=True)
    throughput = {name: num_examples * args.epochs / statistics.median(values) for name, values in seconds.items()}
    ratios = {name: throughput[name] / throughput["model_step"] for name in ("datasets", "in_memory")}
    environment = {"torch": torch.__version__, "threads": torch.get_num_threads(), "processor": platform.processor() or platform.machine()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "training_throughput.json").write_text(
        json.dumps(
            {"environment": environment, "examples": num_examples, "epochs": args.epochs, "rounds": args.rounds,
             "seconds": seconds, "examples_per_second": throughput, "ratio_to_model_step": ratios},
            indent=2,
        ) + "\n"
    )
    lines = [
        f"MMoE on Census-Income ({num_examples:,} training examples, batch {BATCH_SIZE}, {args.epochs} epoch(s) per run), "
        f"CPU, {environment['threads']} threads, torch {environment['torch']}; median of {args.rounds} rounds.",
        "",
        "| data path | examples/s | ratio to the model's own step |",
        "|---|---|---|",
        f"| before: batches read through datasets, value checks in every forward | {throughput['datasets']:,.0f} | {ratios['datasets']:.2f} |",
        f"| after: materialised tensors, batched by index, checked once | {throughput['in_memory']:,.0f} | {ratios['in_memory']:.2f} |",
        f"| the model's own step on pre-sliced batches | {throughput['model_step']:,.0f} | 1.00 |",
    ]
    (RESULTS / "training_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
