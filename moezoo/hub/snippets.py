"""The code a model card shows: loading the checkpoint and predicting with it on real examples of its data."""

from __future__ import annotations

from ..models.modeling_utils import MultiTaskPreTrainedModel

#: How a card's snippet gets a few real examples of each registered data set (`moezoo.training.datasets`).
_EXAMPLES = {
    "census_income": (
        "from moezoo.data import load_census_income\n",
        'rows = load_census_income()["test"].select(range(4)).to_pandas()  # raw rows; label columns are ignored',
    ),
    "mnist": (
        "from moezoo.data import load_multi_mnist\n",
        'canvases = load_multi_mnist(dataset="mnist", splits=["test"])["test"][:4]["pixel_values"]  # [4, 1, 36, 36] in [0, 1]',
    ),
    "fashion-mnist": (
        "from moezoo.data import load_multi_mnist\n",
        'canvases = load_multi_mnist(dataset="fashion-mnist", splits=["test"])["test"][:4]["pixel_values"]  # [4, 1, 36, 36]',
    ),
}


def prediction_snippet(
    model: MultiTaskPreTrainedModel, model_id: str, dataset: str | None, processor_class: str | None
) -> str:
    """Python that loads the checkpoint ``model_id`` (a Hub id or a folder) through transformers' Auto classes
    after ``import moezoo`` and, for a data set moezoo knows, predicts every task for a few real examples."""
    imported = f"{processor_class}, AutoModel" if processor_class else "AutoModel"
    data_import, examples = _EXAMPLES.get(dataset or "", ("", None))
    adapted = getattr(model.config, "base_model_name_or_path", None) is not None
    lines = [
        *(["import torch"] if adapted else []),
        "import moezoo  # registers the architectures with transformers",
        f"from transformers import {imported}",
        *([data_import.rstrip()] if data_import else []),
        "",
        f"model = AutoModel.from_pretrained({model_id!r})",
    ]
    if processor_class:
        lines.append(f"processor = {processor_class}.from_pretrained({model_id!r})")
    if adapted:
        return "\n".join([*lines, *_adapter_lines(model)])
    if examples is None:
        return "\n".join(lines)
    lines.append(examples)
    if processor_class == "AutoFeatureExtractor":
        lines.append("scores = moezoo.inference.predict_rows(model, processor, rows)  # a column per task (or class)")
    elif processor_class == "AutoImageProcessor":
        image_tasks = [task for task in model.task_names if task not in model.dense_tasks]
        dense = [task for task in model.task_names if task in model.dense_tasks]
        shown = [*image_tasks[:1], *dense[:1]]
        lines += [
            "inputs = processor(images=(canvases * 255).round().byte(), return_tensors=\"pt\")",
            f"logits = model(**inputs, tasks={shown!r}).logits  # only these tasks' pathways run",
            "predictions = {task: value.argmax(1) for task, value in logits.items()}  "
            "# each item's class; per pixel for a dense task",
        ]
    else:
        lines += [
            "logits = model(pixel_values=canvases).logits",
            "predictions = {task: value.argmax(-1).tolist() for task, value in logits.items()}  # each item's class",
        ]
    return "\n".join(lines)


def _adapter_lines(model: MultiTaskPreTrainedModel) -> list[str]:
    """An adapted transformer's prediction: a sentence for one task and a sentence pair for another, each named
    by its task id."""
    names = model.task_names
    single = next((name for name in ("sst2", "cola") if name in names), names[0])
    pair = next((name for name in ("stsb", "mrpc", "rte") if name in names), None)
    lines = [
        "",
        f"# The base model, {model.config.base_model_name_or_path}, loads first; then the adapter and the heads.",
        f"# Each example names its task by its index in {names}.",
        'inputs = processor(["a gripping, funny film"], return_tensors="pt")',
        f"logits = model(**inputs, task_ids=torch.tensor([{names.index(single)}])).logits[{single!r}]",
        f"print({single!r}, logits.softmax(-1))",
    ]
    if pair is not None:
        lines += [
            'pair = processor(["A man is playing a guitar."], ["Someone plays an instrument."], return_tensors="pt")',
            f"score = model(**pair, task_ids=torch.tensor([{names.index(pair)}])).logits[{pair!r}]",
            f"print({pair!r}, score)",
        ]
    return lines
