#!/usr/bin/env python
"""Speed of the routing layer on the CPU, forward + backward.

    python benchmarks/expert_bank_speed.py [--repeats 100] [--rounds 3]

1. `ExpertBank` against a loop of `nn.Linear` experts (E in 4, 8, 16, 32; batch 1024; input 500;
   hidden 16 and 64), and the bank's achieved FLOP rate against one dense `nn.Linear` of the same FLOPs.
2. One MMoE training step on Census-Income (8 experts x 16 units, towers of 8, batch 1024, AdamW):
   moezoo's `MMoEModel` against a minimal hand-written batched MMoE defined here, on the recipe's
   tabular inputs (embeddings of the census features) and on dense `inputs_embeds`.

Results go to benchmarks/results/expert_bank_speed.{json,md}. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import moezoo
from moezoo.data import census_feature_columns, load_census_income
from moezoo.routing import ExpertBank

RESULTS = Path(__file__).resolve().parent / "results"


def median_ms(steps: dict[str, Callable[[], None]], repeats: int, warmup: int = 5) -> dict[str, float]:
    """Median wall time of each step in milliseconds.

    The steps take turns within every repeat, so that drift in the machine's speed (other processes,
    frequency scaling) hits all of them alike instead of whichever happened to run last; the order is
    reversed every other repeat, so that no step always runs after the same one (and finds its
    inputs in, or out of, the cache that step left).
    """
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps.items())
    for repeat in range(repeats):
        for name, step in order if repeat % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(samples) for name, samples in times.items()}


def forward_backward(module: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        module(x).sum().backward()

    return step


class LoopOfExperts(nn.Module):
    """The alternative users write first: an nn.ModuleList of experts, run one after another."""

    def __init__(self, num_experts: int, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(input_size, hidden_size), nn.ReLU()) for _ in range(num_experts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([expert(x) for expert in self.experts], dim=1)


def bench_expert_bank(repeats: int) -> list[dict]:
    batch, input_size = 1024, 500
    rows = []
    for hidden in (16, 64):
        for num_experts in (4, 8, 16, 32):
            x = torch.randn(batch, input_size)
            bank = ExpertBank(num_experts, input_size, [hidden])
            loop = LoopOfExperts(num_experts, input_size, hidden)
            dense = nn.Sequential(nn.Linear(input_size, num_experts * hidden), nn.ReLU())
            timings = median_ms(
                {
                    "bank": forward_backward(bank, x),
                    "loop": forward_backward(loop, x),
                    "dense": forward_backward(dense, x),
                },
                repeats,
            )
            bank_ms, loop_ms, dense_ms = timings["bank"], timings["loop"], timings["dense"]
            # The forward GEMM and the weight-gradient GEMM (x needs no gradient).
            flops = 2 * (2 * batch * input_size * num_experts * hidden)
            rows.append(
                {
                    "hidden": hidden,
                    "experts": num_experts,
                    "bank_ms": bank_ms,
                    "loop_ms": loop_ms,
                    "speedup_vs_loop": loop_ms / bank_ms,
                    "bank_gflops": flops / bank_ms / 1e6,
                    "dense_gflops": flops / dense_ms / 1e6,
                    "bank_vs_dense": dense_ms / bank_ms,
                }
            )
            print(rows[-1], flush=True)
    return rows


class HandWrittenMMoE(nn.Module):
    """A minimal batched MMoE with no input or label checks: experts as one GEMM, gates as one GEMM,
    towers and heads per task; with a ``schema``, one embedding table for the categorical features."""

    def __init__(
        self, input_size: int, num_tasks: int, experts: int, expert_size: int, tower: int,
        schema: moezoo.FeatureSchema | None = None,
    ) -> None:
        super().__init__()
        if schema is not None:
            dim = schema.categorical[0].embedding_dim
            sizes = [feature.vocab_size for feature in schema.categorical]
            self.register_buffer("offsets", torch.tensor([sum(sizes[:i]) for i in range(len(sizes))]))
            self.embedding = nn.Embedding(sum(sizes), dim)
        self.experts = nn.Linear(input_size, experts * expert_size)
        self.gates = nn.Linear(input_size, num_tasks * experts)
        self.towers = nn.ModuleList(nn.Sequential(nn.Linear(expert_size, tower), nn.ReLU(), nn.Linear(tower, 1)) for _ in range(num_tasks))
        self.shape = (num_tasks, experts, expert_size)

    def forward(self, labels, inputs_embeds=None, numeric_features=None, categorical_features=None):
        num_tasks, experts, expert_size = self.shape
        x = inputs_embeds
        if x is None:
            x = torch.cat([numeric_features, self.embedding(categorical_features + self.offsets).flatten(1)], dim=1)
        expert_out = F.relu(self.experts(x)).view(-1, experts, expert_size)
        gates = torch.softmax(self.gates(x).view(-1, num_tasks, experts), dim=-1)
        mixtures = torch.bmm(gates, expert_out)
        loss = 0.0
        for t, tower in enumerate(self.towers):
            loss = loss + F.binary_cross_entropy_with_logits(tower(mixtures[:, t]).squeeze(1), labels[:, t])
        return loss


def training_step(module: nn.Module, loss_fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)

    def step() -> None:
        loss = loss_fn()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return step


def bench_mmoe_step(repeats: int) -> dict:
    """One training step of moezoo's MMoEModel and of `HandWrittenMMoE`, on the recipe's own tabular
    inputs (numeric features and categorical embeddings) and on dense ``inputs_embeds`` of the same size.

    moezoo is timed as the training loop runs it on data it checked once (`skip_input_value_checks`),
    and also with the per-batch value checks that direct calls of `forward` get.
    """
    tasks = ["income", "marital"]
    raw = load_census_income(tasks=tasks)["train"].select(range(20_000)).to_pandas()
    numeric, categorical = census_feature_columns(tasks)
    processor = moezoo.TabularProcessor.fit(raw, numeric, categorical, label_columns=tasks)
    schema = processor.feature_schema
    tabular_batch = dict(processor(raw.head(1024)))
    dense_batch = {"inputs_embeds": torch.randn(1024, schema.output_size), "labels": tabular_batch["labels"]}
    shape = {"num_shared_experts": 8, "expert_hidden_sizes": [16], "tower_hidden_sizes": [8]}
    task_specs = [{"name": t} for t in tasks]
    tabular_model = moezoo.create_model("mmoe", tasks=task_specs, features=schema.to_dict(), **shape)
    dense_model = moezoo.create_model("mmoe", tasks=task_specs, input_size=schema.output_size, **shape)
    tabular_reference = HandWrittenMMoE(schema.output_size, len(tasks), 8, 16, 8, schema=schema)
    dense_reference = HandWrittenMMoE(schema.output_size, len(tasks), 8, 16, 8)
    for model, reference in ((tabular_model, tabular_reference), (dense_model, dense_reference)):
        assert abs(sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in reference.parameters())) < 100

    def checked_step(model, batch):
        # As the training loop runs a step on materialised data: checked once, no label missing.
        with model.skip_input_value_checks(labels_complete=True):
            return model(**batch).loss

    # Each input case's three variants take turns with one another.
    timings = {}
    for case, model, reference, batch in (
        ("tabular", tabular_model, tabular_reference, tabular_batch),
        ("dense", dense_model, dense_reference, dense_batch),
    ):
        timings.update(
            median_ms(
                {
                    f"{case}_moezoo": training_step(model, lambda: checked_step(model, batch)),
                    f"{case}_moezoo_value_checks": training_step(model, lambda: model(**batch).loss),
                    f"{case}_hand_written": training_step(reference, lambda: reference(**batch)),
                },
                repeats,
            )
        )
    row = {}
    for case in ("tabular", "dense"):
        hand_written = timings[f"{case}_hand_written"]
        row[f"{case}_hand_written_ms"] = hand_written
        row[f"{case}_moezoo_ms"] = timings[f"{case}_moezoo"]
        row[f"{case}_ratio"] = timings[f"{case}_moezoo"] / hand_written
        row[f"{case}_moezoo_value_checks_ms"] = timings[f"{case}_moezoo_value_checks"]
        row[f"{case}_ratio_value_checks"] = timings[f"{case}_moezoo_value_checks"] / hand_written
    print(row, flush=True)
    return row


def median_row(rows: Sequence[dict]) -> dict:
    """The entry-wise median of rows with the same keys."""
    return {key: statistics.median(row[key] for row in rows) for key in rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100, help="timed runs per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every measurement; medians are reported")
    parser.add_argument("--step_only", action="store_true", help="measure the MMoE step only (results not saved)")
    args = parser.parse_args()
    if args.step_only:
        median_row([bench_mmoe_step(args.repeats) for _ in range(args.rounds)])
        return
    torch.manual_seed(0)
    # Each benchmark runs in several rounds and reports the per-entry median, which steadies the
    # ratios against the slow drift of a shared 2-core machine.
    bank_rounds = [bench_expert_bank(args.repeats) for _ in range(args.rounds)]
    bank_rows = [median_row(rows) for rows in zip(*bank_rounds)]
    step = median_row([bench_mmoe_step(args.repeats) for _ in range(args.rounds)])
    environment = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "expert_bank_speed.json").write_text(
        json.dumps({"environment": environment, "expert_bank": bank_rows, "mmoe_step": step}, indent=2) + "\n"
    )
    lines = [
        f"CPU, {environment['threads']} threads, torch {environment['torch']}; median of {args.rounds} rounds "
        f"of {args.repeats} runs; "
        "forward + backward, batch 1024, input 500.",
        "",
        "| hidden | experts | ExpertBank ms | loop of nn.Linear ms | bank speed-up | bank GFLOP/s | dense GEMM GFLOP/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in bank_rows:
        lines.append(
            f"| {row['hidden']} | {row['experts']} | {row['bank_ms']:.2f} | {row['loop_ms']:.2f} | "
            f"{row['speedup_vs_loop']:.2f}x | {row['bank_gflops']:.1f} | {row['dense_gflops']:.1f} |"
        )
    lines += [
        "",
        "One MMoE training step on Census-Income (8 experts x 16, towers of 8, batch 1024, AdamW), median of "
        f"{args.rounds} rounds. 'moezoo' is the step as the training loop runs it on data it checked once; "
        "'with value checks' adds the per-batch NaN / range checks that direct calls of forward get:",
        "",
        "| input | hand-written batched MMoE ms | moezoo MMoEModel ms | ratio | with value checks ms | ratio |",
        "|---|---|---|---|---|---|",
        *(
            f"| {label} | {step[f'{case}_hand_written_ms']:.2f} | {step[f'{case}_moezoo_ms']:.2f} | "
            f"{step[f'{case}_ratio']:.2f} | {step[f'{case}_moezoo_value_checks_ms']:.2f} | "
            f"{step[f'{case}_ratio_value_checks']:.2f} |"
            for case, label in (("tabular", "tabular (census embeddings)"), ("dense", "dense inputs_embeds"))
        ),
    ]
    (RESULTS / "expert_bank_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
