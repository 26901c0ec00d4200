"""Loads GLUE tasks with no local copy, so from the Hub named by $HF_ENDPOINT, and writes what it read.

    HF_ENDPOINT=http://127.0.0.1:PORT python glue_from_hub.py REPORT.json EMPTY_DATA_DIR TASK...

The report holds each split's columns as lists, or the one-line error when loading failed.
"""

import json
import sys

from moezoo.data.glue import load_glue

if __name__ == "__main__":
    report_path, data_dir, *tasks = sys.argv[1:]
    try:
        splits = load_glue(data_dir, tasks=tasks)
        report = {name: {column: list(split[column]) for column in ("text_a", "text_b", "label", "task_ids")} for name, split in splits.items()}
    except FileNotFoundError as error:
        report = {"error": str(error)}
    with open(report_path, "w") as file:
        json.dump(report, file)
