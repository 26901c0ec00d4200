#!/usr/bin/env python
"""What M³ViT costs: FLOPs and wall time per image for single-task and all-task inference against a dense
ViT of the same width, and the speed of the sparse MoE layer against computing every expert and against
transformers' own experts backends.

    python benchmarks/m3vit_cost.py [--device cuda --dtype bfloat16]

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` on a forward pass (matrix products and
attention; the counter leaves out elementwise work). The models are the zoo recipe's
(recipes/configs/multi_mnist_m3vit.yaml): a ViT of width 128, 6 blocks, 36 patches; M³ViT with 16
experts of width 128, 4 per token, in the YAML's MoE blocks. A training step of each (forward and backward
of the task losses at the recipe's batch, every task on every canvas, as the recipe trains). The MoE layer
alone: E = 16, k = 4, 64 images of 81 tokens, width 128, experts of width 512, forward + backward of the layer's output sum, on the same
[E, out, in] weights and the same top-k choices for every implementation:

- ``moezoo sparse``: `ExpertBank.forward_sparse` (pairs sorted by expert, one matmul per used expert);
- ``moezoo all experts``: `ExpertBank` computing every expert on every token, mixed with the top-k weights;
- ``transformers eager / batched_mm / grouped_mm``: transformers' `ExpertsInterface` on an experts
  module (``use_experts_implementation``) holding the same weights; eager is the per-expert loop of
  transformers' experts modules. A backend that fails here is reported as such.

Results go to benchmarks/results/m3vit_cost.{json,md}; timings are medians over repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from recipe_runs import REPO, RESULTS
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from transformers.integrations.moe import use_experts_implementation

from moezoo.data import MULTI_MNIST_DENSE_TASKS, MULTI_MNIST_TASK_SPECS
from moezoo.models.m3vit import M3ViTConfig, M3ViTModel
from moezoo.routing import ExpertBank

CONFIG = REPO / "recipes" / "configs" / "multi_mnist_m3vit.yaml"
BACKENDS = ("eager", "batched_mm", "grouped_mm")


@use_experts_implementation(has_gate=False, has_bias=True)
class TransformersExperts(nn.Module):
    """An MLP expert bank in transformers' experts layout (``up_proj`` / ``down_proj`` ``[E, out, in]``);
    its ``forward`` is the eager per-expert loop, the decorator dispatches the other backends."""

    def __init__(self, config: Any, bank: ExpertBank) -> None:
        super().__init__()
        self.num_experts = bank.num_experts
        first, second = bank.layers
        self.up_proj, self.up_proj_bias = nn.Parameter(first.weight.detach().clone()), nn.Parameter(first.bias.detach().clone())
        self.down_proj = nn.Parameter(second.weight.detach().clone())
        self.down_proj_bias = nn.Parameter(second.bias.detach().clone())
        self.act_fn = nn.GELU()

    def forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor) -> torch.Tensor:
        output = torch.zeros_like(hidden_states)
        with torch.no_grad():
            hit = torch.unique(top_k_index)
        for expert in hit.tolist():
            token, slot = torch.where(top_k_index == expert)
            hidden = self.act_fn(F.linear(hidden_states[token], self.up_proj[expert], self.up_proj_bias[expert]))
            hidden = F.linear(hidden, self.down_proj[expert], self.down_proj_bias[expert])
            output.index_add_(0, token, hidden * top_k_weights[token, slot, None])
        return output


class BackendConfig:
    """The one config field transformers' experts dispatch reads."""

    def __init__(self, implementation: str) -> None:
        self._experts_implementation = implementation


def median_seconds(function: Callable[[], Any], repeats: int, device: torch.device) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def count_flops(function: Callable[[], Any]) -> int:
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


def model_costs(device: torch.device, dtype: torch.dtype, repeats: int) -> list[dict[str, Any]]:
    """FLOPs and forward time per image of single-task and all-task M³ViT and the dense ViT."""
    m3vit, dense = (model.eval() for model in recipe_models(device, dtype))
    batch = 64
    images = torch.randn(batch, 1, 36, 36, device=device, dtype=dtype)
    cases = {
        "M3ViT, all 4 tasks": (m3vit, {}),
        "M3ViT, one task (pixel_class)": (m3vit, {"tasks": ["pixel_class"]}),
        "M3ViT, one task (top_left)": (m3vit, {"tasks": ["top_left"]}),
        "dense ViT, all 4 tasks": (dense, {}),
        "dense ViT, one task (pixel_class)": (dense, {"tasks": ["pixel_class"]}),
    }
    rows = []
    with torch.no_grad():
        for name, (model, kwargs) in cases.items():
            run = lambda: model(pixel_values=images, **kwargs)  # noqa: E731
            rows.append({
                "case": name,
                "parameters": model.num_parameters(),
                "gflops_per_image": count_flops(run) / batch / 1e9,
                "ms_per_image": 1000 * median_seconds(run, repeats, device) / batch,
            })
    return rows


def recipe_models(device: torch.device, dtype: torch.dtype) -> tuple[M3ViTModel, M3ViTModel]:
    """The recipe YAML's M³ViT and the same ViT with dense MLPs, freshly initialised (seed 0)."""
    base = yaml.safe_load(CONFIG.read_text())["model_config"]
    common = {"tasks": list(MULTI_MNIST_TASK_SPECS), "dense_tasks": list(MULTI_MNIST_DENSE_TASKS)}
    torch.manual_seed(0)
    return (M3ViTModel(M3ViTConfig(**common, **base)).to(device, dtype),
            M3ViTModel(M3ViTConfig(**common, **{**base, "moe_layers": []})).to(device, dtype))


