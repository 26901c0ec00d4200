#!/usr/bin/env python
"""Step time of every multi-task optimisation method of `moezoo.balancing`, relative to equal weighting, on the
Census-Income MMoE and on M³ViT, side by side in one run.

    python benchmarks/balancing_cost.py [--steps 30] [--rounds 5]
    moezoo train --num_processes 2 benchmarks/balancing_cost.py --steps 30     # the same on two processes

A step is what the training loop does: the forward pass, `TaskBalancer.backward` (for the gradient methods,
under data parallelism's ``no_sync``), the optimizer step, and FAMO's second forward pass. The models are the
zoo recipes' (recipes/configs/census_income_mmoe.yaml at its batch of 1,024 rows, the embedded width of its
census features; recipes/configs/multi_mnist_m3vit.yaml at a batch of 32 canvases), on random inputs and
labels of the right shapes, so that only the methods' cost differs. The methods take turns, in rounds (a
method's time is the median of its rounds), so that a change in the machine's speed during the run falls on
all of them alike; beside the time, each step's floating-point operations (matrix products), which no noise
moves. Each process takes the whole batch; on
two processes the per-task gradients' all-reduce is also timed on its own. Targets: the one-backward
methods (the loss weightings, GradNorm's per-task norms of the last shared layer included) within 1.15x of
equal weighting, the per-task-gradient methods within (K + 1)x for K tasks. Beside every method by name, the
cheaper variants: FAMO updated from the next batch, and the gradient rules on the shared representation.

Results: benchmarks/results/balancing_cost_{N}_processes.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import reduce
from torch.utils.flop_counter import FlopCounterMode

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


class MethodRun:
    """One method's model, balancer and optimizer on its case's batch, stepped as the training loop steps."""

    def __init__(self, make_case: Callable[[], tuple[torch.nn.Module, dict[str, Any]]], variant: str,
                 accelerator: Accelerator) -> None:
        torch.manual_seed(0)
        model, batch = make_case()
        method, options = VARIANTS[variant]
        self.variant, self.model, self.accelerator = variant, model, accelerator
        self.balancer = TaskBalancer(model, method, options)
        optimizer = torch.optim.AdamW([*model.parameters(), *self.balancer.parameters()], lr=1e-4)
        self.wrapped, self.optimizer = accelerator.prepare(model, optimizer)
        self.batch = {name: value.to(accelerator.device) if isinstance(value, torch.Tensor)
                      else {task: labels.to(accelerator.device) for task, labels in value.items()}
                      for name, value in batch.items()}
        self.block_ms: list[float] = []
        self.flops = 0

    def count_flops(self) -> None:
        """The floating-point operations of one step (`FlopCounterMode`: matrix products and convolutions), a
        measure of the methods' work that the machine's noise does not move."""
        with FlopCounterMode(display=False) as counter:
            self.step()
        self.flops = counter.get_total_flops()

    def step(self) -> None:
        with self.balancer.backward_context(self.accelerator, self.wrapped):
            self.balancer.backward(self.wrapped(**self.batch), backward=self.accelerator.backward)
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.balancer.after_step(lambda: self.wrapped(**self.batch))

    def time_block(self, steps: int) -> None:
        """Time ``steps`` steps in a row, all processes together; the block's mean joins `block_ms`."""
        self.accelerator.wait_for_everyone()
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        self.accelerator.wait_for_everyone()
        self.block_ms.append(1000 * (time.perf_counter() - start) / steps)

    def row(self, steps: int) -> dict[str, Any]:
        """The method's results: the median of its blocks, its FLOPs per step and, on several processes for a
        method that sets the gradients itself, its all-reduce timed alone over ``steps`` calls."""
        row = {"method": self.variant, "tasks": len(self.model.task_names), "ms_per_step": statistics.median(self.block_ms),
               "block_ms": self.block_ms, "flops_per_step": self.flops, "one_backward": not self.balancer.is_gradient_method}
        if self.accelerator.num_processes > 1 and self.balancer.sets_gradients:
            # The per-task gradients' all-reduce alone: a [K + 1, P] matrix of the trainable parameters.
            trainable = sum(parameter.numel() for parameter in self.model.parameters() if parameter.requires_grad)
            matrix = torch.randn(len(self.model.task_names) + 1, trainable, device=self.accelerator.device)
            start = time.perf_counter()
            for _ in range(steps):
                reduce(matrix, "sum")
            row["all_reduce_ms"] = 1000 * (time.perf_counter() - start) / steps
        return row


def time_methods(make_case: Callable[[], tuple[torch.nn.Module, dict[str, Any]]], accelerator: Accelerator,
                 steps: int, rounds: int) -> list[dict[str, Any]]:
    """Every variant's step time on one case: ``rounds`` rounds, each timing every variant for
    ``steps // rounds`` steps (in an order that rotates from round to round), and per variant the median of
    its blocks' means. Interleaving exposes every method to the same drift of the machine's speed (other
    load, frequency), which timing the methods one after the other turns into differences between them."""
    runs = [MethodRun(make_case, variant, accelerator) for variant in VARIANTS]
    for run in runs:  # warm-up
        run.step()
        run.count_flops()
    block = max(1, steps // rounds)
    for round_index in range(rounds):
        shift = round_index % len(runs)
        for run in runs[shift:] + runs[:shift]:
            run.time_block(block)
    return [run.row(block) for run in runs]


def report(results: dict[str, list[dict[str, Any]]], processes: int) -> str:
    lines = [f"### Step time of the balancing methods, {processes} process(es), this CPU", ""]
    for case, rows in results.items():
        equal = next(row["ms_per_step"] for row in rows if row["method"] == "equal")
        tasks = rows[0]["tasks"]
        lines += [f"**{case}** ({tasks} tasks; target for one-backward methods 1.15x, for the others {tasks + 1}x):", "",
                  "| method | ms / step | x equal weighting | FLOPs x equal |" + (" all-reduce ms |" if processes > 1 else ""),
                  "|---|---|---|---|" + ("---|" if processes > 1 else "")]
        equal_flops = next(row["flops_per_step"] for row in rows if row["method"] == "equal")
        for row in rows:
            cells = (f"| {row['method']} | {row['ms_per_step']:.1f} | {row['ms_per_step'] / equal:.2f} "
                     f"| {row['flops_per_step'] / equal_flops:.2f} |")
            if processes > 1:
                cells += f" {row['all_reduce_ms']:.1f} |" if "all_reduce_ms" in row else " |"
            lines.append(cells)
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per method, over all rounds")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over all methods; a method's time is its rounds' median")
    args = parser.parse_args()
    if args.steps < args.rounds or args.rounds < 1:
        parser.error(f"--steps ({args.steps}) must be at least --rounds ({args.rounds}), and --rounds at least 1.")
    accelerator = Accelerator()
    results = {case: time_methods(make, accelerator, args.steps, args.rounds)
               for case, make in (("Census-Income MMoE", census_case), ("M³ViT on MultiMNIST", m3vit_case))}
    if accelerator.is_main_process:
        write_results(f"balancing_cost_{accelerator.num_processes}_processes", results,
                      report(results, accelerator.num_processes))


if __name__ == "__main__":
    main()
