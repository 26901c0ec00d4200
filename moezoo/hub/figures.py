"""Figures for model cards: how much weight each gate gives each expert; for sparse (top-k) routing, how
many of each task's tokens each expert receives; for task-routed adapters, how each task mixes each
layer's heads or skills; for Align-LoRA, how far apart the tasks' representations are."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from moezoo_cli.catalog import headline_metric

from ..adapters.alignment import POOLED_VARIANCE_EPS, symmetric_kl_of_moments
from ..adapters.merging import task_mixing_weights, task_routed_layers
from ..adapters.modeling_adapted import AdaptedTransformerModel
from ..models.m3vit import M3ViTModel
from ..models.routed import RoutedMultiTaskModel
from ..routing import RoutingStatistics


def format_unit_label(label: tuple) -> str:
    """A routing unit's label as text: ``("task", ("ctr", "binary", 1), 0)`` -> ``"ctr 0"``,
    ``("shared", 2)`` -> ``"shared 2"``, ``("group", "g", 0)`` -> ``"group g 0"``."""
    kind, *rest = label
    parts = [str(part[0]) if isinstance(part, tuple) else str(part) for part in rest]
    return " ".join(parts) if kind == "task" else " ".join([kind, *parts])


def measure_gate_weights(model: RoutedMultiTaskModel, batches: Iterable[Mapping[str, torch.Tensor]]) -> dict[int, torch.Tensor]:
    """The mean gate weight ``[G, E]`` of every routing level over ``batches`` (model inputs; labels
    are ignored), keyed by level index, from `moezoo.routing.RoutingStatistics`."""
    model.eval()
    with torch.no_grad(), RoutingStatistics(model) as statistics:
        for batch in batches:
            model(**{name: value for name, value in batch.items() if name != "labels"})
    weights = {}
    for name, value in statistics.mean_gate_weights().items():
        level = re.fullmatch(r"router\.levels\.(\d+)", name)
        if level is not None:
            weights[int(level.group(1))] = value
    if not weights:
        raise ValueError("No batch reached the model's gates: give at least one batch of inputs.")
    return weights


def plot_gate_weights(model: RoutedMultiTaskModel, weights: Mapping[int, torch.Tensor], path: str | os.PathLike) -> Path:
    """Save a PNG heatmap per routing level (side by side): rows are gates, columns experts, each
    cell the gate's mean weight on the expert (see `measure_gate_weights`). Returns the path."""
    labels = model.config.routing_unit_labels()
    levels = sorted(weights)
    widths = [weights[level].shape[1] for level in levels]
    height = 1.6 + 0.4 * max(value.shape[0] for value in weights.values())
    figure = Figure(figsize=(2.0 + 0.45 * sum(widths) + 1.5 * len(levels), height), layout="constrained")
    axes = figure.subplots(1, len(levels), squeeze=False, width_ratios=widths)[0]
    for axis, level in zip(axes, levels):
        values = weights[level].float().numpy()
        gate_labels, expert_labels = labels[level]
        image = axis.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        axis.set_xticks(range(values.shape[1]), [format_unit_label(label) for label in expert_labels], rotation=90)
        axis.set_yticks(range(values.shape[0]), [format_unit_label(label) for label in gate_labels])
        axis.set_xlabel("expert")
        axis.set_title(f"level {level}" if len(levels) > 1 else "mean gate weight")
        for row in range(values.shape[0]):
            for column in range(values.shape[1]):
                if values.shape[1] <= 24:
                    axis.text(column, row, f"{values[row, column]:.2f}", ha="center", va="center", fontsize=7,
                              color="white" if values[row, column] < 0.5 else "black")
    axes[0].set_ylabel("gate")
    figure.colorbar(image, ax=list(axes), fraction=0.03, label="mean weight")
    path = Path(path)
    figure.savefig(path, dpi=110)
    return path


def measure_expert_usage(model: M3ViTModel, batches: Iterable[Mapping[str, torch.Tensor]]) -> dict[str, list[torch.Tensor]]:
    """For each task, the fraction of its tokens (times ``k``: each token picks ``k`` experts) that each
    expert of each MoE block receives over ``batches``, from the model's ``expert_usage`` (`M3ViTModel`):
    task -> one ``[E]`` tensor per MoE block, each summing to 1."""
    model.eval()
    pixels = [batch["pixel_values"] for batch in batches]
    usage = {}
    for task in model.task_names:
        counts = model.expert_usage(pixels, task)
        usage[task] = [layer_counts.float() / layer_counts.sum().clamp_min(1) for layer_counts in counts]
    return usage


