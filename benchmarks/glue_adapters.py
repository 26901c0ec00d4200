#!/usr/bin/env python
"""GLUE-5 test quality of moezoo's multi-task adapters on all-MiniLM-L6-v2, at matched trainable
parameters, on the CPU.

    python benchmarks/glue_adapters.py [--methods ...] [--seeds 42 43 44] [--remeasure]

Every run trains one adapter and five task heads on the five-task GLUE mix (CoLA, SST-2, MRPC, RTE, STS-B)
with the budget of recipes/configs/glue_*.yaml: 1,000 training examples per task (a fixed random subset),
2 epochs, batch 32, 64 tokens, AdamW 5e-4 with linear decay, the best validation epoch by loss (200
validation examples per task, held out of GLUE's train files); the test split is GLUE's whole dev set.
All adapters sit in the attention's query and value maps of the 6 layers:

- ``lora_r8``, ``lora_r32``: PEFT's LoRA of rank 8 (73,728 adapter parameters) and 32 (294,912).
- ``align_lora``: LoRA of rank 32 plus the Align-LoRA loss (KL, λ 0.2): ``lora_r32`` with the loss.
- ``multi_head_lora``: a shared A of rank 16, 3 heads, a task router (295,092).
- ``mhr``: PEFT's Poly with 4 skills of rank 8 and 4 splits (295,872).
- ``frozen``: the encoder frozen; the task heads alone train.

At seed 42 (the YAMLs' seed), align_lora, multi_head_lora and mhr are the zoo entries; their results.json
is read instead of training again (``--remeasure`` trains them here). Results go to
benchmarks/results/glue_adapters.{json,md}, saved after every run; a (method, seed) already measured is
skipped unless ``--remeasure`` is given, so an interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from recipe_runs import REPO, RESULTS, mean_std, merge_runs, run_recipe

from moezoo.adapters import AdaptedTransformerModel

sys.path.insert(0, str(REPO / "recipes"))
from train_glue import main as train_glue  # noqa: E402

CONFIGS = REPO / "recipes" / "configs"
#: Each method: its YAML, its flags after the YAML, and its zoo entry (trained at the YAML's seed).
METHODS: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "lora_r8": ("glue_align_lora.yaml", ("--adapter_method", "lora", "--adapter", '{"r": 8}'), None),
    "lora_r32": ("glue_align_lora.yaml", ("--adapter_method", "lora"), None),
    "align_lora": ("glue_align_lora.yaml", (), "align-lora-glue"),
    "multi_head_lora": ("glue_multi_head_lora.yaml", (), "multi-head-lora-glue"),
    "mhr": ("glue_mhr.yaml", (), "mhr-glue"),
    "frozen": ("glue_align_lora.yaml", ("--adapter_method", "frozen", "--adapter", '{"target_modules": null, "r": null}'), None),
}
ZOO_SEED = 42
#: GLUE's metric of each task, as the recipe names it.
GLUE_SCORES = {"cola": "mcc", "sst2": "accuracy", "mrpc": "f1", "rte": "accuracy", "stsb": "pearson"}
RESULTS_FILE = RESULTS / "glue_adapters.json"


def adapter_parameters(checkpoint: Path) -> dict[str, int]:
    """Trainable parameters of a saved adapted model: in the adapter, and in all (adapter and heads)."""
    model = AdaptedTransformerModel.from_pretrained(checkpoint)
    trainable = {name: parameter.numel() for name, parameter in model.named_parameters() if parameter.requires_grad}
    heads = sum(count for name, count in trainable.items() if name.startswith("heads."))
    return {"adapter_parameters": sum(trainable.values()) - heads, "trainable_parameters": sum(trainable.values())}


def record(method: str, seed: int, summary: dict[str, Any], parameters: dict[str, int], source: str) -> dict[str, Any]:
    """One row of the results file: the method, seed, parameters, budget, and GLUE test scores."""
    arguments = summary["arguments"]
    scores = {f"test_{task}_{metric}": summary["test"][f"{task}/{metric}"] for task, metric in GLUE_SCORES.items()}
    return {
        "method": method,
        "seed": seed,
        **parameters,
        "parameters": parameters["trainable_parameters"],
        **scores,
        "test_glue_mean": statistics.mean(scores.values()),
        "train_examples_per_task": arguments["max_train_samples_per_task"],
        "epochs": arguments["num_train_epochs"],
        "max_seq_length": arguments["max_seq_length"],
        "best_epoch": summary["best_epoch"],
        "train_seconds": summary["environment"]["train_seconds"],
        "source": source,
    }


def measure(method: str, seed: int, remeasure: bool, data_dir: str | None) -> dict[str, Any]:
    config, flags, zoo_entry = METHODS[method]
    zoo_folder = REPO / "model_cards" / zoo_entry if zoo_entry else None
    if seed == ZOO_SEED and zoo_folder is not None and (zoo_folder / "results.json").is_file() and not remeasure:
        summary = json.loads((zoo_folder / "results.json").read_text())
        return record(method, seed, summary, adapter_parameters(zoo_folder), f"zoo entry {zoo_entry}")
    argv = [str(CONFIGS / config), *flags, "--seed", str(seed)]
    if data_dir:
        argv += ["--data_dir", data_dir]
    summary, _ = run_recipe(train_glue, argv, adapter_parameters)
    parameters = {name: summary[name] for name in ("adapter_parameters", "trainable_parameters")}
    return record(method, seed, summary, parameters, "trained here")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[ZOO_SEED, 43, 44])
    parser.add_argument("--remeasure", action="store_true", help="train again what is measured or in the zoo")
    parser.add_argument("--data_dir", default=None, help="folder holding glue/ (default: ../shared/data)")
    args = parser.parse_args()

    done = {(run["method"], run["seed"]) for run in json.loads(RESULTS_FILE.read_text())} if RESULTS_FILE.is_file() else set()
    # Seeds outermost: every method gets its first seed before any gets a second.
    for seed in args.seeds:
        for method in args.methods:
            if (method, seed) in done and not args.remeasure:
                print(f"{method} seed {seed}: measured earlier, skipped", flush=True)
                continue
            run = measure(method, seed, args.remeasure, args.data_dir)
            print(json.dumps(run), flush=True)
            write_report(merge_runs(RESULTS_FILE, [run], key=("method", "seed")))


def write_report(runs: list[dict[str, Any]]) -> None:
    """benchmarks/results/glue_adapters.md from all runs measured so far: mean ± std over seeds."""
    lines = [
        "### Multi-task adapters on GLUE-5 (all-MiniLM-L6-v2)",
        "",
        "GLUE dev set (the test split, whole), in %: Matthews correlation (CoLA), accuracy (SST-2, RTE), F1 (MRPC), "
        "Pearson (STS-B), and their mean; mean ± std over the seeds listed. Budget of every run: 1,000 training "
        "examples per task, 2 epochs (314 steps of 32), 64 tokens, AdamW 5e-4 with linear decay, the best of the 2 "
        "epochs by validation loss; adapters in the query and value maps of all 6 layers. Training minutes: wall "
        "time on this 2-core CPU, where some runs shared it with other work (benchmarks/results/adapter_cost.md "
        "has step times measured alone).",
        "",
        "| method | adapter parameters | seeds | CoLA | SST-2 | MRPC | RTE | STS-B | mean | train min |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method in METHODS:
        rows = sorted((run for run in runs if run["method"] == method), key=lambda run: run["seed"])
        if not rows:
            continue
        cells = [
            mean_std([100 * run[f"test_{task}_{metric}"] for run in rows], digits=1) for task, metric in GLUE_SCORES.items()
        ]
        cells.append(mean_std([100 * run["test_glue_mean"] for run in rows], digits=1))
        minutes = statistics.mean(run["train_seconds"] for run in rows) / 60
        seeds = ", ".join(str(run["seed"]) for run in rows)
        lines.append(f"| {method} | {rows[0]['adapter_parameters']:,} | {seeds} | " + " | ".join(cells) + f" | {minutes:.1f} |")
    (RESULTS / "glue_adapters.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
