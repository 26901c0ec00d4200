#!/usr/bin/env python
"""GLUE-5 dev-set quality of moezoo's multi-task adapters on all-MiniLM-L6-v2, against plain multi-task LoRA
and one single-task LoRA per task at the same budget, on the CPU.

    python benchmarks/glue_adapters.py [--methods ...] [--seeds 42 43 44] [--remeasure]

Every multi-task run trains one adapter and five task heads on the five-task GLUE mix (CoLA, SST-2, MRPC, RTE,
STS-B) with the budget of recipes/configs/glue_*.yaml: the tasks' whole training files less a 10 % validation
hold-out (79,026 examples), batches of 32 drawn with temperature-2 task mixing and grouped by length, 2 epochs
(4,940 steps), examples cut at 128 tokens, AdamW with linear decay at the YAML's learning rate (the LoRA rows
5e-4, multi-head LoRA 1e-3, MHR 2e-3), gradients clipped at 1, the better of
the 2 epochs by the mean of the tasks' GLUE metrics on validation (``mean_score``); the test split is GLUE's
whole dev set. All adapters sit in every linear map
of the 6 encoder layers (query, key, value and the three dense maps), with about 332,000 parameters, their
updates scaled by 2 (PEFT's Poly: by 1 / r):

- ``lora``: PEFT's LoRA of rank 8 (331,776 adapter parameters), every task through the same update.
- ``align_lora``: ``lora`` plus Align-LoRA's loss as the authors' code computes it (KL, λ 0.2).
- ``align_lora_pooled``: ``lora`` plus the pooled, padding-masked form of the loss, with its own λ, chosen on
  the validation hold-out among `POOLED_WEIGHTS` (``--tune_pooled_weight``: each trained 1,500 steps).
- ``multi_head_lora``: a shared A of rank 4, 3 heads, a task router (332,316).
- ``mhr``: PEFT's Poly with 4 skills of rank 2 and 4 splits (334,656).
- ``single_task_lora``: one LoRA of rank 8 per task, each trained on its task alone for as many steps as the
  multi-task runs give that task (its share of the temperature mixing times 4,940 steps), so that the five
  runs together cost one multi-task run; the bar each multi-task adapter is compared against, task by task.

At seed 42 (the YAMLs' seed), align_lora, multi_head_lora and mhr are the zoo entries; their results.json is
read instead of training again (``--remeasure`` trains them here). Results go to
benchmarks/results/glue_adapters.{json,md}, saved after every run; a run already measured is skipped unless
``--remeasure`` is given, so an interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from recipe_runs import REPO, RESULTS, mean_std, merge_runs, run_recipe

from moezoo.adapters import AdaptedTransformerModel
from moezoo.data.glue import GLUE_TASKS, glue_subsets
from moezoo.training import task_sampling_probabilities
from moezoo.training.arguments import load_yaml_config

sys.path.insert(0, str(REPO / "recipes"))
from train_glue import main as train_glue  # noqa: E402

CONFIGS = REPO / "recipes" / "configs"
SINGLE_TASK = "single_task_lora"
#: Each method: its YAML, its flags after the YAML, and its zoo entry (trained at the YAML's seed).
METHODS: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "lora": ("glue_align_lora.yaml", ("--adapter_method", "lora"), None),
    "align_lora": ("glue_align_lora.yaml", (), "align-lora-glue"),
    "align_lora_pooled": ("glue_align_lora.yaml", ("--alignment_form", "pooled"), None),
    "multi_head_lora": ("glue_multi_head_lora.yaml", (), "multi-head-lora-glue"),
    "mhr": ("glue_mhr.yaml", (), "mhr-glue"),
    SINGLE_TASK: ("glue_align_lora.yaml", ("--adapter_method", "lora"), None),
}
ZOO_SEED = 42
POOLED = "align_lora_pooled"
#: The pooled form's λ candidates and the steps each is trained for when choosing among them (seed 42).
POOLED_WEIGHTS = (0.05, 0.2, 1.0)
TUNING_STEPS = 1500
#: GLUE's metric of each task, as the recipe names it.
GLUE_SCORES = {"cola": "mcc", "sst2": "accuracy", "mrpc": "f1", "rte": "accuracy", "stsb": "pearson"}
RESULTS_FILE = RESULTS / "glue_adapters.json"


def adapter_parameters(checkpoint: Path) -> dict[str, int]:
    """Trainable parameters of a saved adapted model: in the adapter, and in all (adapter and heads)."""
    model = AdaptedTransformerModel.from_pretrained(checkpoint)
    trainable = {name: parameter.numel() for name, parameter in model.named_parameters() if parameter.requires_grad}
    heads = sum(count for name, count in trainable.items() if name.startswith("heads."))
    return {"adapter_parameters": sum(trainable.values()) - heads, "trainable_parameters": sum(trainable.values())}


def single_task_steps(config: str, data_dir: str | None) -> dict[str, int]:
    """Each task's share of the multi-task runs' steps: its temperature-mixing probability times their steps."""
    settings = load_yaml_config(CONFIGS / config)
    train = glue_subsets(data_dir, splits=("train",))["train"]
    counts = Counter(train.with_format("arrow", columns=["task"])[:].column("task").to_pylist())
    sizes = [counts[name] for name in GLUE_TASKS]
    probabilities = task_sampling_probabilities(sizes, settings["task_mixing"], settings.get("task_mixing_temperature", 2.0))
    total = settings["num_train_epochs"] * math.ceil(sum(sizes) / settings["per_device_train_batch_size"])
    return {name: max(1, round(total * float(share))) for name, share in zip(GLUE_TASKS, probabilities)}


def record(method: str, seed: int, summary: dict[str, Any], parameters: dict[str, int], source: str) -> dict[str, Any]:
    """One row of the results file: the method, the tasks it trained, seed, parameters, budget, GLUE test scores."""
    arguments = summary["arguments"]
    tasks = list(arguments["tasks"])
    return {
        "run": f"{method}/{'+'.join(tasks)}",
        "method": method,
        "tasks": tasks,
        "seed": seed,
        **parameters,
        **{f"test_{task}_{GLUE_SCORES[task]}": summary["test"][f"{task}/{GLUE_SCORES[task]}"] for task in tasks},
        "epochs": arguments["num_train_epochs"],
        "max_train_steps": arguments.get("max_train_steps"),
        "max_seq_length": arguments["max_seq_length"],
        "best_epoch": summary["best_epoch"],
        "train_seconds": summary["environment"]["train_seconds"],
        "source": source,
    }


def measure(
    method: str, seed: int, remeasure: bool, data_dir: str | None, task: str | None = None, keep_in: Path | None = None
) -> dict[str, Any]:
    config, flags, zoo_entry = METHODS[method]
    zoo_folder = REPO / "model_cards" / zoo_entry if zoo_entry else None
    if seed == ZOO_SEED and zoo_folder is not None and (zoo_folder / "results.json").is_file() and not remeasure:
        summary = json.loads((zoo_folder / "results.json").read_text())
        return record(method, seed, summary, adapter_parameters(zoo_folder), f"zoo entry {zoo_entry}")
    argv = [str(CONFIGS / config), *flags, "--seed", str(seed)]
    if method == POOLED:
        argv += ["--alignment_weight", str(chosen_pooled_weight())]
    if task is not None:
        argv += ["--tasks", task, "--max_train_steps", str(single_task_steps(config, data_dir)[task])]
    if data_dir:
        argv += ["--data_dir", data_dir]
    kept = keep_in / f"{method}_{task or 'all'}_seed{seed}" if keep_in is not None else None
    summary, _ = run_recipe(train_glue, argv, adapter_parameters, keep_in=kept)
    parameters = {name: summary[name] for name in ("adapter_parameters", "trainable_parameters")}
    return record(method, seed, summary, parameters, "trained here")


def tuning_rows() -> list[dict[str, Any]]:
    """The measured λ candidates of the pooled form (``run`` = ``tune_pooled/<λ>``)."""
    runs = json.loads(RESULTS_FILE.read_text()) if RESULTS_FILE.is_file() else []
    return [run for run in runs if run["run"].startswith("tune_pooled/")]


def chosen_pooled_weight() -> float:
    """The pooled form's λ with the best validation mean_score among the measured candidates."""
    rows = tuning_rows()
    if not rows:
        raise SystemExit(f"{POOLED} trains with the λ chosen on validation data: run `python benchmarks/glue_adapters.py "
                         "--tune_pooled_weight` first.")
    return max(rows, key=lambda row: row["validation_mean_score"])["alignment_weight"]


