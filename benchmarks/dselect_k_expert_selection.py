#!/usr/bin/env python
"""DSelect-k's expert-selection experiment (Hazimeh et al. 2021), on the CPU.

    python benchmarks/dselect_k_expert_selection.py [--seeds 0 1 2]

Tasks are built from known subsets of frozen ground-truth experts
(`moezoo.data.make_expert_selection_problem`). A `dselect_k_static` model is given those experts,
frozen, and learns its gates and linear task heads. Protocol: the heads start at zero and train
alone for the first ``head_warmup_steps`` (a head of the wrong sign would push its gate away from the
right experts before it could flip, and a saturated selector never moves again); then gates and
heads train together with Adam. Afterwards each task's gate should put all its weight on its own
experts, on at most ``k`` of them. Results go to benchmarks/results/dselect_k_expert_selection.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import moezoo
from moezoo.data import ExpertSelectionProblem, make_expert_selection_problem

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class SelectionResult:
    """The trained gates against the ground truth."""

    selected: list[list[int]]  # experts with non-zero weight, per task
    expected: list[list[int]]
    num_selectors: int
    train_seconds: float

    @property
    def num_recovered(self) -> int:
        return sum(selected == expected for selected, expected in zip(self.selected, self.expected))

    @property
    def max_nonzeros(self) -> int:
        return max(len(selected) for selected in self.selected)


def run_expert_selection(
    problem: ExpertSelectionProblem,
    num_selectors: int = 2,
    num_steps: int = 3000,
    head_warmup_steps: int = 100,
    batch_size: int = 256,
    learning_rate: float = 0.05,
    gate_entropy_weight: float = 1e-2,
    seed: int = 0,
) -> SelectionResult:
    """Train a static DSelect-k model on ``problem`` (experts frozen) and read off its selections."""
    torch.manual_seed(seed)
    experts = problem.experts
    model = moezoo.create_model(
        "dselect_k_static",
        tasks=[{"name": f"task_{t}", "kind": "regression"} for t in range(len(problem.task_experts))],
        input_size=experts.input_size,
        num_shared_experts=experts.num_experts,
        expert_hidden_sizes=experts.hidden_sizes,
        expert_activation="tanh",
        tower_hidden_sizes=[],
        num_selectors=num_selectors,
        gate_entropy_weight=gate_entropy_weight,
    )
    router = model.router.levels[0]
    router.experts.load_state_dict(experts.state_dict())
    router.experts.requires_grad_(False)
    for head in model.heads.outputs.values():
        torch.nn.init.zeros_(head.weight)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=learning_rate)

    train = problem.dataset["train"][:]  # materialised once: indexing a lazy column per step is slow
    inputs, labels = train["inputs_embeds"], train["labels"]
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    for step in range(num_steps):
        router.gate.requires_grad_(step >= head_warmup_steps)
        rows = torch.randint(0, len(inputs), (batch_size,), generator=generator)
        model(inputs_embeds=inputs[rows], labels=labels[rows]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    seconds = time.perf_counter() - start

    model.eval()
    with torch.no_grad():
        weights = model(inputs_embeds=inputs[:1], output_router_probs=True).router_probs[0][0]  # [T, E], static
    return SelectionResult(
        selected=[(row > 0).nonzero().flatten().tolist() for row in weights],
        expected=problem.task_experts,
        num_selectors=num_selectors,
        train_seconds=seconds,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num_experts", type=int, default=16)
    parser.add_argument("--num_tasks", type=int, default=16)
    parser.add_argument("--num_steps", type=int, default=3000)
    args = parser.parse_args()

    rows = []
    for experts_per_task in (1, 2):
        for seed in args.seeds:
            problem = make_expert_selection_problem(
                num_experts=args.num_experts,
                num_tasks=args.num_tasks,
                experts_per_task=experts_per_task,
                input_size=4 * args.num_experts,
                split_sizes=(20_000, 1_000, 1_000),
                seed=seed,
            )
            result = run_expert_selection(problem, num_selectors=2, num_steps=args.num_steps, seed=seed)
            rows.append(
                {
                    "experts_per_task": experts_per_task,
                    "seed": seed,
                    "num_selectors": 2,
                    "tasks_recovered": result.num_recovered,
                    "num_tasks": args.num_tasks,
                    "max_nonzeros": result.max_nonzeros,
                    "train_seconds": result.train_seconds,
                    **{key: value for key, value in asdict(result).items() if key in ("selected", "expected")},
                }
            )
            print({k: v for k, v in rows[-1].items() if k not in ("selected", "expected")}, flush=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dselect_k_expert_selection.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        f"{args.num_experts} frozen ground-truth experts, {args.num_tasks} tasks, static DSelect-k with k = 2, "
        f"{args.num_steps} Adam steps (lr 0.05, batch 256, entropy weight 1e-2, 100 head-only warm-up steps); "
        f"seeds {args.seeds}.",
        "",
        "| true experts per task | tasks whose gate selects exactly its experts (per seed) | mean | most non-zeros |",
        "|---|---|---|---|",
    ]
    for experts_per_task in (1, 2):
        group = [row for row in rows if row["experts_per_task"] == experts_per_task]
        recovered = [row["tasks_recovered"] for row in group]
        lines.append(
            f"| {experts_per_task} | {', '.join(f'{r}/{args.num_tasks}' for r in recovered)} | "
            f"{statistics.mean(recovered) / args.num_tasks:.0%} | {max(row['max_nonzeros'] for row in group)} |"
        )
    (RESULTS / "dselect_k_expert_selection.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
