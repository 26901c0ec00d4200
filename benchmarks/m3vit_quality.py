#!/usr/bin/env python
"""Per-task test quality of M³ViT against dense ViTs on MultiMNIST with two image-level and two dense
tasks, at the same training budget, on the CPU.

    python benchmarks/m3vit_quality.py [--variants ...] [--retrain_m3vit]

Every run is recipes/configs/multi_mnist_m3vit.yaml (its budget: the report states it) with one change:

- ``m3vit``: the YAML as it is. The zoo entry m3vit-multi-mnist is this run; its results.json is read
  instead of training again (``--retrain_m3vit`` trains it here).
- ``dense_vit``: the same ViT with dense MLPs in every block (``moe_layers: []``) and a head per task.
- ``single_<task>``: that dense ViT trained on one task alone, one run per task.
- ``m3vit_expert_width_64``: the YAML's M³ViT with experts of width 64 instead of 128 and routers that start
  independently (the entry before: a task's pathway in the MoE block as wide as the dense MLP instead of
  twice as wide).
- ``m3vit_task_routers_start_equal``: experts of width 128, every task's router starting as the same map
  (``task_routers_start_equal``), so that the tasks share the MoE layer's experts until training parts them.
- ``m3vit_one_task_per_canvas``: M³ViT with MoE layers in every other block (1, 3, 5), as the paper places
  them, each canvas trained through one task's pathway drawn at random: a step at the dense ViT's cost, each
  task seeing a quarter of the canvases (the recipe before; it trailed the dense ViT on every task).
- ``upcycled_m3vit``: the dense ViT trained for one epoch less (``dense_vit_upcycling_start``), upcycled
  into an M³ViT (`M3ViTModel.from_dense`: 16 experts per MoE block, each a copy of the block's MLP, 4 per
  token) and trained 1 more epoch: as many epochs over the same images in all.

The dense variants train every task on every image (they have one pathway, so it costs no more) even
where the YAML samples one task per image for M³ViT (``sample_task_in_training``).

Each variant trains in its own process (so that its peak memory is its own). Checkpoints go to
outputs/benchmarks/m3vit/<variant>; results to benchmarks/results/m3vit_multi_mnist.{json,md} (a variant
measured again replaces its earlier run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from recipe_runs import REPO, RESULTS, merge_runs

sys.path.insert(0, str(REPO / "recipes"))
from train_vit import TASK_NAMES  # noqa: E402

CONFIG = REPO / "recipes" / "configs" / "multi_mnist_m3vit.yaml"
ZOO_RESULTS = REPO / "model_cards" / "m3vit-multi-mnist" / "results.json"
OUTPUT = REPO / "outputs" / "benchmarks" / "m3vit"
RESULTS_FILE = RESULTS / "m3vit_multi_mnist.json"
#: The test metric reported per task.
#: M³ViT variants of the YAML's design that differ in their experts' width or their routers' start: the
#: model_config keys each sets (both, so that a variant keeps its meaning when the YAML changes).
M3VIT_SETTINGS_VARIANTS = {
    "m3vit_expert_width_64": {"moe_intermediate_size": 64, "task_routers_start_equal": False},
    "m3vit_task_routers_start_equal": {"moe_intermediate_size": 128, "task_routers_start_equal": True},
}
HEADLINE = {"top_left": "accuracy", "bottom_right": "accuracy", "pixel_class": "miou", "pixel_item": "miou"}


def variant_arguments(variant: str) -> list[str]:
    """The recipe flags (after the YAML; they override its model_config key by key) of a variant."""
    # A dense ViT has one pathway: every image trains every task at no extra cost, so none is sampled.
    dense = json.dumps({"moe_layers": [], "sample_task_in_training": False})
    epochs = yaml.safe_load(CONFIG.read_text())["num_train_epochs"]
    if variant == "m3vit":
        return []
    if variant in M3VIT_SETTINGS_VARIANTS:
        return ["--model_config", json.dumps(M3VIT_SETTINGS_VARIANTS[variant])]
    if variant == "m3vit_one_task_per_canvas":
        # The design the recipe had before: the paper's MoE blocks (every other one), a task drawn per canvas.
        return ["--model_config", json.dumps({"moe_layers": [1, 3, 5], "sample_task_in_training": True})]
    if variant == "dense_vit":
        return ["--model_config", dense]
    if variant == "dense_vit_upcycling_start":
        return ["--model_config", dense, "--num_train_epochs", str(epochs - 1)]
    if variant.startswith("single_"):
        return ["--model_config", dense, "--tasks", variant.removeprefix("single_")]
    if variant == "upcycled_m3vit":
        # Experts copy the dense MLP, so they take its width (null: the YAML's narrower experts do not apply).
        moe = json.dumps({"moe_intermediate_size": None})
        source = OUTPUT / "dense_vit_upcycling_start" / "best"
        if not source.is_dir():
            raise FileNotFoundError(f"{source} is missing: run the dense_vit_upcycling_start variant first.")
        return ["--upcycle_from", str(source), "--model_config", moe, "--num_train_epochs", "1"]
    raise ValueError(f"Unknown variant {variant!r}.")


def record(variant: str, summary: dict[str, Any], seconds: float | None) -> dict[str, Any]:
    arguments = summary["arguments"]
    run = {
        "variant": variant,
        # What the zoo entry's card compares against (moezoo_cli/catalog.py): the single-task ViTs, one row per task.
        "model": "single_task" if variant.startswith("single_") else variant,
        "parameters": summary["num_parameters"],
        "tasks": arguments["tasks"],
        "epochs": arguments["num_train_epochs"],
        "train_examples": arguments["max_train_samples"],
        "best_epoch": summary["best_epoch"],
        "train_seconds": summary["environment"]["train_seconds"],
        "peak_memory_mb": summary["environment"].get("peak_memory_mb"),
        "seconds": seconds,
        "budget": budget_in_words(),
    }
    for task in arguments["tasks"]:
        for metric in ("accuracy", "miou", "pixel_accuracy"):
            if f"{task}/{metric}" in summary["test"]:
                run[f"test_{task}_{metric}"] = summary["test"][f"{task}/{metric}"]
    return run


def main() -> None:
    variants = ["dense_vit", *(f"single_{task}" for task in TASK_NAMES), "dense_vit_upcycling_start", "upcycled_m3vit",
                "m3vit_one_task_per_canvas", *M3VIT_SETTINGS_VARIANTS, "m3vit"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=variants, choices=variants)
    parser.add_argument("--retrain_m3vit", action="store_true", help="train m3vit here instead of reading the zoo entry")
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args()

    for variant in args.variants:
        if variant == "m3vit" and not args.retrain_m3vit and ZOO_RESULTS.is_file():
            run = record(variant, json.loads(ZOO_RESULTS.read_text()), None)
        else:
            argv = [str(CONFIG), *variant_arguments(variant), "--output_dir", str(OUTPUT / variant),
                    "--overwrite_output_dir", "true"]
            if args.data_dir:
                argv += ["--data_dir", args.data_dir]
            start = time.perf_counter()
            # A process per variant, so that each row's peak memory is its own run's.
            subprocess.run([sys.executable, str(REPO / "recipes" / "train_vit.py"), *argv], check=True)
            summary = json.loads((OUTPUT / variant / "results.json").read_text())
            run = record(variant, summary, time.perf_counter() - start)
        print(run, flush=True)
        # Saved after every run, so that an interrupted benchmark keeps what it measured.
        write_report(merge_runs(RESULTS_FILE, [run], key=("variant",), keep=current_budget))


def budget_in_words() -> str:
    """The recipe YAML's training budget, as the report states it."""
    recipe = yaml.safe_load(CONFIG.read_text())
    held_out = recipe.get("validation_size", 10_000)
    canvases = (
        f"{recipe['max_train_samples']:,} training canvases"
        if recipe.get("max_train_samples")
        else f"{60_000 - held_out:,} training canvases (all but the {held_out:,} held out for validation)"
    )
    patch = recipe["model_config"]["patch_size"]
    return (
        f"{recipe['num_train_epochs']} epochs over the same {canvases}, {patch}x{patch} patches, batch {recipe['per_device_train_batch_size']}, AdamW "
        f"{recipe['learning_rate']:g} with {recipe['lr_scheduler_type']} decay, the best validation epoch by "
        f"{recipe['metric_for_best_model']}"
    )