def training_step_costs(device: torch.device, dtype: torch.dtype, repeats: int) -> list[dict[str, Any]]:
    """Forward and backward of the summed task losses on a training batch of the recipe's size, M³ViT as the
    recipe trains it against the dense ViT (every task on every canvas)."""
    recipe = yaml.safe_load(CONFIG.read_text())
    batch, size = recipe["per_device_train_batch_size"], recipe["model_config"]["image_size"]
    images = torch.randn(batch, 1, size, size, device=device, dtype=dtype)
    labels = {
        task["name"]: torch.randint(0, task["num_labels"], (batch, size, size) if task["name"] in MULTI_MNIST_DENSE_TASKS
                                    else (batch,), device=device)
        for task in MULTI_MNIST_TASK_SPECS
    }
    rows = []
    for name, model in zip(("M3ViT, as the recipe trains it", "dense ViT"), recipe_models(device, dtype)):
        model.train()
        step = lambda model=model: model(pixel_values=images, labels=labels).loss.backward()  # noqa: E731
        rows.append({"case": name, "parameters": model.num_parameters(), "batch": batch,
                     "ms_per_step": 1000 * median_seconds(step, repeats, device)})
    return rows


def moe_layer_speed(device: torch.device, dtype: torch.dtype, repeats: int) -> list[dict[str, Any]]:
    """Forward + backward of the MoE layer alone, for every implementation, on the same inputs."""
    num_experts, k, tokens, width, expert_width = 16, 4, 64 * 81, 128, 512
    torch.manual_seed(0)
    bank = ExpertBank(num_experts, width, [expert_width, width], activation="gelu", output_activation=False)
    bank = bank.to(device, dtype)
    inputs = torch.randn(tokens, width, device=device, dtype=dtype, requires_grad=True)
    probs = torch.softmax(torch.randn(tokens, num_experts, device=device), dim=-1)
    weights, indices = probs.topk(k, dim=-1)
    weights = (weights / weights.sum(-1, keepdim=True)).to(dtype)

    def all_experts() -> torch.Tensor:
        mixture = torch.zeros(tokens, num_experts, device=device, dtype=dtype).scatter(1, indices, weights)
        return (bank(inputs) * mixture.unsqueeze(-1)).sum(1)

    implementations: dict[str, Callable[[], torch.Tensor]] = {
        "moezoo sparse": lambda: bank.forward_sparse(inputs, indices, weights),
        "moezoo all experts": all_experts,
    }
    for backend in BACKENDS:
        experts = TransformersExperts(BackendConfig(backend), bank).to(device, dtype)
        implementations[f"transformers {backend}"] = lambda experts=experts: experts(inputs, indices, weights)

    reference = implementations["moezoo sparse"]().detach().float()
    rows = []
    for name, forward in implementations.items():
        row: dict[str, Any] = {"implementation": name}
        try:
            difference = (forward().detach().float() - reference).abs().max().item()
            row["max_difference_from_sparse"] = difference
            row["forward_gflops"] = count_flops(forward) / 1e9
            row["ms_forward_backward"] = 1000 * median_seconds(lambda: forward().sum().backward(), repeats, device)
        except Exception as error:  # a backend without a kernel for this device or dtype
            row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
        rows.append(row)
        print(row, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--output", default=None, help="results file stem (default: m3vit_cost, or m3vit_cost_<device>)")
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    results = {
        "hardware": hardware,
        "dtype": args.dtype,
        "torch": torch.__version__,
        "models": model_costs(device, dtype, args.repeats),
        "training": training_step_costs(device, dtype, args.repeats),
        "moe_layer": moe_layer_speed(device, dtype, args.repeats),
    }
    stem = args.output or ("m3vit_cost" if device.type == "cpu" else f"m3vit_cost_{device.type}_{args.dtype}")
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(report(results))
    print(report(results))


def report(results: dict[str, Any]) -> str:
    lines = [
        f"### M³ViT cost ({results['hardware']}, {results['dtype']}, torch {results['torch']})",
        "",
        "Forward pass per image, batch 64 (FLOPs from FlopCounterMode: matrix products and attention):",
        "",
        "| case | parameters | GFLOPs / image | ms / image |",
        "|---|---|---|---|",
        *(f"| {row['case']} | {row['parameters']:,} | {row['gflops_per_image']:.4f} | {row['ms_per_image']:.3f} |"
          for row in results["models"]),
        "",
        f"Training step (forward and backward of the task losses, batch {results['training'][0]['batch']} "
        "canvases, every task on every canvas):",
        "",
        "| case | parameters | ms / step | x dense ViT |",
        "|---|---|---|---|",
        *(f"| {row['case']} | {row['parameters']:,} | {row['ms_per_step']:.1f} | "
          f"{row['ms_per_step'] / results['training'][-1]['ms_per_step']:.2f} |" for row in results["training"]),
        "",
        "MoE layer alone (E = 16, k = 4, 5,184 tokens, width 128, experts of width 512), forward + backward:",
        "",
        "| implementation | ms | relative to moezoo sparse | forward GFLOPs | max abs difference of outputs |",
        "|---|---|---|---|---|",
    ]
    sparse = next(row["ms_forward_backward"] for row in results["moe_layer"] if row["implementation"] == "moezoo sparse")
    for row in results["moe_layer"]:
        if "error" in row:
            lines.append(f"| {row['implementation']} | fails here: {row['error']} | | | |")
        else:
            lines.append(
                f"| {row['implementation']} | {row['ms_forward_backward']:.1f} | {row['ms_forward_backward'] / sparse:.2f}x "
                f"| {row['forward_gflops']:.2f} | {row['max_difference_from_sparse']:.2e} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
