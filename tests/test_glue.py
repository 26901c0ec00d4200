"""The GLUE loader reads GLUE's own TSV files into one mixed dataset with task ids."""

import pytest

from moezoo.data.glue import GLUE_METRICS, GLUE_TASKS, glue_task_specs, load_glue, read_glue_file
from moezoo.tasks import TaskSpec
from moezoo.training.metrics import KIND_METRICS


def test_the_five_tasks_load_with_glues_split_sizes_and_labels(data_dir):
    splits = load_glue(data_dir, validation_fraction=0.1, seed=0)
    sizes = {split: {} for split in splits}
    for split, dataset in splits.items():
        for task in dataset["task"]:
            sizes[split][task] = sizes[split].get(task, 0) + 1
    # GLUE's official sizes: the dev files are the test split, train = train + validation.
    assert sizes["test"] == {"cola": 1043, "sst2": 872, "mrpc": 408, "rte": 277, "stsb": 1500}
    assert {task: sizes["train"][task] + sizes["validation"][task] for task in GLUE_TASKS} == {
        "cola": 8551, "sst2": 67349, "mrpc": 3668, "rte": 2490, "stsb": 5749
    }
    test = splits["test"]
    first_rte = test["task"].index("rte")
    assert test[first_rte]["task_ids"] == 3 and test[first_rte]["text_b"]
    assert set(test.filter(lambda row: row["task"] == "rte")["label"]) == {0.0, 1.0}  # entailment 0, not 1
    stsb = test.filter(lambda row: row["task"] == "stsb")["label"]
    assert min(stsb) == 0.0 and max(stsb) == 5.0
    assert test.filter(lambda row: row["task"] == "sst2")["text_b"][0] == ""
    specs = [TaskSpec.from_dict(spec) for spec in glue_task_specs()]
    assert [spec.kind for spec in specs] == ["multiclass"] * 4 + ["regression"]
    assert {spec.name: GLUE_METRICS[spec.name] in (*KIND_METRICS[spec.kind], *spec.metrics) for spec in specs} == dict.fromkeys(GLUE_TASKS, True)


def test_mistakes_are_named(tmp_path, data_dir):
    with pytest.raises(ValueError, match=r"tasks must be distinct names from .*got \['sst'\]"):
        load_glue(data_dir, tasks=["sst"])
    with pytest.raises(FileNotFoundError, match="The CoLA files"):
        load_glue(tmp_path, tasks=["cola"])
    bad = tmp_path / "dev.tsv"
    bad.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    with pytest.raises(ValueError, match=r"has labels \['maybe'\]"):
        read_glue_file(bad, GLUE_TASKS["rte"])
