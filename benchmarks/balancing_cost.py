#!/usr/bin/env python
"""Step time of every multi-task optimisation method of `moezoo.balancing`, relative to equal weighting, on the
Census-Income MMoE and on M³ViT, side by side in one run.

    python benchmarks/balancing_cost.py [--steps 30]
    moezoo train --num_processes 2 benchmarks/balancing_cost.py --steps 30     # the same on two processes

A step is what the training loop does: the forward pass, `TaskBalancer.backward` (for the gradient methods,
under data parallelism's ``no_sync``), the optimizer step, and FAMO's second forward pass. The models are the
zoo recipes' (recipes/configs/census_income_mmoe.yaml at its batch of 1,024 rows, the embedded width of its
census features; recipes/configs/multi_mnist_m3vit.yaml at a batch of 32 canvases), on random inputs and
labels of the right shapes, so that only the methods' cost differs. Each process takes the whole batch; on
two processes the per-task gradients' all-reduce is also timed on its own. Targets: the one-backward
methods (the loss weightings, GradNorm's per-task norms of the last shared layer included) within 1.15x of
equal weighting, the per-task-gradient methods within (K + 1)x for K tasks. Beside every method by name, the
cheaper variants: FAMO updated from the next batch, and the gradient rules on the shared representation.

Results: benchmarks/results/balancing_cost_{N}_processes.{json,md}.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import reduce

from recipe_runs import REPO, write_results

import moezoo
from moezoo import M3ViTConfig, M3ViTModel
from moezoo.balancing import GRADIENT_RULES, METHODS, TaskBalancer
from moezoo.data import census_feature_columns

#: Every method by name, and the cheaper variants of some: FAMO updated from the next batch (no second forward
#: pass) and the gradient rules on the shared representation (MGDA-UB for MGDA).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    **{method: (method, {}) for method in METHODS},
    "famo (next_batch)": ("famo", {"update_from": "next_batch"}),
    **{f"{method} (representation)": (method, {"representation": True})
       for method in GRADIENT_RULES if "representation" in GRADIENT_RULES[method][1]},
}


def census_case(batch: int = 1024) -> tuple[torch.nn.Module, dict[str, Any]]:
    recipe = yaml.safe_load((REPO / "recipes" / "configs" / "census_income_mmoe.yaml").read_text())
    tasks = [{"name": name, "kind": "binary"} for name in recipe["tasks"]]
    # The features embedded as the recipe embeds them: one value per numeric column, a vector per categorical one.
    numeric, categorical = census_feature_columns(recipe["tasks"])
    width = len(numeric) + recipe["embedding_dim"] * len(categorical)
    model = moezoo.create_model(recipe["model_name"], tasks=tasks, input_size=width, **recipe["model_config"])
    inputs = {"inputs_embeds": torch.randn(batch, width), "labels": torch.randint(0, 2, (batch, len(tasks))).float()}
    return model, inputs


def m3vit_case(batch: int = 32) -> tuple[torch.nn.Module, dict[str, Any]]:
    recipe = yaml.safe_load((REPO / "recipes" / "configs" / "multi_mnist_m3vit.yaml").read_text())
    tasks = [{"name": "top_left", "kind": "multiclass", "num_labels": 10}, {"name": "bottom_right", "kind": "multiclass", "num_labels": 10},
             {"name": "pixel_class", "kind": "multiclass", "num_labels": 11}, {"name": "pixel_item", "kind": "multiclass", "num_labels": 3}]
    model = M3ViTModel(M3ViTConfig(**recipe["model_config"], tasks=tasks, dense_tasks=["pixel_class", "pixel_item"]))
    size = model.config.image_size
    labels = {"top_left": torch.randint(0, 10, (batch,)), "bottom_right": torch.randint(0, 10, (batch,)),
              "pixel_class": torch.randint(0, 11, (batch, size, size)), "pixel_item": torch.randint(0, 3, (batch, size, size))}
    return model, {"pixel_values": torch.randn(batch, 1, size, size), "labels": labels}


def time_method(make_case, variant: str, accelerator: Accelerator, steps: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model, batch = make_case()
    method, options = VARIANTS[variant]
    balancer = TaskBalancer(model, method, options)
    optimizer = torch.optim.AdamW([*model.parameters(), *balancer.parameters()], lr=1e-4)
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    batch = {name: value.to(accelerator.device) if isinstance(value, torch.Tensor)
             else {task: labels.to(accelerator.device) for task, labels in value.items()} for name, value in batch.items()}

    def step() -> None:
        with balancer.backward_context(accelerator, wrapped):
            balancer.backward(wrapped(**batch), backward=accelerator.backward)
        optimizer.step()
        optimizer.zero_grad()
        balancer.after_step(lambda: wrapped(**batch))

    for _ in range(2):  # warm-up
        step()
    accelerator.wait_for_everyone()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    accelerator.wait_for_everyone()
    seconds = (time.perf_counter() - start) / steps
    row = {"method": variant, "tasks": len(model.task_names), "ms_per_step": 1000 * seconds,
           "one_backward": not balancer.is_gradient_method}
    if accelerator.num_processes > 1 and balancer.sets_gradients:
        # The per-task gradients' all-reduce alone: a [K + 1, P] matrix of the trainable parameters.
        trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
        matrix = torch.randn(len(model.task_names) + 1, trainable, device=accelerator.device)
        start = time.perf_counter()
        for _ in range(steps):
            reduce(matrix, "sum")
        row["all_reduce_ms"] = 1000 * (time.perf_counter() - start) / steps
    return row


def report(results: dict[str, list[dict[str, Any]]], processes: int) -> str:
    lines = [f"### Step time of the balancing methods, {processes} process(es), this CPU", ""]
    for case, rows in results.items():
        equal = next(row["ms_per_step"] for row in rows if row["method"] == "equal")
        tasks = rows[0]["tasks"]
        lines += [f"**{case}** ({tasks} tasks; target for one-backward methods 1.15x, for the others {tasks + 1}x):", "",
                  "| method | ms / step | x equal weighting |" + (" all-reduce ms |" if processes > 1 else ""),
                  "|---|---|---|" + ("---|" if processes > 1 else "")]
        for row in rows:
            cells = f"| {row['method']} | {row['ms_per_step']:.1f} | {row['ms_per_step'] / equal:.2f} |"
            if processes > 1:
                cells += f" {row['all_reduce_ms']:.1f} |" if "all_reduce_ms" in row else " |"
            lines.append(cells)
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    accelerator = Accelerator()
    results = {case: [time_method(make, variant, accelerator, args.steps) for variant in VARIANTS]
               for case, make in (("Census-Income MMoE", census_case), ("M³ViT on MultiMNIST", m3vit_case))}
    if accelerator.is_main_process:
        write_results(f"balancing_cost_{accelerator.num_processes}_processes", results,
                      report(results, accelerator.num_processes))


if __name__ == "__main__":
    main()
