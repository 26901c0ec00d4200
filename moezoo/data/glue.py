"""Five small GLUE tasks (Wang et al. 2018) from GLUE's own TSV files, as one mixed multi-task dataset.

CoLA (acceptability), SST-2 (sentiment), MRPC (paraphrase), RTE (entailment) and STS-B (similarity,
a 0-5 score): each example keeps its task's index in ``task_ids``, so that a multi-task model scores it
for that task only. The train files are the training split; GLUE's dev files, the usual reporting
split, are the test split, and a validation split is held out of the training files.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import Dataset, DatasetDict, concatenate_datasets

from .paths import default_data_dir, resolve_dataset_dir

GLUE_SOURCE = "https://gluebenchmark.com/tasks (GLUE's download_glue_data.py writes glue_data/<TASK>/{train,dev}.tsv)"


@dataclass(frozen=True)
class GlueTask:
    """How one GLUE task's TSV files are read.

    Attributes:
        folder: The task's folder under ``glue/``.
        text_columns: The one or two text columns.
        label_column: The label column.
        kind: ``"multiclass"`` (two classes) or ``"regression"`` (STS-B's score).
        header: Whether the files start with a header (CoLA's do not).
        columns: Column names for files without a header.
        label_values: Text labels -> class index (RTE's), if the labels are words.
        metrics: GLUE's own metrics for the task beyond accuracy / MSE (`moezoo.TaskSpec.metrics`).
    """

    folder: str
    text_columns: tuple[str, ...]
    label_column: str
    kind: str = "multiclass"
    header: bool = True
    columns: tuple[str, ...] = ()
    label_values: tuple[tuple[str, int], ...] = ()
    metrics: tuple[str, ...] = ()


#: The tasks, by their lower-case GLUE name, in task-id order.
GLUE_TASKS = {
    "cola": GlueTask(
        "CoLA", ("sentence",), "label", header=False, columns=("source", "label", "original_label", "sentence"),
        metrics=("mcc",),
    ),
    "sst2": GlueTask("SST-2", ("sentence",), "label"),
    "mrpc": GlueTask("MRPC", ("#1 String", "#2 String"), "Quality", metrics=("f1",)),
    "rte": GlueTask("RTE", ("sentence1", "sentence2"), "label", label_values=(("entailment", 0), ("not_entailment", 1))),
    "stsb": GlueTask("STS-B", ("sentence1", "sentence2"), "score", kind="regression", metrics=("pearson", "spearman")),
}
#: The metric GLUE reports for each task (its mean over the tasks is the GLUE score).
GLUE_METRICS = {"cola": "mcc", "sst2": "accuracy", "mrpc": "f1", "rte": "accuracy", "stsb": "pearson"}
GLUE_FILES = ("train.tsv", "dev.tsv")


def glue_task_specs(tasks: Sequence[str] = tuple(GLUE_TASKS)) -> list[dict]:
    """`moezoo.TaskSpec` dicts of ``tasks``: two-class tasks as multiclass, STS-B as regression, each with
    GLUE's metrics."""
    return [
        {
            "name": name,
            "kind": GLUE_TASKS[name].kind,
            "num_labels": 2 if GLUE_TASKS[name].kind == "multiclass" else 1,
            "metrics": list(GLUE_TASKS[name].metrics),
        }
        for name in tasks
    ]


def read_glue_file(path: str | os.PathLike, task: GlueTask) -> pd.DataFrame:
    """One GLUE TSV file as ``text_a``, ``text_b`` (empty for one-sentence tasks) and ``label`` (float).

    GLUE's files are tab-separated without quoting (sentences hold quote characters), MRPC's start
    with a byte-order mark."""
    frame = pd.read_csv(
        path, sep="\t", quoting=csv.QUOTE_NONE, encoding="utf-8-sig", keep_default_na=False, dtype=str,
        header=0 if task.header else None, names=None if task.header else list(task.columns),
    )
    missing = [name for name in (*task.text_columns, task.label_column) if name not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {missing}; it has {list(frame.columns)}.")
    labels = frame[task.label_column]
    if task.label_values:
        mapping = dict(task.label_values)
        unknown = sorted(set(labels) - set(mapping))
        if unknown:
            raise ValueError(f"{path} has labels {unknown[:5]} that are not {sorted(mapping)}.")
        labels = labels.map(mapping)
    second = frame[task.text_columns[1]] if len(task.text_columns) > 1 else ""
    return pd.DataFrame(
        {"text_a": frame[task.text_columns[0]].str.strip(), "text_b": second if isinstance(second, str) else second.str.strip(),
         "label": labels.astype(np.float32)}
    )


def load_glue(
    data_dir: str | os.PathLike | None = None,
    tasks: Sequence[str] = tuple(GLUE_TASKS),
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> DatasetDict:
    """The GLUE tasks ``tasks`` as one mixed dataset per split.

    Args:
        data_dir: A folder holding ``glue/<TASK>/{train,dev}.tsv`` (default: ../shared/data when present,
            or ``$MOEZOO_DATA_DIR``), or the ``glue`` folder itself.
        tasks: Lower-case task names from `GLUE_TASKS`; their order gives the task ids.
        validation_fraction: Share of each task's training file held out for validation (model selection).
        seed: Seed of that hold-out.

    Returns:
        ``train`` / ``validation`` / ``test`` (GLUE's dev files) with ``text_a``, ``text_b``, ``label``
        (float: a class index, or STS-B's score), ``task`` (its name) and ``task_ids`` (its index in ``tasks``).
    """
    unknown = [name for name in tasks if name not in GLUE_TASKS]
    if unknown or not tasks or len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks must be distinct names from {list(GLUE_TASKS)}, got {list(tasks)}.")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}.")
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    glue_root = root / "glue" if root is not None and (root / "glue").is_dir() else root
    rng = np.random.default_rng(seed)
    parts: dict[str, list[Dataset]] = {"train": [], "validation": [], "test": []}
    for task_id, name in enumerate(tasks):
        task = GLUE_TASKS[name]
        folder = resolve_dataset_dir(glue_root, task.folder, list(GLUE_FILES), GLUE_SOURCE)
        train = read_glue_file(folder / "train.tsv", task)
        order = rng.permutation(len(train))
        held_out = int(round(validation_fraction * len(train)))
        frames = {
            "train": train.iloc[order[held_out:]],
            "validation": train.iloc[order[:held_out]],
            "test": read_glue_file(folder / "dev.tsv", task),
        }
        for split, frame in frames.items():
            frame = frame.reset_index(drop=True).assign(task=name, task_ids=task_id)
            parts[split].append(Dataset.from_pandas(frame, preserve_index=False))
    return DatasetDict({split: concatenate_datasets(datasets) for split, datasets in parts.items()})

