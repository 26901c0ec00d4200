"""Scoring raw rows with a trained tabular model."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from .models.modeling_utils import MultiTaskPreTrainedModel
from .tabular import TabularProcessor
from .tabular.processor import RawRows, rows_to_frame
from .tasks import task_predictions


@torch.no_grad()
def predict_rows(
    model: MultiTaskPreTrainedModel,
    processor: TabularProcessor,
    rows: RawRows,
    tasks: str | Sequence[str] | None = None,
    batch_size: int = 8192,
) -> pd.DataFrame:
    """Predictions for raw rows: one column per binary or single-output regression task (probability
    or value), one column per class or label (``"{task}_{i}"``) otherwise.

    Example:
        >>> model = AutoModel.from_pretrained(folder); processor = AutoFeatureExtractor.from_pretrained(folder)
        >>> predict_rows(model, processor, [{"age": 40, "sex": "Female", ...}])  # doctest: +SKIP
    """
    model.eval()
    task_names = model.resolve_tasks(tasks)
    specs = {task.name: task for task in model.task_specs}
    schema = model.config.feature_schema
    if schema is None or schema.to_dict() != processor.feature_schema.to_dict():
        raise ValueError(
            "This processor does not produce the features the model reads (the model config's 'features' differ "
            "from processor.feature_schema): load the processor saved beside this model."
        )
    # Label columns, when the rows hold them, play no part in a prediction.
    frame = rows_to_frame(rows).drop(columns=processor.label_columns, errors="ignore")
    encoded = processor(frame, return_tensors="pt")
    device = next(model.parameters()).device
    columns: dict[str, list[torch.Tensor]] = {name: [] for name in task_names}
    num_rows = len(encoded["numeric_features"])
    for start in range(0, num_rows, batch_size):
        batch = {name: value[start : start + batch_size].to(device) for name, value in encoded.items()}
        logits = model(**batch, tasks=task_names).logits
        for name in task_names:
            columns[name].append(task_predictions(specs[name], logits[name]).cpu())
    if num_rows == 0:
        return pd.DataFrame({name: [] for name in prediction_columns(model, task_names)})
    frame = {}
    for name in task_names:
        values = torch.cat(columns[name])
        if values.dim() == 1:
            frame[name] = values.numpy()
        else:
            frame.update({f"{name}_{i}": values[:, i].numpy() for i in range(values.shape[1])})
    return pd.DataFrame(frame)


def prediction_columns(model: MultiTaskPreTrainedModel, task_names: Sequence[str]) -> list[str]:
    """The columns `predict_rows` returns for these tasks."""
    specs = {task.name: task for task in model.task_specs}
    columns = []
    for name in task_names:
        task = specs[name]
        single = task.kind == "binary" or (task.kind == "regression" and task.num_labels == 1)
        columns += [name] if single else [f"{name}_{i}" for i in range(task.num_labels)]
    return columns
