#!/usr/bin/env python
"""Test AUC of Shared-Bottom, OMoE, MMoE and PLE on Census-Income task group 1, over several seeds, beside
single-task models.

    python benchmarks/census_quality.py [--seeds 0 1 2] [--models single_task shared_bottom omoe mmoe ple]

Each run is the README's main job (recipes/configs/census_income_mmoe.yaml) with another model_name
and seed, each architecture with its own default config (the YAML's MMoE sizes are not applied).
``single_task`` is one Shared-Bottom network per task, trained on that task alone with the other task's
source columns still withheld from its inputs (``--withheld_tasks``), so that it reads what the
multi-task models read; its row gives each task's AUC from that task's network and the networks'
parameters together. Results go to benchmarks/results/census_income_group1.{json,md}; runs of a model
and seed replace earlier results for them, so models can be measured separately.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from recipe_runs import REPO, RESULTS, merge_runs, mean_std_table, run_recipe, single_task_row

sys.path.insert(0, str(REPO / "recipes"))
from train_tabular import main as train_tabular  # noqa: E402

CONFIG = REPO / "recipes" / "configs" / "census_income_mmoe.yaml"
TASKS = ["income", "marital"]
MODEL_ORDER = ["single_task", "shared_bottom", "omoe", "mmoe", "cgc", "ple"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--models", nargs="+", default=["single_task", "shared_bottom", "omoe", "mmoe", "ple"], choices=MODEL_ORDER
    )
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args()

    for name in args.models:
        for seed in args.seeds:
            if name == "single_task":
                run = single_task_run(seed, args.data_dir)
            else:
                summary, seconds = run_recipe(train_tabular, recipe_arguments(name, seed, args.data_dir))
                run = {
                    "model": name,
                    "seed": seed,
                    "parameters": summary["num_parameters"],
                    "best_epoch": summary["best_epoch"],
                    **{f"test_{task}_auc": summary["test"][f"{task}/auc"] for task in TASKS},
                    "seconds": seconds,
                }
            print(run, flush=True)
            # Saved after every run, so that an interrupted benchmark keeps what it measured.
            write_report(merge_runs(RESULTS / "census_income_group1.json", [run], key=("model", "seed")))


def recipe_arguments(model_name: str, seed: int, data_dir: str | None, *extra: str) -> list[str]:
    """The recipe's flags for one run: the YAML with another architecture (at its default config) and seed."""
    argv = [str(CONFIG), "--model_name", model_name, "--model_config", "{}", "--seed", str(seed), *extra]
    return argv + (["--data_dir", data_dir] if data_dir else [])


def single_task_run(seed: int, data_dir: str | None) -> dict[str, Any]:
    """One Shared-Bottom network per task, each on its task alone (the other's columns withheld): one row."""
    row = single_task_row(
        train_tabular, TASKS,
        lambda task, others: recipe_arguments(
            "shared_bottom", seed, data_dir, "--tasks", task, "--withheld_tasks", *others,
            "--metric_for_best_model", f"{task}/auc",
        ),
    )
    return {"model": "single_task", "seed": seed, **row}


def write_report(runs: list[dict[str, Any]]) -> None:
    """benchmarks/results/census_income_group1.md from all runs measured so far."""
    table = mean_std_table(
        runs, "model", MODEL_ORDER, {f"test AUC {task}": f"test_{task}_auc" for task in TASKS}
    )
    header = (
        "Census-Income group 1, 10 epochs, batch 1024, AdamW 1e-3, each architecture's default config; "
        "test AUC of the best validation epoch, mean ± std over seeds. `single_task`: one Shared-Bottom network "
        "per task, trained on its task alone (its parameters are both networks').\n"
    )
    (RESULTS / "census_income_group1.md").write_text(header + "\n" + "\n".join(table) + "\n")
    print("\n".join(table), flush=True)


if __name__ == "__main__":
    main()
