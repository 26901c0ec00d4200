"""Figures for model cards: how much weight each gate gives each expert, or, for sparse (top-k) routing,
how many of each task's tokens each expert receives."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure

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


def plot_expert_usage(usage: Mapping[str, Sequence[torch.Tensor]], layer_names: Sequence[str], path: str | os.PathLike) -> Path:
    """Save a PNG heatmap per MoE block (side by side): rows are tasks, columns experts, each cell the
    share of the task's expert choices that went to the expert (see `measure_expert_usage`). Returns the path."""
    tasks = list(usage)
    num_layers = len(layer_names)
    widths = [len(usage[tasks[0]][layer]) for layer in range(num_layers)]
    figure = Figure(figsize=(2.0 + 0.32 * sum(widths) + 1.0 * num_layers, 1.6 + 0.45 * len(tasks)), layout="constrained")
    axes = figure.subplots(1, num_layers, squeeze=False, width_ratios=widths)[0]
    peak = max(float(usage[task][layer].max()) for task in tasks for layer in range(num_layers))
    for layer, axis in enumerate(axes):
        values = torch.stack([usage[task][layer] for task in tasks]).numpy()
        image = axis.imshow(values, vmin=0.0, vmax=peak, cmap="viridis", aspect="auto")
        axis.set_xticks(range(values.shape[1]), [str(expert) for expert in range(values.shape[1])], fontsize=7)
        axis.set_yticks(range(len(tasks)), tasks if layer == 0 else [""] * len(tasks))
        axis.set_xlabel("expert")
        axis.set_title(layer_names[layer])
    axes[0].set_ylabel("task")
    figure.colorbar(image, ax=list(axes), fraction=0.03, label="share of the task's expert choices")
    path = Path(path)
    figure.savefig(path, dpi=110)
    return path
