"""Five small GLUE tasks (Wang et al. 2018) from GLUE's own TSV files, as one mixed multi-task dataset.

CoLA (acceptability), SST-2 (sentiment), MRPC (paraphrase), RTE (entailment) and STS-B (similarity,
a 0-5 score): each example keeps its task's index in ``task_ids``, so that a multi-task model scores it
for that task only. The train files are the training split; GLUE's dev files, the usual reporting
split, are the test split, and a validation split is held out of the training files.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from typing import Any

import numpy as np
import pandas as pd
import torch
from datasets import Dataset, DatasetDict, concatenate_datasets

from .paths import default_data_dir
from .sources import DataSource, SourceFile, downloads_allowed, local_copy, missing_files_error



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
#: GLUE on the Hub: where a task is loaded from (with `datasets.load_dataset`) when its TSV files are not here.
GLUE_HUB_ID = "nyu-mll/glue"
#: Each task's text columns in the Hub's copy (whose labels are already class indices or scores).
GLUE_HUB_TEXT_COLUMNS = {
    "cola": ("sentence",), "sst2": ("sentence",), "mrpc": ("sentence1", "sentence2"), "rte": ("sentence1", "sentence2"),
    "stsb": ("sentence1", "sentence2"),
}
#: Rows and the sum of the labels (the positives' count; STS-B's summed scores) of each task's train and dev
#: files, as ../shared/data/glue/PROVENANCE.md records them: what the Hub's copy is checked against.
GLUE_SPLIT_CHECKS = {
    "cola": {"train": (8551, 6023.0), "dev": (1043, 721.0)},
    "sst2": {"train": (67349, 37569.0), "dev": (872, 444.0)},
    "mrpc": {"train": (3668, 2474.0), "dev": (408, 279.0)},
    "rte": {"train": (2490, 1241.0), "dev": (277, 131.0)},
    "stsb": {"train": (5749, 15528.0), "dev": (1500, 3545.9)},
}
#: Each task's train and dev files with their checksums, as ../shared/data/glue/PROVENANCE.md records them. GLUE's
#: own archives hold other bytes, so without these files a task is loaded from the Hub (`GLUE_HUB_ID`) instead.
GLUE_SOURCES = {
    name: DataSource(
        folder=GLUE_TASKS[name].folder,
        files=(SourceFile("train.tsv", train), SourceFile("dev.tsv", dev)),
        homepage="https://gluebenchmark.com/tasks (GLUE's download_glue_data.py writes glue_data/<TASK>/{train,dev}.tsv)",
    )
    for name, train, dev in (
        ("cola", "cb368ebeb9f27d7ad03720d27ddc95687a311bdb100781a2fe59a5f5b1bc0624",
         "8c013e21dc39957cac37378d87bebe225b694a0d5fe13eded66c2856628833fd"),
        ("sst2", "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
         "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"),
        ("mrpc", "122becc469405bc16f9defcb8715d2a4b7ce600e9d9381e6dc42bfdd1494c51d",
         "81c8a1a9e1dfe461dd2c1a4f98f43fe18bece44d2bf9e3d0b245b88e5aa5eaf7"),
        ("rte", "41e3a9b063433392343fad9e962cf2f58b681c78d8f71592f4186f0837246c5c",
         "80230dfa1347282e7b532b06a1004a76a710087541189bf874223ddf0e3819fb"),
        ("stsb", "41c4d978b6162abdcada7e49a982211954cca5459c228db478af333124b257a2",
         "fe7dc0632a5033562f3cadff991f6e8d9b9b6311861660e78c3c82eb7db67f59"),
    )
}


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


def glue_task_files(name: str, glue_root: str | os.PathLike | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Task ``name``'s train and dev files as `read_glue_file` frames: GLUE's TSV files when they are here (see
    `moezoo.data.sources.local_copy`), else the task from the Hub (`GLUE_HUB_ID`), checked against the rows and
    labels its provenance records.

    Raises:
        FileNotFoundError: neither is available (offline, or the Hub's copy could not be loaded or differs).
    """
    task, source = GLUE_TASKS[name], GLUE_SOURCES[name]
    folder = local_copy(source, glue_root)
    if folder is not None:
        return read_glue_file(folder / "train.tsv", task), read_glue_file(folder / "dev.tsv", task)
    if not downloads_allowed():
        raise missing_files_error(source, glue_root, f"loading {GLUE_HUB_ID} from the Hub is off (HF_HUB_OFFLINE)")
    try:
        return glue_task_from_hub(name)
    except (OSError, ValueError) as error:  # no connection, no such repository, or a copy that differs
        raise missing_files_error(source, glue_root, f"loading it from the Hub ({GLUE_HUB_ID}) failed: {error}") from error


