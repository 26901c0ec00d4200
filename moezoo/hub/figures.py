"""Figures for model cards: how much weight each gate gives each expert."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from matplotlib.figure import Figure

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