def measure_adapter_mixing(model: AdaptedTransformerModel) -> tuple[list[str], dict[str, list[torch.Tensor]]]:
    """How each task mixes the units of each task-routed adapter layer (`moezoo.adapters.task_mixing_weights`:
    a multi-head LoRA's heads; MHR's skills, averaged over its splits): the layers' short names
    (`short_layer_name`: ``"3 attention query"``) and, per task, one ``[units]`` tensor per layer, each
    summing to 1."""
    layers = task_routed_layers(model.backbone)
    if not layers:
        raise ValueError(f"The model's {model.config.adapter_method!r} adapter does not route by task: nothing to plot.")
    usage: dict[str, list[torch.Tensor]] = {task: [] for task in model.task_names}
    with torch.no_grad():
        for layer in layers.values():
            for task_id, task in enumerate(model.task_names):
                mixing = task_mixing_weights(layer, "default", task_id)
                usage[task].append(mixing.reshape(-1, mixing.shape[-1]).mean(0))
    return _short_layer_names(list(layers)), usage


def measure_token_routing(
    model: AdaptedTransformerModel, batches: Iterable[Mapping[str, torch.Tensor]]
) -> tuple[list[str], dict[str, list[torch.Tensor]]]:
    """How the token routers of a multi-head LoRA mix each layer's heads when inputs come without a task id
    (`moezoo.adapters.TaskRouting.by_tokens`): the layers' short names and, per task, one ``[heads]`` tensor per
    layer, the router's softmax averaged over the task's tokens in ``batches`` (padding left out), each summing
    to 1. For task-vector experts (`moezoo.merging.task_vector_experts`) head ``i`` is source ``i``'s update, so a
    task's weight on its own source's head is how often its inputs find their way without an id.

    Raises:
        ValueError: the model has no token-routed multi-head LoRA layer.
    """
    layers = {name: layer for name, layer in task_routed_layers(model.backbone).items()
              if getattr(layer, "token_router", None) is not None and layer.token_router("default") is not None}
    if not layers:
        raise ValueError(f"The model's {model.config.adapter_method!r} adapter has no token router: nothing to plot.")
    sums = {task: [torch.zeros(0)] * len(layers) for task in model.task_names}
    mask: torch.Tensor | None = None
    task_ids: torch.Tensor | None = None

    def record(index: int, layer: torch.nn.Module, inputs: tuple) -> None:
        weights = layer.head_weights("default", inputs[0], None) * mask.unsqueeze(-1)  # [B, T, heads]
        for task_id, task in enumerate(model.task_names):
            total = weights[task_ids == task_id].sum((0, 1))
            sums[task][index] = total if sums[task][index].numel() == 0 else sums[task][index] + total

    handles = [layer.register_forward_pre_hook(lambda module, inputs, index=index: record(index, module, inputs))
               for index, layer in enumerate(layers.values())]
    model.eval()
    try:
        with torch.no_grad(), model.routing.by_tokens():
            for batch in batches:
                mask = batch["attention_mask"].to(torch.float32)
                task_ids = batch["task_ids"]
                model(**{name: value for name, value in batch.items() if name != "labels"})
    finally:
        for handle in handles:
            handle.remove()
    usage = {task: [total / total.sum().clamp_min(1e-12) for total in totals] for task, totals in sums.items()
             if totals[0].numel()}
    if not usage:
        raise ValueError("No batch reached the model's token routers: give at least one batch of inputs.")
    return _short_layer_names(list(layers)), usage


def _short_layer_names(module_names: list[str]) -> list[str]:
    """`short_layer_name` of each module, or the full names when the short forms collide."""
    names = [short_layer_name(name) for name in module_names]
    return names if len(set(names)) == len(names) else module_names


