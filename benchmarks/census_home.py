#!/usr/bin/env python
"""Census-Income, three tasks, equal parameter budget: Shared-Bottom, MMoE, PLE, DSelect-k, HoME and
HoME with each of its components off; plus the experts' zero-activation rates (HoME's expert collapse).

    python benchmarks/census_home.py [--seeds 0 1 2] [--models home mmoe ...]

Every run is recipes/configs/census_income_home.yaml's data and training (tasks income, marital,
education; 10 epochs) with another architecture, its config given whole by the benchmark. Budget: every model gets the expert width whose effective parameter count
(`moezoo.routing.effective_num_parameters`: all parameters less masked-out gate weights, embeddings
and towers included) is closest to the HoME config's, so an ablation that removes parameters gets
wider experts. The zero-activation rate is measured on the best checkpoint over the test split.
``single_task`` is the single-task baseline: one Shared-Bottom network per task, of the Shared-Bottom
row's width, trained on its task alone with the other tasks' source columns still withheld from its
inputs (``--withheld_tasks``); its parameters are the networks' together. Results go to benchmarks/results/census_income_home.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import AutoFeatureExtractor, AutoModel

from recipe_runs import REPO, RESULTS, merge_runs, mean_std, mean_std_table, run_recipe, single_task_row

sys.path.insert(0, str(REPO / "recipes"))
from train_tabular import DataArguments, load_and_fit_processor, main as train_tabular  # noqa: E402

import moezoo  # noqa: E402
from moezoo.routing import RoutingStatistics, effective_num_parameters  # noqa: E402

CONFIG = REPO / "recipes" / "configs" / "census_income_home.yaml"
RECIPE_WITHOUT_MODEL = Path(tempfile.gettempdir()) / "census_income_home_benchmark.yaml"
TASKS = ["income", "marital", "education"]
RECIPE_MODEL_CONFIG = yaml.safe_load(CONFIG.read_text())["model_config"]
HOME_WIDTH = RECIPE_MODEL_CONFIG["expert_hidden_sizes"][0]
# The recipe's HoME config less the sizes, which the benchmark sets for every model alike.
HOME_CONFIG = {key: value for key, value in RECIPE_MODEL_CONFIG.items() if not key.endswith("hidden_sizes")}
# name -> (architecture, config without expert width). Towers are the same for all.
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "shared_bottom": ("shared_bottom", {}),
    "mmoe": ("mmoe", {"num_shared_experts": 8}),
    "ple": ("ple", {"num_shared_experts": 4, "num_task_experts": 2, "num_levels": 2}),
    "dselect_k": ("dselect_k", {"num_shared_experts": 8, "num_selectors": 2}),
    "home": ("home", HOME_CONFIG),
    "home w/o expert normalisation (ReLU)": ("home", {**HOME_CONFIG, "expert_normalization": None, "expert_activation": "relu"}),
    "home w/o hierarchy": ("home", {**HOME_CONFIG, "hierarchical": False}),
    "home w/o feature-gate": ("home", {**HOME_CONFIG, "feature_gate_rank": None}),
    "home w/o self-gate": ("home", {**HOME_CONFIG, "self_gate": False}),
}
COMMON = {"tower_hidden_sizes": RECIPE_MODEL_CONFIG["tower_hidden_sizes"]}
#: ``single_task``: one Shared-Bottom network per task (of the benchmark's Shared-Bottom width), trained on its
#: task alone with the other tasks' source columns still withheld from its inputs.
ROW_ORDER = ["single_task", *MODELS]


def effective_parameters(architecture: str, config: dict[str, Any], features: dict, width: int) -> int:
    tasks = [{"name": name, "kind": "binary"} for name in TASKS]
    model = moezoo.create_model(
        architecture, tasks=tasks, features=features, expert_hidden_sizes=[width], **COMMON, **config
    )
    return effective_num_parameters(model)


def width_for_budget(architecture: str, config: dict[str, Any], features: dict, budget: int) -> tuple[int, int]:
    """The expert width whose effective parameter count is closest to ``budget`` (counts grow with width)."""
    low, high = 1, 4096
    while high - low > 1:
        middle = (low + high) // 2
        if effective_parameters(architecture, config, features, middle) <= budget:
            low = middle
        else:
            high = middle
    counts = {width: effective_parameters(architecture, config, features, width) for width in (low, high)}
    width = min(counts, key=lambda candidate: abs(counts[candidate] - budget))
    return width, counts[width]


def zero_activation_rates(checkpoint: Path, test_rows) -> dict[str, Any]:
    """Per expert bank of the router: the mean and the largest per-expert zero-activation rate."""
    model = AutoModel.from_pretrained(checkpoint).eval()
    processor = AutoFeatureExtractor.from_pretrained(checkpoint)
    with RoutingStatistics(model) as stats, torch.no_grad():
        for start in range(0, len(test_rows), 8192):
            model(**processor(test_rows.iloc[start : start + 8192]))
    rates = {name: rate for name, rate in stats.zero_activation_rate().items() if name.startswith("router.")}
    every_expert = torch.cat(list(rates.values()))
    return {"zero_rate_mean": every_expert.mean().item(), "zero_rate_max": every_expert.max().item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=ROW_ORDER, choices=ROW_ORDER)
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args()

    # The recipe without its HoME model_config: flags override a YAML's mapping key by key, so every
    # architecture's config comes whole from the benchmark instead.
    RECIPE_WITHOUT_MODEL.write_text(yaml.safe_dump({key: value for key, value in yaml.safe_load(CONFIG.read_text()).items()
                                                    if key != "model_config"}))
    data_args = DataArguments(tasks=TASKS, data_dir=args.data_dir)
    raw, processor = load_and_fit_processor(data_args, seed=0)
    features = processor.feature_schema.to_dict()
    test_rows = raw["test"].to_pandas().drop(columns=TASKS)
    budget = effective_parameters("home", HOME_CONFIG, features, HOME_WIDTH)
    print(f"budget: {budget:,} effective parameters (HoME, experts of {HOME_WIDTH})", flush=True)

    for name in args.models:
        architecture, config = MODELS["shared_bottom" if name == "single_task" else name]
        width, parameters = width_for_budget(architecture, config, features, budget)
        for seed in args.seeds:
            model_config = {**config, **COMMON, "expert_hidden_sizes": [width]}
            argv = [
                str(RECIPE_WITHOUT_MODEL), "--model_name", architecture, "--model_config", json.dumps(model_config),
                "--seed", str(seed),
            ]
            if args.data_dir:
                argv += ["--data_dir", args.data_dir]
            if name == "single_task":
                row = single_task_row(
                    train_tabular, TASKS,
                    lambda task, others: [*argv, "--tasks", task, "--withheld_tasks", *others,
                                          "--metric_for_best_model", f"{task}/auc"],
                )
                run = {"model": name, "seed": seed, "expert_width": width, **row}
                print(run, flush=True)
                write_report(merge_runs(RESULTS / "census_income_home.json", [run], key=("model", "seed")), budget)
                continue
            summary, seconds = run_recipe(
                train_tabular, argv, inspect_checkpoint=lambda folder: zero_activation_rates(folder, test_rows)
            )
            run = {
                "model": name,
                "seed": seed,
                "expert_width": width,
                "parameters": parameters,
                "best_epoch": summary["best_epoch"],
                **{f"test_{task}_auc": summary["test"][f"{task}/auc"] for task in TASKS},
                "zero_rate_mean": summary["zero_rate_mean"],
                "zero_rate_max": summary["zero_rate_max"],
                "seconds": seconds,
            }
            print(run, flush=True)
            # Saved after every run, so that an interrupted benchmark keeps what it measured.
            write_report(merge_runs(RESULTS / "census_income_home.json", [run], key=("model", "seed")), budget)


def write_report(runs: list[dict[str, Any]], budget: int) -> None:
    """benchmarks/results/census_income_home.md from all runs measured so far."""
    table = mean_std_table(runs, "model", ROW_ORDER, {f"test AUC {task}": f"test_{task}_auc" for task in TASKS})
    collapse = [
        "| model | expert width | mean zero-activation rate | largest per-expert rate |",
        "|---|---|---|---|",
    ]
    for name in MODELS:
        rows = [run for run in runs if run["model"] == name]
        if rows:
            collapse.append(
                f"| {name} | {rows[0]['expert_width']} | {mean_std([run['zero_rate_mean'] for run in rows], 3)} "
                f"| {statistics.mean(run['zero_rate_max'] for run in rows):.3f} |"
            )
    text = "\n".join(
        [
            f"Census-Income, tasks {TASKS}, task groups {HOME_CONFIG['task_groups']}; 10 epochs, batch 1024, "
            f"AdamW 1e-3; every model at the HoME config's budget of {budget:,} effective parameters (its "
            "expert width chosen to match); test AUC of the best validation epoch, mean ± std over seeds. "
            "`single_task`: one Shared-Bottom network of the Shared-Bottom row's width per task, trained on its task "
            "alone (its parameters: the networks' together).",
            "",
            *table,
            "",
            "Zero-activation rate of the routing experts' outputs on the test split (fraction of values exactly 0; "
            "mean over experts, and the largest single expert's, averaged over seeds):",
            "",
            *collapse,
            "",
        ]
    )
    (RESULTS / "census_income_home.md").write_text(text)
    print(text, flush=True)


if __name__ == "__main__":
    main()