def m3vit_design_in_words() -> str:
    """Where the recipe YAML's M³ViT has its MoE layers and how it trains its pathways, as the report states it
    (the other M³ViT variants say in their names and the module's docstring how they differ)."""
    model = yaml.safe_load(CONFIG.read_text())["model_config"]
    blocks = model.get("moe_layers")
    where = "every other block" if blocks is None else "block" + ("s " if len(blocks) > 1 else " ") + ", ".join(map(str, blocks))
    how = (
        "one task per canvas, drawn at random (`sample_task_in_training`: a step costs one pathway)"
        if model.get("sample_task_in_training")
        else "every task on every canvas (everything before the first MoE layer's MLP once, its block's attention "
        "included, the rest once per task)"
    )
    experts = f"{model['num_experts']} experts of width {model['moe_intermediate_size']}, {model['num_experts_per_tok']} per token"
    if model.get("task_routers_start_equal"):
        experts += ", every task's router starting equal"
    return f"The `m3vit` row (the recipe YAML) has its MoE layers in {where} ({experts}) and trains {how}"


def current_budget(run: dict[str, Any]) -> bool:
    """Whether ``run`` was measured under the recipe YAML as it is now (rows of an earlier recipe are
    dropped rather than set beside rows they cannot be compared with)."""
    return run.get("budget") == budget_in_words()


