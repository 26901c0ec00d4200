#!/usr/bin/env python
"""How `moezoo.balancing.task_gradients` should take the tasks' gradients on this machine: one batched backward
pass (``is_grads_batched``) against one pass per task, on the models of benchmarks/balancing_cost.py.

    python benchmarks/task_gradients_cost.py [--rounds 5]

Each round runs a forward pass and then times one call of each form on every trainable parameter (rows: each
task's loss and the auxiliary loss where the model has one); a form's time is the median of its rounds, the
forms alternating so that the machine's drift falls on both. The result decides `task_gradients`'s default
on the CPU. Results: benchmarks/results/task_gradients_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from balancing_cost import census_case, m3vit_case
from recipe_runs import write_results

from moezoo.balancing import task_gradients


def time_forms(make_case, rounds: int) -> dict[str, float]:
    torch.manual_seed(0)
    model, batch = make_case()
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    times: dict[str, list[float]] = {"batched": [], "per_task": []}
    for _ in range(rounds + 1):  # the first round warms up
        for form in times:
            output = model(**batch)
            rows = [output.task_losses[name] for name in model.task_names]
            rows += [output.aux_loss] if output.aux_loss is not None and output.aux_loss.requires_grad else []
            start = time.perf_counter()
            task_gradients(rows, parameters, batched=form == "batched")
            times[form].append(1000 * (time.perf_counter() - start))
    return {"rows": len(rows), **{f"{form}_ms": statistics.median(values[1:]) for form, values in times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = {case: time_forms(make, args.rounds)
               for case, make in (("Census-Income MMoE", census_case), ("M³ViT on MultiMNIST", m3vit_case))}
    lines = ["### The tasks' gradients: one batched pass against one pass per task, this CPU", "",
             "| model | rows | batched ms | per task ms |", "|---|---|---|---|"]
    lines += [f"| {case} | {row['rows']} | {row['batched_ms']:.1f} | {row['per_task_ms']:.1f} |" for case, row in results.items()]
    write_results("task_gradients_cost", results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