def tune_pooled_weight(weights: list[float], data_dir: str | None) -> None:
    """Train the pooled form at each λ of ``weights`` for `TUNING_STEPS` steps (seed 42) and record each one's
    validation mean_score (the choice never sees the test split)."""
    config, flags, _ = METHODS[POOLED]
    for weight in weights:
        argv = [str(CONFIGS / config), *flags, "--seed", str(ZOO_SEED), "--alignment_weight", str(weight),
                "--max_train_steps", str(TUNING_STEPS)]
        if data_dir:
            argv += ["--data_dir", data_dir]
        summary, seconds = run_recipe(train_glue, argv)
        row = {"run": f"tune_pooled/{weight:g}", "seed": ZOO_SEED, "method": "tune_pooled", "alignment_weight": weight,
               "steps": TUNING_STEPS, "validation_mean_score": summary["validation"]["mean_score"],
               "train_seconds": round(seconds, 1)}
        print(json.dumps(row), flush=True)
        write_report(merge_runs(RESULTS_FILE, [row], key=("run", "seed")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[ZOO_SEED, 43, 44])
    parser.add_argument("--remeasure", action="store_true", help="train again what is measured or in the zoo")
    parser.add_argument(
        "--tasks", nargs="+", default=list(GLUE_TASKS), choices=list(GLUE_TASKS),
        help=f"the tasks {SINGLE_TASK} trains (default: all five; the multi-task methods always train all five)",
    )
    parser.add_argument("--data_dir", default=None, help="folder holding glue/ (default: ../shared/data)")
    parser.add_argument(
        "--keep_checkpoints", type=Path, default=None,
        help="keep each run's output folder here (<method>_<task>_seed<seed>/, its best/ a checkpoint): the "
        "single-task LoRAs are the sources of benchmarks/glue_merging.py",
    )
    parser.add_argument(
        "--tune_pooled_weight", nargs="*", type=float, default=None, metavar="λ",
        help=f"choose the pooled form's λ on validation data among these (default {list(POOLED_WEIGHTS)}), each trained "
        f"{TUNING_STEPS} steps, before any method runs",
    )
    args = parser.parse_args()

    if args.tune_pooled_weight is not None:
        tune_pooled_weight(args.tune_pooled_weight or list(POOLED_WEIGHTS), args.data_dir)
    done = {(run["run"], run["seed"]) for run in json.loads(RESULTS_FILE.read_text())} if RESULTS_FILE.is_file() else set()
    # Seeds outermost: every method gets its first seed before any gets a second.
    for seed in args.seeds:
        for method in args.methods:
            for task in args.tasks if method == SINGLE_TASK else [None]:
                name = f"{method}/{task or '+'.join(GLUE_TASKS)}"
                if (name, seed) in done and not args.remeasure:
                    print(f"{name} seed {seed}: measured earlier, skipped", flush=True)
                    continue
                run = measure(method, seed, args.remeasure, args.data_dir, task, args.keep_checkpoints)
                print(json.dumps(run), flush=True)
                write_report(merge_runs(RESULTS_FILE, [run], key=("run", "seed")))


def method_rows(runs: list[dict[str, Any]], method: str) -> list[dict[str, Any]]:
    """The method's runs as one row per seed: a single-task method's per-task runs merged into one (scores of
    every task, training time summed); a seed lacking a task's run is left out."""
    rows = []
    for seed in sorted({run["seed"] for run in runs if run["method"] == method}):
        parts = [run for run in runs if run["method"] == method and run["seed"] == seed]
        merged = {key: value for part in parts for key, value in part.items()}
        if all(f"test_{task}_{metric}" in merged for task, metric in GLUE_SCORES.items()):
            merged["train_seconds"] = sum(part["train_seconds"] for part in parts)
            merged["test_glue_mean"] = statistics.mean(merged[f"test_{task}_{metric}"] for task, metric in GLUE_SCORES.items())
            rows.append(merged)
    return rows


def learning_rates() -> str:
    """Each method's learning rate, from its YAML."""
    return ", ".join(
        f"{method} {load_yaml_config(CONFIGS / config)['learning_rate']:g}" for method, (config, _, _) in METHODS.items()
    )


def write_report(runs: list[dict[str, Any]]) -> None:
    """benchmarks/results/glue_adapters.md from all runs measured so far: mean ± std over seeds."""
    rates = learning_rates()
    lines = [
        "### Multi-task adapters on GLUE-5 (all-MiniLM-L6-v2)",
        "",
        "GLUE dev set (the test split, whole), in %: Matthews correlation (CoLA), accuracy (SST-2, RTE), F1 (MRPC), "
        "Pearson (STS-B), and their mean; mean ± std over the seeds listed. Budget of every multi-task run: the five "
        "tasks' whole training files less a 10 % validation hold-out, 2 epochs of temperature-2 task mixing (4,940 "
        "steps of 32, batched by length), 128 tokens, AdamW with linear decay at its YAML's learning rate "
        f"({rates}), the better epoch by validation mean_score; `single_task_lora` gives each task's own "
        "LoRA the steps the mixing gives that task (the five runs together cost one multi-task run). Adapters in "
        "every linear map of the 6 encoder layers. Training minutes: wall time on this 2-core CPU (summed over the "
        "five runs for `single_task_lora`); some runs shared the CPU with other work.",
        "",
        "| method | adapter parameters | seeds | CoLA | SST-2 | MRPC | RTE | STS-B | mean | train min |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method in METHODS:
        rows = method_rows(runs, method)
        if not rows:
            continue
        cells = [
            mean_std([100 * run[f"test_{task}_{metric}"] for run in rows], digits=1) for task, metric in GLUE_SCORES.items()
        ]
        cells.append(mean_std([100 * run["test_glue_mean"] for run in rows], digits=1))
        minutes = statistics.mean(run["train_seconds"] for run in rows) / 60
        seeds = ", ".join(str(run["seed"]) for run in rows)
        lines.append(f"| {method} | {rows[0]['adapter_parameters']:,} | {seeds} | " + " | ".join(cells) + f" | {minutes:.1f} |")
    tuning = [run for run in runs if run["run"].startswith("tune_pooled/")]
    if tuning:
        lines += ["", f"λ of `{POOLED}`, chosen on the validation hold-out (mean_score after {TUNING_STEPS} steps, seed "
                  f"{ZOO_SEED}): " + ", ".join(f"λ {run['alignment_weight']:g}: {run['validation_mean_score']:.4f}"
                                                for run in sorted(tuning, key=lambda run: run["alignment_weight"]))]
    (RESULTS / "glue_adapters.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