def write_report(runs: list[dict[str, Any]]) -> None:
    """benchmarks/results/m3vit_multi_mnist.md from all runs measured so far."""
    order = ["m3vit", *M3VIT_SETTINGS_VARIANTS, "m3vit_one_task_per_canvas", "upcycled_m3vit", "dense_vit", "dense_vit_upcycling_start", *(f"single_{task}" for task in TASK_NAMES)]
    lines = [
        "### M³ViT on MultiMNIST with image-level and dense tasks",
        "",
        "Test split (10,000 canvases): accuracy (%) of the two image-level tasks, mIoU (%) of the two dense ones "
        f"(pixel accuracy in brackets). Budget of every row but `dense_vit_upcycling_start`: {budget_in_words()}; "
        "`dense_vit_upcycling_start` stops one epoch early and `upcycled_m3vit` is it upcycled and trained 1 epoch "
        f"more. {m3vit_design_in_words()}; the dense rows train every task on every canvas (one pathway serves "
        "them all). Training time and peak resident memory of the training process on this 2-core CPU.",
        "",
        "| variant | parameters | " + " | ".join(TASK_NAMES) + " | train min | peak GB |",
        "|---|---|" + "---|" * len(TASK_NAMES) + "---|---|",
    ]
    by_variant = {run["variant"]: run for run in runs}
    for variant in order:
        run = by_variant.get(variant)
        if run is None:
            continue
        cells = []
        for task in TASK_NAMES:
            value = run.get(f"test_{task}_{HEADLINE[task]}")
            if value is None:
                cells.append("")
            elif HEADLINE[task] == "miou":
                cells.append(f"{100 * value:.2f} ({100 * run[f'test_{task}_pixel_accuracy']:.2f})")
            else:
                cells.append(f"{100 * value:.2f}")
        peak = f"{run['peak_memory_mb'] / 1024:.1f}" if run.get("peak_memory_mb") else ""
        lines.append(
            f"| {variant} | {run['parameters']:,} | " + " | ".join(cells) + f" | {run['train_seconds'] / 60:.1f} | {peak} |"
        )
    Path(RESULTS / "m3vit_multi_mnist.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
