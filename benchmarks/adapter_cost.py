#!/usr/bin/env python
"""Training step time and peak memory of each multi-task adapter against plain PEFT LoRA, side by side,
on all-MiniLM-L6-v2.

    python benchmarks/adapter_cost.py [--steps 12] [--rounds 2] [--batch_size 32] [--seq_length 64]

Each method trains the same mixed-task batches (five tasks, real GLUE text through MiniLM's tokenizer) for
a few steps, one full step each (forward, backward, AdamW), with the adapters of benchmarks/glue_adapters.py
(query and value maps of all 6 layers). Each method runs in its own process, so that its peak resident
memory is its own: the peak while training (Linux's VmHWM, reset once the data and model are loaded) and
its rise over the memory held before the first step (the activations, gradients and optimiser state
training adds). The methods run in turn for ``--rounds``
rounds; a method's step time is the lowest of its rounds' medians. Results go to
benchmarks/results/adapter_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from recipe_runs import write_results

#: Each method: adapter method and settings. The multi-head LoRA and MHR rows match lora_r32's adapter
#: parameters (295,092 and 295,872 against 294,912); multi_head_lora_token routes each token by its input.
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "lora_r8": ("lora", {"r": 8}),
    "lora_r32": ("lora", {"r": 32}),
    "align_lora": ("align_lora", {"r": 32}),
    "multi_head_lora": ("multi_head_lora", {"r": 16, "num_heads": 3, "router": "task"}),
    "multi_head_lora_token": ("multi_head_lora", {"r": 16, "num_heads": 3, "router": "token"}),
    "mhr": ("mhr", {"r": 8, "n_skills": 4, "n_splits": 4}),
    "frozen": ("frozen", {}),
}
REFERENCE = "lora_r32"
TARGET_RATIO = 1.3


def resident_mb(field: str = "VmRSS") -> float:
    """This process's resident memory now (``VmRSS``) or at its peak since the last `reset_peak` (``VmHWM``), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise OSError(f"/proc/self/status has no {field}.")


def reset_peak() -> None:
    """Start the peak resident memory (``VmHWM``) afresh from now (Linux's clear_refs, value 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def measure(method: str, steps: int, batch_size: int, seq_length: int, threads: int, queue: multiprocessing.Queue) -> None:
    """Time ``steps`` training steps of ``method`` (after 3 warm-up steps) in this process; put the result on ``queue``."""
    import torch
    from transformers import AutoTokenizer

    from moezoo.adapters import AdaptedTransformerModel
    from moezoo.adapters.base_models import MINILM, load_pretrained
    from moezoo.data.glue import GLUE_TASKS, glue_task_specs, load_encoded_glue

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    adapter_method, settings = METHODS[method]
    adapter = {"target_modules": ["query", "value"], **settings} if adapter_method != "frozen" else {}
    model = AdaptedTransformerModel.from_base(MINILM, glue_task_specs(), adapter_method, adapter=adapter)
    tokenizer = load_pretrained(AutoTokenizer, MINILM)
    data = load_encoded_glue(tokenizer, tasks=list(GLUE_TASKS), max_seq_length=seq_length,
                             max_train_samples_per_task=batch_size, splits=("train",))["train"]
    order = torch.randperm(len(data["task_ids"]), generator=torch.Generator().manual_seed(0))
    batches = [{name: value[order[start : start + batch_size]] for name, value in data.items()}
               for start in range(0, len(order) - batch_size + 1, batch_size)]
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    model.train()
    reset_peak()  # loading the data and the model peaks higher than training: measure training alone
    loaded_mb = resident_mb()
    seconds = []
    for step in range(3 + steps):
        batch = batches[step % len(batches)]
        start = time.perf_counter()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= 3:
            seconds.append(time.perf_counter() - start)
    peak_mb = resident_mb("VmHWM")
    heads = sum(parameter.numel() for name, parameter in model.named_parameters() if name.startswith("heads."))
    queue.put({
        "method": method, "adapter_parameters": sum(parameter.numel() for parameter in trainable) - heads,
        "step_ms": 1000 * statistics.median(seconds), "peak_mb": peak_mb, "training_mb": peak_mb - loaded_mb,
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seq_length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")  # a fresh process per measurement: its own peak memory
    rounds: dict[str, list[dict[str, Any]]] = {method: [] for method in args.methods}
    for round_index in range(args.rounds):
        for method in args.methods:
            queue = context.Queue()
            process = context.Process(
                target=measure, args=(method, args.steps, args.batch_size, args.seq_length, args.threads, queue)
            )
            process.start()
            result = queue.get()
            process.join()
            print(f"round {round_index}: {json.dumps(result)}", flush=True)
            rounds[method].append(result)
    rows = []
    for method, measured in rounds.items():
        rows.append({
            **min(measured, key=lambda result: result["step_ms"]),
            "peak_mb": max(result["peak_mb"] for result in measured),
            "training_mb": max(result["training_mb"] for result in measured),
        })
    summary = {
        "batch_size": args.batch_size, "seq_length": args.seq_length, "steps": args.steps, "rounds": args.rounds,
        "threads": args.threads, "torch": __import__("torch").__version__, "rows": rows,
    }
    write_results("adapter_cost", summary, report(summary))


def report(summary: dict[str, Any]) -> str:
    rows = {row["method"]: row for row in summary["rows"]}
    reference = rows.get(REFERENCE)
    lines = [
        "### Adapter training cost against plain LoRA (all-MiniLM-L6-v2)",
        "",
        f"One training step (forward, backward, AdamW) on mixed-task GLUE batches of {summary['batch_size']} x "
        f"{summary['seq_length']} tokens, {summary['threads']} CPU threads, torch {summary['torch']}: median of "
        f"{summary['steps']} steps, lowest of {summary['rounds']} rounds; each method in its own process. Peak is "
        "the process's peak resident memory while training; training adds what it rose by over the memory held "
        "before the first step "
        f"(activations, gradients, optimiser state). Ratios are against `{REFERENCE}` (plain PEFT LoRA with as "
        f"many adapter parameters as the multi-head LoRA and MHR rows); target for those two: {TARGET_RATIO}x.",
        "",
        "| method | adapter parameters | step ms | step vs lora_r32 | peak MB | training adds MB | vs lora_r32 |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, row in rows.items():
        ratio = f"{row['step_ms'] / reference['step_ms']:.2f}x" if reference else ""
        memory_ratio = f"{row['training_mb'] / reference['training_mb']:.2f}x" if reference else ""
        lines.append(
            f"| {method} | {row['adapter_parameters']:,} | {row['step_ms']:.0f} | {ratio} | {row['peak_mb']:.0f} | "
            f"{row['training_mb']:.0f} | {memory_ratio} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
