#!/usr/bin/env python
"""Test accuracy of Shared-Bottom, MMoE and DSelect-k (static and per-example) on MultiMNIST and
MultiFashion-MNIST, the DSelect-k paper's image benchmarks, on the CPU.

    python benchmarks/multi_mnist_quality.py [--datasets mnist fashion-mnist] [--models ...] [--seeds 0]

Each run is recipes/configs/multi_mnist_dselect_k.yaml (a shared LeNet-style CNN bottom, experts and
gates on its 50 features, 50-unit towers) with another model, data set and seed. Shared-Bottom is the
CNN bottom with one 50-unit shared layer; the others mix 8 experts of 50 units. ``single_task`` is the
single-task baseline: one Shared-Bottom network per task, trained on its task alone (its row: each task's
accuracy from its own network, the networks' parameters together). Results go to
benchmarks/results/multi_mnist.{json,md}; runs of a data set, model and seed replace earlier ones.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from recipe_runs import REPO, RESULTS, merge_runs, mean_std_table, run_recipe, single_task_row

sys.path.insert(0, str(REPO / "recipes"))
from train_image import main as train_image  # noqa: E402

CONFIG = REPO / "recipes" / "configs" / "multi_mnist_dselect_k.yaml"
TASKS = ["top_left", "bottom_right"]
MODEL_CONFIGS = {
    "single_task": {"num_shared_experts": 1},  # model_name shared_bottom, one network per task
    "shared_bottom": {"num_shared_experts": 1},
    "mmoe": {"num_shared_experts": 8},
    "dselect_k_static": {"num_shared_experts": 8},
    "dselect_k": {"num_shared_experts": 8},
}
COMMON_CONFIG = {"image_encoder": {}, "expert_hidden_sizes": [50], "tower_hidden_sizes": [50]}
DATASET_NAMES = {"mnist": "MultiMNIST", "fashion-mnist": "MultiFashion-MNIST"}
PAPER_TOP_LEFT_ACCURACY = {"mnist": 92.6, "fashion-mnist": 83.8}  # DSelect-k, Hazimeh et al. 2021


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASET_NAMES), choices=list(DATASET_NAMES))
    parser.add_argument("--models", nargs="+", default=list(MODEL_CONFIGS), choices=list(MODEL_CONFIGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--num_train_epochs", type=int, default=10)
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args()

    for dataset in args.datasets:
        for name in args.models:
            for seed in args.seeds:
                architecture = "shared_bottom" if name == "single_task" else name
                argv = [
                    str(CONFIG), "--dataset", dataset, "--model_name", architecture, "--seed", str(seed),
                    "--num_train_epochs", str(args.num_train_epochs),
                    "--model_config", json.dumps({**COMMON_CONFIG, **MODEL_CONFIGS[name]}),
                ]
                if args.data_dir:
                    argv += ["--data_dir", args.data_dir]
                if name == "single_task":
                    row = single_task_row(train_image, TASKS, lambda task, others: [*argv, "--tasks", task])
                else:
                    summary, seconds = run_recipe(train_image, argv)
                    row = {"parameters": summary["num_parameters"], "best_epoch": summary["best_epoch"], "seconds": seconds,
                           **{f"test_{task}_accuracy": summary["test"][f"{task}/accuracy"] for task in TASKS}}
                run = {"dataset": dataset, "model": name, "seed": seed, "epochs": args.num_train_epochs, **row}
                print(run, flush=True)
                # Saved after every run, so that an interrupted benchmark keeps what it measured.
                write_report(merge_runs(RESULTS / "multi_mnist.json", [run], key=("dataset", "model", "seed")))


def write_report(runs: list[dict[str, Any]]) -> None:
    """benchmarks/results/multi_mnist.md from all runs measured so far."""
    lines = []
    for dataset, title in DATASET_NAMES.items():
        dataset_runs = [run for run in runs if run["dataset"] == dataset]
        if not dataset_runs:
            continue
        epochs = sorted({run["epochs"] for run in dataset_runs})
        minutes = sum(run["seconds"] for run in dataset_runs) / len(dataset_runs) / 60
        lines += [
            f"### {title}",
            "",
            f"Test accuracy (%) of the best validation epoch of {epochs} epochs (batch 256, AdamW 1e-3), "
            f"about {minutes:.0f} min per run on this 2-core CPU. The paper's DSelect-k reaches "
            f"{PAPER_TOP_LEFT_ACCURACY[dataset]}% on the top-left task. `single_task`: a Shared-Bottom network per "
            "task, trained on its task alone.",
            "",
            *mean_std_table(
                dataset_runs, "model", list(MODEL_CONFIGS),
                {"top-left accuracy": "test_top_left_accuracy", "bottom-right accuracy": "test_bottom_right_accuracy"},
                scale=100.0, digits=2,
            ),
            "",
        ]
    (RESULTS / "multi_mnist.md").write_text("\n".join(lines))
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