def short_layer_name(module_name: str) -> str:
    """A layer's name for a figure: its block index, then its path inside the block without the generic
    ``self`` and ``dense`` parts (``encoder.layer.3.attention.self.query`` -> ``"3 attention query"``,
    ``encoder.layer.3.attention.output.dense`` -> ``"3 attention output"``, ``encoder.layer.3.output.dense``
    -> ``"3 output"``). A name without a block index is kept whole."""
    block = re.search(r"\.(\d+)\.(.+)$", module_name)
    if block is None:
        return module_name
    index, path = block.groups()
    parts = [part for part in path.split(".") if part not in ("self", "dense")] or [path.rsplit(".", 1)[-1]]
    return f"{index} {' '.join(parts)}"


def measure_task_gaps(model: AdaptedTransformerModel, batches: Iterable[Mapping[str, torch.Tensor]]) -> torch.Tensor:
    """``[T, T]``: for each pair of tasks, the symmetric KL divergence between diagonal Gaussians fitted to
    their real tokens' LoRA ``A`` outputs over all of ``batches``, averaged over the LoRA layers: the
    distance Align-LoRA's loss shrinks, measured on whole splits instead of batches."""
    alignment = model.alignment
    if alignment is None:
        raise ValueError("Task gaps are measured on LoRA A outputs: the model needs adapter_method='align_lora'.")
    num_tasks = len(model.task_names)
    moments: list[list[torch.Tensor]] = []  # per layer: token count [T], sum [T, r], sum of squares [T, r]
    model.eval()
    with torch.no_grad():
        for batch in batches:
            model(**{name: value for name, value in batch.items() if name != "labels"})
            for layer, (output, mask) in enumerate(alignment.layer_tokens()):
                task_of_token = batch["task_ids"].to(output.device)[:, None].expand(mask.shape)[mask]
                tokens = output[mask].double()
                if layer == len(moments):
                    moments.append([torch.zeros(num_tasks, dtype=torch.float64), *torch.zeros(2, num_tasks, tokens.shape[-1], dtype=torch.float64)])
                count, total, squares = moments[layer]
                count.index_add_(0, task_of_token, torch.ones_like(task_of_token, dtype=torch.float64))
                total.index_add_(0, task_of_token, tokens)
                squares.index_add_(0, task_of_token, tokens**2)
    if not moments:
        raise ValueError("No batch reached the model's LoRA layers: give at least one batch of inputs.")
    gaps = torch.zeros(num_tasks, num_tasks, dtype=torch.float64)
    for count, total, squares in moments:
        mean = total / count.clamp_min(1)[:, None]
        variance = (squares / count.clamp_min(1)[:, None] - mean**2).clamp_min(0) + POOLED_VARIANCE_EPS
        gaps += symmetric_kl_of_moments(mean[:, None], variance[:, None], mean[None], variance[None])
    return (gaps / len(moments)).float()


def plot_task_gaps(gaps: torch.Tensor, task_names: Sequence[str], path: str | os.PathLike) -> Path:
    """Save a PNG heatmap of `measure_task_gaps` (tasks by tasks). Returns the path."""
    values = gaps.numpy()
    figure = Figure(figsize=(2.2 + 0.7 * len(task_names), 1.6 + 0.6 * len(task_names)), layout="constrained")
    axis = figure.subplots()
    image = axis.imshow(values, cmap="viridis")
    axis.set_xticks(range(len(task_names)), task_names, rotation=90)
    axis.set_yticks(range(len(task_names)), task_names)
    for row in range(len(task_names)):
        for column in range(len(task_names)):
            axis.text(column, row, f"{values[row, column]:.2g}", ha="center", va="center", fontsize=7,
                      color="white" if values[row, column] < values.max() / 2 else "black")
    axis.set_title("symmetric KL of LoRA A outputs")
    figure.colorbar(image, ax=axis, fraction=0.05, label="mean over layers")
    path = Path(path)
    figure.savefig(path, dpi=110)
    return path


