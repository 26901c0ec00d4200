"""One registered description per data set, read by the recipes, `moezoo train`, the card writer, the zoo and
`moezoo evaluate`."""

import sys
from pathlib import Path

import pytest

from moezoo.training import DATASETS, get_dataset, run_split
from moezoo.training.datasets import dataset_names, describe_dataset
from moezoo.training.launch import launch_command
from moezoo.zoo import ZOO

REPO = Path(__file__).resolve().parents[1]


def test_every_zoo_entry_and_recipe_names_a_registered_data_set():
    assert {entry.dataset for entry in ZOO.values()} <= set(DATASETS)
    for name, entry in DATASETS.items():
        assert entry.recipes and all((REPO / "recipes" / script).is_file() for script in entry.recipes), name
        assert entry.sources and entry.tasks, name
        assert describe_dataset({"dataset": name}).name  # every one has its card description


def test_the_recipes_choices_and_launcher_come_from_the_registry(tmp_path):
    sys.path.insert(0, str(REPO / "recipes"))
    import dataclasses

    from train_image import DataArguments as ImageDataArguments
    from train_tabular import DataArguments as TabularDataArguments

    choices = {
        script: next(field.metadata["choices"] for field in dataclasses.fields(arguments) if field.name == "dataset")
        for script, arguments in (("train_image.py", ImageDataArguments), ("train_tabular.py", TabularDataArguments))
    }
    assert choices == {"train_image.py": ["mnist", "fashion-mnist"], "train_tabular.py": ["census_income"]}
    assert choices["train_image.py"] == dataset_names("train_image.py")
    config = tmp_path / "fashion.yaml"
    config.write_text("dataset: fashion-mnist\n")
    assert launch_command(str(config))[1] == str(REPO / "recipes" / DATASETS["fashion-mnist"].recipes[0])


def test_unknown_data_sets_and_splits_are_named():
    with pytest.raises(ValueError, match=r"Unknown data set 'fashion_mnist' \(did you mean 'fashion-mnist'"):
        get_dataset("fashion_mnist")
    with pytest.raises(ValueError, match=r"Unknown data set 'cifar'.*moezoo's recipes train on \['census_income'"):
        run_split({"dataset": "cifar"}, REPO, "test")
    with pytest.raises(ValueError, match=r"Unknown split 'dev'"):
        run_split({"dataset": "glue"}, REPO, "dev")
    assert get_dataset("glue").hub_id == "nyu-mll/glue"


def test_a_multi_mnist_description_states_the_runs_own_splits_and_tasks():
    m3vit_run = {"dataset": "mnist", "validation_size": 5000, "max_train_samples": None,
                 "tasks": ["top_left", "bottom_right", "pixel_class", "pixel_item"]}
    text = describe_dataset(m3vit_run).description
    assert "55,000 training and 5,000 validation canvases" in text
    assert "`pixel_item`, per pixel, which item covers it" in text
    subset = describe_dataset({"dataset": "fashion-mnist", "max_train_samples": 10000, "tasks": ["top_left"]})
    assert subset.name == "MultiFashion-MNIST" and subset.license == "mit"
    assert "a random 10,000 training and 10,000 validation canvases" in subset.description
    assert "Tasks: `top_left`, the class of the top-left item." in subset.description
