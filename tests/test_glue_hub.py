"""GLUE on a machine without its TSV files: each task is loaded from the Hub's copy (nyu-mll/glue, here
served by the loopback Hub in the Hub's own layout: parquet files per task and split, configs in the
README) through `datasets.load_dataset`, checked against the rows and labels its provenance records.

Not covered: the real nyu-mll/glue repository (its layout is the one served here, as of the datasets
library's parquet conversion), Xet-stored files, and the tasks other than CoLA and RTE (the same code reads
them; their files are large for a test)."""

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from local_hub import TOKEN, LocalHub, Repository
from moezoo.data.glue import GLUE_HUB_TEXT_COLUMNS, GLUE_SPLIT_CHECKS, GLUE_TASKS, load_glue, read_glue_file

REPO = Path(__file__).resolve().parents[1]
TASKS = ["cola", "rte"]


def hub_files(data_dir: Path, tasks: list[str], drop_rows: int = 0) -> dict[str, bytes]:
    """nyu-mll/glue's files for ``tasks``, made from GLUE's TSV files: one parquet file per task and split
    (text columns, integer or float ``label``, ``idx``) and a README whose metadata names the configs."""
    files, configs = {}, []
    for name in tasks:
        task = GLUE_TASKS[name]
        configs.append(f"- config_name: {name}\n  data_files:\n" + "".join(
            f"  - split: {split}\n    path: {name}/{split}-*\n" for split in ("train", "validation")
        ))
        for split, file in (("train", "train.tsv"), ("validation", "dev.tsv")):
            frame = read_glue_file(data_dir / "glue" / task.folder / file, task).iloc[drop_rows:]
            columns = dict(zip(GLUE_HUB_TEXT_COLUMNS[name], (frame["text_a"], frame["text_b"])))
            label = frame["label"] if task.kind == "regression" else frame["label"].astype("int64")
            table = pd.DataFrame({**columns, "label": label, "idx": range(len(frame))})
            buffer = io.BytesIO()
            table.to_parquet(buffer, index=False)
            files[f"{name}/{split}-00000-of-00001.parquet"] = buffer.getvalue()
    files["README.md"] = ("---\nconfigs:\n" + "".join(configs) + "---\n# GLUE\n").encode()
    return files


def load_through_the_hub(files: dict[str, bytes], tmp_path: Path) -> tuple[dict, LocalHub]:
    with LocalHub() as hub:
        hub.state.repositories["datasets/nyu-mll/glue"] = Repository(files=files, commits=["a" * 40])
        for content in files.values():
            hub.state.lfs_objects[hashlib.sha256(content).hexdigest()] = content
        environment = {name: value for name, value in os.environ.items() if name != "HF_HUB_OFFLINE"}
        environment.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf_home"), HF_TOKEN=TOKEN, PYTHONPATH=str(REPO))
        (tmp_path / "empty").mkdir()
        completed = subprocess.run(
            [sys.executable, str(REPO / "tests" / "scripts" / "glue_from_hub.py"), str(tmp_path / "report.json"),
             str(tmp_path / "empty"), *TASKS],
            env=environment, capture_output=True, text=True, timeout=600,
        )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads((tmp_path / "report.json").read_text()), hub


def test_glue_tasks_come_from_the_hub_when_their_files_are_not_here(data_dir, tmp_path):
    report, hub = load_through_the_hub(hub_files(data_dir, TASKS), tmp_path)
    assert "error" not in report, report.get("error")
    local = load_glue(data_dir, tasks=TASKS)  # the same tasks from GLUE's TSV files
    for split in ("train", "validation", "test"):
        for column in ("text_a", "text_b", "label", "task_ids"):
            assert report[split][column] == list(local[split][column]), (split, column)
    assert hub.state.unhandled == []
    assert any(request.startswith("GET /lfs-files/") for request in hub.state.requests)  # parquet files, redirected


def test_a_hub_copy_that_differs_from_the_provenance_is_refused(data_dir, tmp_path):
    report, _ = load_through_the_hub(hub_files(data_dir, TASKS, drop_rows=1), tmp_path)
    rows = GLUE_SPLIT_CHECKS["cola"]["train"][0]
    assert report["error"].startswith("The CoLA files ['train.tsv', 'dev.tsv'] were not found (looked in: ")
    assert f"loading it from the Hub (nyu-mll/glue) failed: nyu-mll/glue (cola, train) has {rows - 1} rows" in report["error"]
    assert f"GLUE's train file has {rows} rows" in report["error"]


def test_offline_glue_says_where_to_put_the_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"The CoLA files .* and loading nyu-mll/glue from the Hub is off \(HF_HUB_OFFLINE\)"):
        load_glue(tmp_path, tasks=["cola"])
