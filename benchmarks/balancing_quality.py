#!/usr/bin/env python
"""Δm % of every multi-task optimisation method (`moezoo.balancing`) against single-task models, beside equal
weighting with tuned task weights and learning rate.

    python benchmarks/balancing_quality.py census --single_task            # the single-task models, 3 seeds
    python benchmarks/balancing_quality.py census --tune                   # the equal-weighting grid, seed 0
    python benchmarks/balancing_quality.py census [--models mmoe home] [--methods ...] [--seeds 0 1 2]
    python benchmarks/balancing_quality.py multi_mnist --tune
    python benchmarks/balancing_quality.py multi_mnist --methods equal equal_tuned uncertainty mgda_ub equal_dense_tasks_x2 --seeds 0

Suites:

- ``census``: Census-Income task group 2 (college degree and never married: the MMoE paper's less related
  pair) with recipes/configs/census_income_mmoe.yaml's data and training (10 epochs, batch 1024, AdamW 1e-3)
  and two architectures: the recipe's MMoE and a HoME of the same expert width (one task group per task).
  The single-task models are the same architecture trained on one task, the other task's source columns
  still withheld from the inputs.
- ``multi_mnist``: the four MultiMNIST tasks of recipes/configs/multi_mnist_m3vit.yaml trained by its dense
  multi-task ViT (``moe_layers: []``), the model that loses most to single-task ViTs, or (``--models m3vit``)
  by the recipe's M³ViT itself; the single-task ViTs are benchmarks/m3vit_quality.py's ``single_*`` rows, at
  the same budget.

``Δm % = 100 / K Σ_k (M_k - S_k) / S_k`` over the tasks' headline test metrics (all higher-is-better here: AUC,
accuracy, mIoU), ``S_k`` the single-task models' mean over their seeds. ``equal_tuned`` is equal weighting at
the grid point (learning rate, task weights) with the best validation mean score on seed 0 (``--tune``), since
tuned scalarisation often matches the balancing methods. ``mgda_ub`` is MGDA on the shared representation.
``equal_dense_tasks_x2`` (multi_mnist only) is equal weighting with the two dense tasks weighted 2, the grid's
other end, at the full budget.
Results go to benchmarks/results/balancing_quality.{json,md}; a run measured again replaces its earlier one.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from recipe_runs import REPO, RESULTS, mean_std, merge_runs, run_recipe

sys.path.insert(0, str(REPO / "recipes"))
from train_tabular import main as train_tabular  # noqa: E402
from train_vit import main as train_vit  # noqa: E402

from moezoo.balancing import METHODS  # noqa: E402

RESULTS_FILE = RESULTS / "balancing_quality.json"
#: Every method of `moezoo.balancing` by name, MGDA-UB, and equal weighting at fixed task weights.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    **{method: (method, {}) for method in METHODS},
    "mgda_ub": ("mgda", {"representation": True}),
    "equal_dense_tasks_x2": ("equal", {}),
}
#: Equal weighting at fixed task weights (the tuning grid's other end, trained at the full budget), by row;
#: such a row belongs to the suite that has those tasks.
FIXED_TASK_WEIGHTS = {"equal_dense_tasks_x2": {"pixel_class": 2.0, "pixel_item": 2.0}}
ROW_ORDER = ["equal", "equal_tuned", *[name for name in VARIANTS if name != "equal"]]

CENSUS_CONFIG = REPO / "recipes" / "configs" / "census_income_mmoe.yaml"
CENSUS_TASKS = ["education", "marital"]
_CENSUS_MODEL = yaml.safe_load(CENSUS_CONFIG.read_text())["model_config"]
_HOME = {
    "num_global_experts": 2, "num_group_experts": 1, "num_task_experts": 1, "feature_gate_rank": 4,
    "expert_hidden_sizes": _CENSUS_MODEL["expert_hidden_sizes"], "tower_hidden_sizes": _CENSUS_MODEL["tower_hidden_sizes"],
}
VIT_CONFIG = REPO / "recipes" / "configs" / "multi_mnist_m3vit.yaml"
VIT_TASKS = ["top_left", "bottom_right", "pixel_class", "pixel_item"]
VIT_HEADLINE = {"top_left": "accuracy", "bottom_right": "accuracy", "pixel_class": "miou", "pixel_item": "miou"}
VIT_SINGLE_TASK = RESULTS / "m3vit_multi_mnist.json"

#: The equal-weighting grid: learning rates, and the weight of every task but the first (the first keeps 1).
TUNING_GRID = {
    "census": ([5e-4, 1e-3, 2e-3], [0.25, 0.5, 1.0, 2.0]),
    # The ViT's grid weighs the two dense tasks against the two item tasks, over a shorter budget (below).
    "multi_mnist": ([5e-4, 1e-3, 2e-3], [0.5, 1.0, 2.0]),
}
#: The ViT's tuning budget: a full run costs ~40 CPU-minutes, so its grid trains 2 epochs on 10,000 canvases.
VIT_TUNING_BUDGET = ["--num_train_epochs", "2", "--max_train_samples", "10000"]
#: What each suite's report says about its budget beyond the recipe's.
BUDGET_NOTE = {
    "census": "",
    "multi_mnist": "Every row trains the recipe's full budget (8 epochs over 55,000 canvases); the grid behind "
                   "`equal_tuned` trained 2 epochs on 10,000 canvases per point, and the single-task ViTs are "
                   "benchmarks/m3vit_quality.py's (seed 42, full budget).",
}


def census_model(name: str, tasks: list[str]) -> tuple[str, dict[str, Any]]:
    """Architecture and whole config of a census model for ``tasks`` (HoME: one task group per task)."""
    if name == "mmoe":
        return "mmoe", dict(_CENSUS_MODEL)
    return "home", {**_HOME, "task_groups": {f"group_{task}": [task] for task in tasks}}


def census_arguments(recipe: Path, model: str, seed: int, tasks: list[str], data_dir: str | None) -> list[str]:
    architecture, config = census_model(model, tasks)
    withheld = [task for task in CENSUS_TASKS if task not in tasks]
    argv = [str(recipe), "--model_name", architecture, "--model_config", json.dumps(config), "--seed", str(seed),
            "--tasks", *tasks]
    argv += ["--withheld_tasks", *withheld, "--metric_for_best_model", f"{tasks[0]}/auc"] if withheld else []
    return argv + (["--data_dir", data_dir] if data_dir else [])


#: The multi_mnist suite's models: the recipe's dense multi-task ViT, and the recipe's M³ViT as it is.
VIT_MODELS = {"dense_vit": ["--model_config", json.dumps({"moe_layers": [], "sample_task_in_training": False})], "m3vit": []}
MODELS = {"census": ["mmoe", "home"], "multi_mnist": list(VIT_MODELS)}
DEFAULT_MODELS = {"census": ["mmoe", "home"], "multi_mnist": ["dense_vit"]}


def vit_arguments(model: str, seed: int, data_dir: str | None) -> list[str]:
    argv = [str(VIT_CONFIG), *VIT_MODELS[model], "--seed", str(seed)]
    return argv + (["--data_dir", data_dir] if data_dir else [])


def balancing_arguments(variant: str, tuned: dict[str, Any] | None) -> list[str]:
    method, options = VARIANTS["equal" if variant == "equal_tuned" else variant]
    argv = ["--loss_balancing", method, "--loss_balancing_options", json.dumps(options)]
    if variant == "equal_tuned":
        if tuned is None:
            raise SystemExit("equal_tuned needs the tuning grid first: run this suite with --tune.")
        argv += ["--learning_rate", str(tuned["learning_rate"]), "--task_weights", json.dumps(tuned["task_weights"])]
    if variant in FIXED_TASK_WEIGHTS:
        argv += ["--task_weights", json.dumps(FIXED_TASK_WEIGHTS[variant])]
    return argv


def headline(suite: str, task: str) -> str:
    return "auc" if suite == "census" else VIT_HEADLINE[task]


def suite_tasks(suite: str) -> list[str]:
    return CENSUS_TASKS if suite == "census" else VIT_TASKS


def suite_rows(suite: str) -> list[str]:
    """The rows a suite can train: every row but those weighing tasks the suite does not have."""
    return [row for row in ROW_ORDER if set(FIXED_TASK_WEIGHTS.get(row, {})) <= set(suite_tasks(suite))]


def record(suite: str, model: str, method: str, seed: int, summary: dict[str, Any], seconds: float, **extra: Any) -> dict:
    tasks = [task for task in suite_tasks(suite) if f"{task}/{headline(suite, task)}" in summary["test"]]
    return {
        "suite": suite, "model": model, "method": method, "seed": seed, **extra,
        "parameters": summary["num_parameters"], "best_epoch": summary["best_epoch"],
        "validation_mean_score": summary["validation"].get("mean_score"),
        **{f"test_{task}": summary["test"][f"{task}/{headline(suite, task)}"] for task in tasks},
        "seconds": seconds,
    }


def train(suite: str, argv: list[str]) -> tuple[dict[str, Any], float]:
    return run_recipe(train_tabular if suite == "census" else train_vit, argv)


def tuned_point(runs: list[dict[str, Any]], suite: str, model: str) -> dict[str, Any] | None:
    """The tuning run of ``model`` with the best validation mean score, or ``None`` before ``--tune``."""
    grid = [run for run in runs if (run["suite"], run["model"], run["method"]) == (suite, model, "equal_tuning")]
    return max(grid, key=lambda run: run["validation_mean_score"]) if grid else None


def single_task_means(runs: list[dict[str, Any]], suite: str, model: str) -> dict[str, float]:
    """Each task's single-task test metric, the mean over seeds."""
    if suite == "multi_mnist":
        if not VIT_SINGLE_TASK.is_file():
            raise SystemExit(f"{VIT_SINGLE_TASK} is missing: run benchmarks/m3vit_quality.py for the single-task ViTs.")
        rows = {run["variant"]: run for run in json.loads(VIT_SINGLE_TASK.read_text())}
        missing = [task for task in VIT_TASKS if f"single_{task}" not in rows]
        if missing:
            raise SystemExit(f"No single-task ViT for {missing} yet: run benchmarks/m3vit_quality.py --variants "
                             + " ".join(f"single_{task}" for task in missing))
        return {task: rows[f"single_{task}"][f"test_{task}_{VIT_HEADLINE[task]}"] for task in VIT_TASKS}
    singles = [run for run in runs if (run["suite"], run["model"], run["method"]) == (suite, model, "single_task")]
    return {task: statistics.mean(run[f"test_{task}"] for run in singles if f"test_{task}" in run)
            for task in CENSUS_TASKS if any(f"test_{task}" in run for run in singles)}


