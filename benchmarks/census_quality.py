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
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes"))
from train_tabular import main as train_tabular  # noqa: E402

CONFIG = REPO / "recipes" / "configs" / "census_income_mmoe.yaml"
RESULTS = REPO / "benchmarks" / "results"
MODEL_ORDER = ["shared_bottom", "omoe", "mmoe", "cgc", "ple"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=["shared_bottom", "omoe", "mmoe", "ple"], choices=MODEL_ORDER)
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args()

    runs = []
    for name in args.models:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as output_dir:
                argv = [
                    str(CONFIG), "--model_name", name, "--model_config", "{}", "--seed", str(seed),
                    "--output_dir", output_dir,
                ]
                if args.data_dir:
                    argv += ["--data_dir", args.data_dir]
                start = time.perf_counter()
                result = train_tabular(argv)
                seconds = time.perf_counter() - start
                summary = json.loads((Path(output_dir) / "results.json").read_text())
            runs.append(
                {
                    "model": name,
                    "seed": seed,
                    "parameters": sum(p.numel() for p in result.model.parameters()),
                    "best_epoch": summary["best_epoch"],
                    "test_income_auc": summary["test"]["income/auc"],
                    "test_marital_auc": summary["test"]["marital/auc"],
                    "seconds": seconds,
                }
            )
            print(runs[-1], flush=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    results_file = RESULTS / "census_income_group1.json"
    measured = {(run["model"], run["seed"]) for run in runs}
    earlier = json.loads(results_file.read_text()) if results_file.exists() else []
    runs = [run for run in earlier if (run["model"], run["seed"]) not in measured] + runs
    results_file.write_text(json.dumps(runs, indent=2) + "\n")
    models = [name for name in MODEL_ORDER if any(run["model"] == name for run in runs)]
    seeds = sorted({run["seed"] for run in runs})
    lines = [
        "| model | parameters | test AUC income | test AUC marital |",
        "|---|---|---|---|",
    ]
    for name in models:
        rows = [run for run in runs if run["model"] == name]

        def mean_std(key: str) -> str:
            values = [run[key] for run in rows]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.mean(values):.4f} ± {spread:.4f}"

        lines.append(
            f"| {name} | {rows[0]['parameters']:,} | {mean_std('test_income_auc')} | {mean_std('test_marital_auc')} |"
        )
    table = "\n".join(lines) + "\n"
    header = (
        f"Census-Income group 1, seeds {seeds}, 10 epochs, batch 1024, AdamW 1e-3, each architecture's "
        "default config; test AUC of the best validation epoch, mean ± std.\n\n"
    )
    (RESULTS / "census_income_group1.md").write_text(header + table)
    print(table)


if __name__ == "__main__":
    main()
