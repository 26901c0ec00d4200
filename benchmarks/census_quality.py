#!/usr/bin/env python
"""Test AUC of Shared-Bottom, OMoE, MMoE and PLE on Census-Income task group 1, over several seeds.

    python benchmarks/census_quality.py [--seeds 0 1 2] [--models shared_bottom omoe mmoe ple]

Each run is the README's main job (recipes/configs/census_income_mmoe.yaml) with another model_name
and seed, each architecture with its own default config (the YAML's MMoE sizes are not applied).
Results go to benchmarks/results/census_income_group1.{json,md}; runs of a model and seed replace
earlier results for them, so models can be measured separately.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from recipe_runs import REPO, RESULTS, merge_runs, mean_std_table, run_recipe

sys.path.insert(0, str(REPO / "recipes"))
from train_tabular import main as train_tabular  # noqa: E402

CONFIG = REPO / "recipes" / "configs" / "census_income_mmoe.yaml"
MODEL_ORDER = ["shared_bottom", "omoe", "mmoe", "cgc", "ple"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=["shared_bottom", "omoe", "mmoe", "ple"], choices=MODEL_ORDER)
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args()

    for name in args.models:
        for seed in args.seeds:
            argv = [str(CONFIG), "--model_name", name, "--model_config", "{}", "--seed", str(seed)]
            if args.data_dir:
                argv += ["--data_dir", args.data_dir]
            summary, seconds = run_recipe(train_tabular, argv)
            run = {
                "model": name,
                "seed": seed,
                "parameters": summary["num_parameters"],
                "best_epoch": summary["best_epoch"],
                "test_income_auc": summary["test"]["income/auc"],
                "test_marital_auc": summary["test"]["marital/auc"],
                "seconds": seconds,
            }
            print(run, flush=True)
            # Saved after every run, so that an interrupted benchmark keeps what it measured.
            write_report(merge_runs(RESULTS / "census_income_group1.json", [run], key=("model", "seed")))


def write_report(runs: list[dict[str, Any]]) -> None:
    """benchmarks/results/census_income_group1.md from all runs measured so far."""
    table = mean_std_table(
        runs, "model", MODEL_ORDER, {"test AUC income": "test_income_auc", "test AUC marital": "test_marital_auc"}
    )
    header = (
        "Census-Income group 1, 10 epochs, batch 1024, AdamW 1e-3, each architecture's default config; "
        "test AUC of the best validation epoch, mean ± std over seeds.\n"
    )
    (RESULTS / "census_income_group1.md").write_text(header + "\n" + "\n".join(table) + "\n")
    print("\n".join(table), flush=True)


if __name__ == "__main__":
    main()