def plot_task_shares(
    usage: Mapping[str, Sequence[torch.Tensor]],
    layer_names: Sequence[str],
    path: str | os.PathLike,
    unit: str = "expert",
    label: str = "share of the task's expert choices",
    panels_per_row: int | None = None,
) -> Path:
    """Save a PNG heatmap per layer: rows are tasks, columns the layer's units (experts, heads, skills), each
    cell the task's share of the unit (`measure_expert_usage`, `measure_adapter_mixing`); ``unit`` names the
    columns, ``label`` the colour scale. The panels run side by side, ``panels_per_row`` to a row (default:
    as many layers as share the first layer's block index, so that an adapted transformer gets a row per
    block; all in one row when the names carry no index). Returns the path."""
    tasks = list(usage)
    num_layers = len(layer_names)
    if panels_per_row is None:
        blocks = [name.split(" ", 1)[0] for name in layer_names]
        panels_per_row = blocks.count(blocks[0]) if blocks[0].isdigit() else num_layers
    num_columns = min(panels_per_row, num_layers)
    num_rows = -(-num_layers // num_columns)
    num_units = max(len(usage[tasks[0]][layer]) for layer in range(num_layers))
    figure = Figure(
        figsize=(2.0 + num_columns * (1.0 + 0.32 * num_units), num_rows * (1.0 + 0.3 * len(tasks)) + 0.6),
        layout="constrained",
    )
    axes = figure.subplots(num_rows, num_columns, squeeze=False)
    peak = max(float(usage[task][layer].max()) for task in tasks for layer in range(num_layers))
    for layer, axis in enumerate(axes.flat):
        if layer >= num_layers:
            axis.set_axis_off()
            continue
        values = torch.stack([usage[task][layer] for task in tasks]).numpy()
        image = axis.imshow(values, vmin=0.0, vmax=peak, cmap="viridis", aspect="auto")
        axis.set_xticks(range(values.shape[1]), [str(expert) for expert in range(values.shape[1])], fontsize=7)
        first_column = layer % num_columns == 0
        axis.set_yticks(range(len(tasks)), tasks if first_column else [""] * len(tasks), fontsize=7)
        if layer >= num_layers - num_columns:
            axis.set_xlabel(unit, fontsize=8)
        axis.set_title(layer_names[layer], fontsize=8)
    figure.colorbar(image, ax=axes.ravel().tolist(), fraction=0.03, label=label)
    path = Path(path)
    figure.savefig(path, dpi=110)
    return path


def plot_training_history(history: Sequence[Mapping[str, Any]], task_names: Sequence[str], path: str | os.PathLike) -> Path:
    """Save a PNG of a run's learning curve from its history (a record per epoch, `moezoo.training.train`): each
    task's headline validation metric by epoch (`moezoo_cli.catalog.headline_metric`), and where the run
    balanced its tasks (`moezoo.balancing`), the tasks' mean weights and their gradients' mean cosines and
    conflict rate by epoch. Returns the path.

    Raises:
        ValueError: no record holds a validation metric.
    """
    evaluated = [record for record in history if any(key.startswith("eval/") for key in record)]
    if not evaluated:
        raise ValueError("The history holds no validation metrics: nothing to plot.")
    panels = ["validation"]
    if any(key.startswith("train/task_weight/") for key in history[-1]):
        panels.append("weights")
    if any(key.startswith("train/gradient_cosine/") for key in history[-1]):
        panels.append("cosines")
    figure = Figure(figsize=(4.2 * len(panels), 3.2), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    metrics = {key.removeprefix("eval/"): value for key, value in evaluated[-1].items() if key.startswith("eval/")}
    for task in task_names:
        metric = headline_metric(task, metrics)
        if metric is not None:
            axes[0].plot([record["epoch"] for record in evaluated], [record[f"eval/{task}/{metric}"] for record in evaluated],
                         marker="o", label=f"{task} {metric}")
    axes[0].set(title="validation", xlabel="epoch")
    axes[0].legend(fontsize=7)
    epochs = [record["epoch"] for record in history]
    for axis, panel in zip(axes[1:], panels[1:]):
        prefix = "train/task_weight/" if panel == "weights" else "train/gradient_cosine/"
        for key in sorted(key for key in history[-1] if key.startswith(prefix)):
            axis.plot(epochs, [record.get(key) for record in history], marker="o", label=key.removeprefix(prefix))
        if panel == "cosines":
            axis.plot(epochs, [record.get("train/gradient_conflict_rate") for record in history], marker="s",
                      linestyle="--", color="black", label="conflict rate")
            axis.axhline(0.0, color="grey", linewidth=0.5)
        axis.set(title="task weights" if panel == "weights" else "task gradient cosines", xlabel="epoch")
        axis.legend(fontsize=7)
    path = Path(path)
    figure.savefig(path, dpi=110)
    return path
