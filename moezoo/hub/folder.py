"""A checkpoint folder made ready to publish: its card and routing figure, measured on its test split."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel

from ..adapters.modeling_adapted import AdaptedTransformerModel
from ..merging.checkpoints import is_task_vector_experts
from ..models.modeling_utils import checkpoint_processor_class
from ..training.data import TensorDataset, make_eval_dataloader
from ..training.datasets import describe_dataset, run_split
from ..training.splits import run_eval_batch_size
from .cards import (
    ADAPTER_MIXING_CAPTION,
    EXPERT_USAGE_CAPTION,
    TASK_GAPS_CAPTION,
    TOKEN_ROUTING_CAPTION,
    CardDetails,
    build_model_card,
    task_parameter_counts,
)
from .failures import failure_report
from .figures import (
    measure_adapter_mixing,
    measure_expert_usage,
    measure_gate_weights,
    measure_task_gaps,
    measure_token_routing,
    plot_gate_weights,
    plot_task_gaps,
    plot_task_shares,
    plot_training_history,
)

FIGURE = "routing.png"
TRAINING_FIGURE = "learning_curve.png"
CARD = "README.md"
RESULTS = "results.json"
#: Examples of the test split on which the parameters each task uses are measured (fewer for a ViT,
#: whose gradients over every token of every pathway take far more memory per example).
PROBE_EXAMPLES = 4096
VIT_PROBE_EXAMPLES = 256


def find_results_file(folder: str | os.PathLike) -> Path | None:
    """The ``results.json`` of a checkpoint: in its folder (a zoo entry) or the folder above (a recipe's
    ``best/``); ``None`` when there is none."""
    for candidate in (Path(folder) / RESULTS, Path(folder).parent / RESULTS):
        if candidate.is_file():
            return candidate
    return None


def find_results(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The contents of a checkpoint's ``results.json`` (see `find_results_file`); ``None`` when there is none."""
    path = find_results_file(folder)
    return json.loads(path.read_text()) if path is not None else None


def encoded_test_batches(results: dict[str, Any], folder: str | os.PathLike) -> list[dict[str, Any]]:
    """The test split the run was scored on, encoded as its recipe encodes it, in the batches its evaluation
    reads (`moezoo.training.data.make_eval_dataloader`, of the run's size,
    `moezoo.training.splits.run_eval_batch_size`); per-task labels are nested under ``labels``."""
    loader = make_eval_dataloader(TensorDataset(run_split(results["arguments"], folder, "test")), run_eval_batch_size(results["arguments"]))
    return list(loader)


def plot_adapter_figure(
    model: AdaptedTransformerModel, batches: list[dict[str, Any]], path: Path, details: CardDetails
) -> bool:
    """The card figure of an adapted transformer, with its caption in ``details``: each task's mixing of
    each layer's heads or skills (task-routed adapters), or the gaps between the tasks' LoRA A outputs on
    the test split (Align-LoRA); for task-vector experts, whose task router only picks each task's own source,
    how the token routers mix the sources for inputs without a task id. ``False`` when the method has none of
    these (plain LoRA, a frozen encoder)."""
    if is_task_vector_experts(model):
        layer_names, mixing = measure_token_routing(model, batches)
        plot_task_shares(mixing, layer_names, path, unit="head", label="the token routers' weight on the head")
        details.figure_caption = TOKEN_ROUTING_CAPTION.format(unit="head")
        return True
    if model.config.task_routed:
        layer_names, mixing = measure_adapter_mixing(model)
        unit = "skill" if model.config.adapter_method == "mhr" else "head"
        plot_task_shares(mixing, layer_names, path, unit=unit, label=f"the task's weight on the {unit}")
        details.figure_caption = ADAPTER_MIXING_CAPTION.format(unit=unit)
        return True
    if model.alignment is not None:
        plot_task_gaps(measure_task_gaps(model, batches), model.task_names, path)
        details.figure_caption = TASK_GAPS_CAPTION
        return True
    return False


def write_card(
    folder: str | os.PathLike,
    model_id: str | None = None,
    command: str | None = None,
    comparison: str | None = None,
    overwrite: bool = False,
    fine_tune_command: str | None = None,
    deviations: str | None = None,
) -> Path:
    """Write ``README.md`` (and, when the run's results and data are at hand, ``routing.png``) into a
    checkpoint folder: its figure and how it fails are measured on the run's test split. ``deviations`` says
    how the model deliberately differs from its paper (`CardDetails.deviations`). Returns the card's path.

    Raises:
        FileExistsError: the folder has a card and ``overwrite`` is not set.
    """
    folder = Path(folder)
    card_path = folder / CARD
    if card_path.exists() and not overwrite:
        raise FileExistsError(f"{card_path} exists; pass --overwrite to regenerate it.")
    model = AutoModel.from_pretrained(folder)
    results = find_results(folder)
    details = CardDetails(
        model_id=model_id or folder.name, command=command, comparison=comparison,
        processor_class=checkpoint_processor_class(folder), fine_tune_command=fine_tune_command, deviations=deviations,
    )
    if results is not None:
        details.dataset = describe_dataset(results["arguments"])
        batches = encoded_test_batches(results, folder)
        details.failures = failure_report(model, batches)
        if is_task_vector_experts(model):
            # Its scores given task ids are its sources'; what it does without them is its own.
            with model.routing.by_tokens():
                without_ids = failure_report(model, batches)
            details.failures += "\n\nWithout task ids (the token routers' mix of the sources):\n\n" + without_ids
        if isinstance(model, AdaptedTransformerModel):
            # Every task uses the whole base model: the figure shows what the adapter does per task instead.
            if plot_adapter_figure(model, batches, folder / FIGURE, details):
                details.figure = FIGURE
        else:
            probe = PROBE_EXAMPLES
            if hasattr(model, "expert_usage"):  # sparse, per-token routing: which experts each task's tokens use
                layer_names = [f"block {index}" for index in model.config.moe_layers]
                plot_task_shares(measure_expert_usage(model, batches), layer_names, folder / FIGURE)
                details.figure_caption = EXPERT_USAGE_CAPTION
                probe = VIT_PROBE_EXAMPLES
            else:
                plot_gate_weights(model, measure_gate_weights(model, batches), folder / FIGURE)
            details.figure = FIGURE
            probe_inputs = {name: torch.cat([batch[name] for batch in batches])[:probe] for name in batches[0] if name != "labels"}
            details.task_parameters = task_parameter_counts(model, probe_inputs)
    if results is not None and any(key.startswith("eval/") for record in results.get("history", []) for key in record):
        plot_training_history(results["history"], model.task_names, folder / TRAINING_FIGURE)
        details.training_figure = TRAINING_FIGURE
    build_model_card(model, results, details).save(card_path)
    return card_path