def glue_task_from_hub(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Task ``name``'s train and validation splits from the Hub's GLUE (GLUE's train and dev files), as
    `read_glue_file` frames.

    Raises:
        ValueError: a split's rows or labels differ from what `GLUE_SPLIT_CHECKS` records.
    """
    from datasets import load_dataset

    first, *second = GLUE_HUB_TEXT_COLUMNS[name]
    frames = []
    for split, file in (("train", "train"), ("validation", "dev")):
        rows = load_dataset(GLUE_HUB_ID, name, split=split).to_pandas()
        frame = pd.DataFrame({
            "text_a": rows[first].str.strip(), "text_b": rows[second[0]].str.strip() if second else "",
            "label": rows["label"].astype(np.float32),
        })
        expected_rows, expected_sum = GLUE_SPLIT_CHECKS[name][file]
        found_sum = float(frame["label"].sum())
        if len(frame) != expected_rows or abs(found_sum - expected_sum) > 0.05:
            raise ValueError(
                f"{GLUE_HUB_ID} ({name}, {split}) has {len(frame)} rows with labels summing to {found_sum:.1f}; GLUE's "
                f"{file} file has {expected_rows} rows summing to {expected_sum:.1f}"
            )
        frames.append(frame)
    return frames[0], frames[1]


def load_glue(
    data_dir: str | os.PathLike | None = None,
    tasks: Sequence[str] = tuple(GLUE_TASKS),
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> DatasetDict:
    """The GLUE tasks ``tasks`` as one mixed dataset per split.

    Args:
        data_dir: A folder holding ``glue/<TASK>/{train,dev}.tsv`` (default: ../shared/data when present,
            or ``$MOEZOO_DATA_DIR``), or the ``glue`` folder itself. A task whose files are not there is loaded
            from the Hub's GLUE (`GLUE_HUB_ID`) and checked against its provenance (`glue_task_files`).
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
        train, dev = glue_task_files(name, glue_root)
        order = rng.permutation(len(train))
        held_out = int(round(validation_fraction * len(train)))
        frames = {"train": train.iloc[order[held_out:]], "validation": train.iloc[order[:held_out]], "test": dev}
        for split, frame in frames.items():
            frame = frame.reset_index(drop=True).assign(task=name, task_ids=task_id)
            parts[split].append(Dataset.from_pandas(frame, preserve_index=False))
    return DatasetDict({split: concatenate_datasets(datasets) for split, datasets in parts.items()})



def per_task_subset(split: Dataset, limit: int | None, seed: int | None) -> Dataset:
    """At most ``limit`` examples of each task: a random subset (``seed``), or the first ones (``None``)."""
    if limit is None:
        return split
    task_ids = np.asarray(_columns(split, "task_ids")["task_ids"])
    rng = np.random.default_rng(seed) if seed is not None else None
    keep = []
    for task in np.unique(task_ids):
        rows = np.flatnonzero(task_ids == task)
        keep.extend(rng.permutation(rows)[:limit] if rng is not None else rows[:limit])
    return split.select(sorted(keep))


def _columns(split: Dataset, *names: str) -> dict[str, list]:
    """Whole columns of ``split`` as lists, read at once (a `datasets` column read item by item costs about a
    millisecond per item)."""
    return split.with_format("arrow", columns=list(names))[:].to_pydict()


def _tokenize(split: Dataset, tokenizer: Any, columns: Sequence[str], **settings: Any) -> dict[str, np.ndarray]:
    """The tokenizer's output ``columns`` (those it returns) for every example of ``split``, in the split's order,
    as arrays (``settings`` must give one value, or equally long rows, per example in them). One-sentence and
    sentence-pair examples are tokenised apart (a pair list cannot hold gaps), then put back in order."""
    texts = _columns(split, "text_a", "text_b")
    first, second = texts["text_a"], texts["text_b"]
    groups = ([index for index, text in enumerate(second) if not text], [index for index, text in enumerate(second) if text])
    rows, parts = [], {}
    for indices, paired in zip(groups, (False, True)):
        if not indices:
            continue
        pairs = [second[index] for index in indices] if paired else None
        encoded = tokenizer([first[index] for index in indices], pairs, **settings)
        rows += indices
        for name in columns:
            if name in encoded:
                parts.setdefault(name, []).append(np.asarray(encoded[name]))
    order = np.argsort(rows, kind="stable")
    return {name: np.concatenate(values)[order] for name, values in parts.items()}


def encode_glue_split(split: Dataset, tokenizer: Any, num_tasks: int, max_length: int) -> dict[str, torch.Tensor]:
    """A split of `load_glue` as model inputs: token ids (truncated to ``max_length`` and right-padded to it:
    each batch is cut to its longest example when it is drawn, `moezoo.training.lengths.trim_padding`),
    ``task_ids``, and ``labels`` ``[N, num_tasks]``, each row's own task's label in its column and NaN
    (missing) elsewhere, so that each task is scored on its own examples."""
    token_columns = ("input_ids", "attention_mask", "token_type_ids")
    encoded = _tokenize(
        split, tokenizer, token_columns, truncation=True, padding="max_length", max_length=max_length, return_tensors="np"
    )
    values = _columns(split, "task_ids", "label")
    task_ids = torch.tensor(values["task_ids"], dtype=torch.long)
    labels = torch.full((len(task_ids), num_tasks), float("nan"))
    labels[torch.arange(len(task_ids)), task_ids] = torch.tensor(values["label"], dtype=torch.float32)
    columns = {name: torch.from_numpy(encoded[name].astype(np.int64)) for name in token_columns if name in encoded}
    return {**columns, "task_ids": task_ids, "labels": labels}


def truncated_share(split: Dataset, tokenizer: Any, max_length: int) -> dict[str, float]:
    """The share of each task's examples in ``split`` longer than ``max_length`` tokens, which
    `encode_glue_split` cuts (a pair loses tokens from its longer sentence)."""
    lengths = _tokenize(split, tokenizer, ["length"], return_length=True)["length"]
    tasks = np.asarray(_columns(split, "task")["task"])
    return {str(name): float((lengths[tasks == name] > max_length).mean()) for name in dict.fromkeys(tasks)}


#: The settings of a GLUE run (its ``results.json`` arguments) that say which data it read.
GLUE_DATA_SETTINGS = (
    "data_dir", "tasks", "max_seq_length", "validation_fraction", "data_seed", "max_train_samples_per_task",
    "max_validation_samples_per_task",
)


def glue_data_settings(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of `load_encoded_glue` among a run's settings (those it sets)."""
    return {name: arguments[name] for name in GLUE_DATA_SETTINGS if name in arguments}


def glue_subsets(
    data_dir: str | os.PathLike | None = None,
    tasks: Sequence[str] = tuple(GLUE_TASKS),
    validation_fraction: float = 0.1,
    data_seed: int = 0,
    max_train_samples_per_task: int | None = None,
    max_validation_samples_per_task: int | None = None,
    splits: Sequence[str] = ("train", "validation", "test"),
) -> dict[str, Dataset]:
    """`load_glue`'s ``splits`` as the GLUE recipe trains and scores them: a random ``max_train_samples_per_task``
    of each task's training examples (``data_seed``), the first ``max_validation_samples_per_task`` of its
    validation ones, and the test split (GLUE's dev set) whole, so that its scores compare with published ones."""
    loaded = load_glue(data_dir, tasks, validation_fraction, data_seed)
    limits = {"train": (max_train_samples_per_task, data_seed), "validation": (max_validation_samples_per_task, None)}
    return {name: per_task_subset(loaded[name], *limits.get(name, (None, None))) for name in splits}


def load_encoded_glue(tokenizer: Any, max_seq_length: int = 128, **settings: Any) -> dict[str, dict[str, torch.Tensor]]:
    """`glue_subsets` (``settings`` are its arguments) encoded by `encode_glue_split`."""
    subsets = glue_subsets(**settings)
    num_tasks = len(settings.get("tasks", GLUE_TASKS))
    return {name: encode_glue_split(split, tokenizer, num_tasks, max_seq_length) for name, split in subsets.items()}
