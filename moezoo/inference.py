"""Scoring raw rows with a trained tabular model."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from .models.modeling_utils import MultiTaskPreTrainedModel
from .tabular import TabularProcessor
from .tabular.processor import RawRows
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
    encoded = processor(rows, return_tensors="pt")
    encoded.pop("labels", None)
    device = next(model.parameters()).device
    columns: dict[str, list[torch.Tensor]] = {name: [] for name in task_names}
    num_rows = len(encoded["numeric_features"])
    for start in range(0, num_rows, batch_size):
        batch = {name: value[start : start + batch_size].to(device) for name, value in encoded.items()}
        logits = model(**batch, tasks=task_names).logits
        for name in task_names:
            columns[name].append(task_predictions(specs[name], logits[name]).cpu())
    frame = {}
    for name in task_names:
        values = torch.cat(columns[name])
        if values.dim() == 1:
            frame[name] = values.numpy()
        else:
            frame.update({f"{name}_{i}": values[:, i].numpy() for i in range(values.shape[1])})
    return pd.DataFrame(frame)