def delta_m(run: dict[str, Any], single: dict[str, float], tasks: list[str]) -> float:
    return 100 * statistics.mean((run[f"test_{task}"] - single[task]) / single[task] for task in tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", choices=["census", "multi_mnist"])
    parser.add_argument("--models", nargs="+", default=None,
                        help="census: mmoe, home (default: both); multi_mnist: dense_vit (default), m3vit")
    parser.add_argument("--methods", nargs="+", default=None, choices=ROW_ORDER,
                        help="rows to train (default: every row of the suite)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tune", action="store_true", help="run the equal-weighting grid (seed 0) instead")
    parser.add_argument("--single_task", action="store_true", help="train the census single-task models instead")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--recipe_args", default="", help="more recipe flags for every run (a quick check: "
                        "'--num_train_epochs 1 --max_train_samples 2000'); the report does not say so")
    args = parser.parse_args()
    models = args.models or DEFAULT_MODELS[args.suite]
    unknown = [model for model in models if model not in MODELS[args.suite]]
    if unknown:
        parser.error(f"unknown model(s) {unknown} for the {args.suite} suite; choose from {MODELS[args.suite]}")
    methods = args.methods or suite_rows(args.suite)
    foreign = [method for method in methods if method not in suite_rows(args.suite)]
    if foreign:
        parser.error(f"row(s) {foreign} weigh tasks the {args.suite} suite does not have")

    # The census recipe without its MMoE model_config: flags override a YAML's mapping key by key, so each
    # architecture's config comes whole from here.
    recipe = Path(tempfile.gettempdir()) / "census_balancing_benchmark.yaml"
    recipe.write_text(yaml.safe_dump({key: value for key, value in yaml.safe_load(CENSUS_CONFIG.read_text()).items()
                                      if key != "model_config"}))

    def base(model: str, seed: int, tasks: list[str] | None = None) -> list[str]:
        if args.suite == "census":
            argv = census_arguments(recipe, model, seed, tasks or CENSUS_TASKS, args.data_dir)
        else:
            argv = vit_arguments(model, seed, args.data_dir)
        return argv + shlex.split(args.recipe_args)

    def save(run: dict[str, Any]) -> None:
        print(run, flush=True)
        # Saved after every run, so that an interrupted benchmark keeps what it measured.
        write_report(merge_runs(RESULTS_FILE, [run], key=("suite", "model", "method", "seed", "grid_point")))

    tasks = suite_tasks(args.suite)
    for model in models:
        if args.single_task:
            if args.suite != "census":
                parser.error("the multi_mnist suite's single-task ViTs come from benchmarks/m3vit_quality.py")
            for seed, task in itertools.product(args.seeds, CENSUS_TASKS):
                summary, seconds = train(args.suite, base(model, seed, [task]))
                save(record(args.suite, model, "single_task", seed, summary, seconds, grid_point=task))
            continue
        if args.tune:
            rates, weights = TUNING_GRID[args.suite]
            for rate, weight in itertools.product(rates, weights):
                task_weights = {task: weight for task in tasks[1:]} if args.suite == "census" else \
                    {task: weight for task in tasks if task.startswith("pixel_")}
                argv = [*base(model, 0), "--learning_rate", str(rate), "--task_weights", json.dumps(task_weights),
                        *(VIT_TUNING_BUDGET if args.suite == "multi_mnist" else [])]
                summary, seconds = train(args.suite, argv)
                save(record(args.suite, model, "equal_tuning", 0, summary, seconds, grid_point=f"lr={rate:g} w={weight:g}",
                            learning_rate=rate, task_weights=task_weights))
            continue
        earlier = json.loads(RESULTS_FILE.read_text()) if RESULTS_FILE.is_file() else []
        tuned = tuned_point(earlier, args.suite, model)
        for method, seed in itertools.product(methods, args.seeds):
            summary, seconds = train(args.suite, [*base(model, seed), *balancing_arguments(method, tuned)])
            save(record(args.suite, model, method, seed, summary, seconds, grid_point=""))


def write_report(runs: list[dict[str, Any]]) -> None:
    """benchmarks/results/balancing_quality.md from all runs measured so far."""
    lines = ["### Multi-task optimisation methods against single-task models", ""]
    for suite in ("census", "multi_mnist"):
        tasks = suite_tasks(suite)
        for model in dict.fromkeys(run["model"] for run in runs if run["suite"] == suite):
            try:
                single = single_task_means(runs, suite, model)
            except SystemExit:
                single = {}
            tuned = tuned_point(runs, suite, model)
            lines += [
                f"#### {suite}, {model}",
                "",
                "Test " + ", ".join(f"{headline(suite, task)} of {task}" for task in tasks) + " (mean ± std over seeds) "
                "and Δm % against the single-task models"
                + (f" ({', '.join(f'{task} {value:.4f}' for task, value in single.items())})" if single else
                   " (not measured yet)")
                + "."
                + (f" `equal_tuned`: learning rate {tuned['learning_rate']:g}, task weights {tuned['task_weights']}, the "
                   "best validation mean score of the grid (seed 0)." if tuned else "")
                + (BUDGET_NOTE[suite] and f" {BUDGET_NOTE[suite]}"),
                "",
                "| method | seeds | " + " | ".join(tasks) + " | Δm % | min / run |",
                "|---|---|" + "---|" * len(tasks) + "---|---|",
            ]
            for method in ROW_ORDER:
                rows = [run for run in runs if (run["suite"], run["model"], run["method"]) == (suite, model, method)]
                if not rows:
                    continue
                cells = [mean_std([run[f"test_{task}"] for run in rows]) for task in tasks]
                complete = len(single) == len(tasks)
                delta = mean_std([delta_m(run, single, tasks) for run in rows], digits=2) if complete else ""
                seeds = ", ".join(str(run["seed"]) for run in sorted(rows, key=lambda run: run["seed"]))
                minutes = statistics.mean(run["seconds"] for run in rows) / 60
                lines.append(f"| {method} | {seeds} | " + " | ".join(cells) + f" | {delta} | {minutes:.1f} |")
            lines.append("")
    (RESULTS / "balancing_quality.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
