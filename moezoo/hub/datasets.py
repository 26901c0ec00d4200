"""What model cards say about the data sets moezoo's recipes train on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .cards import DatasetDescription

MULTI_MNIST_DESCRIPTION = (
    "36x36 canvases of two overlapping 28x28 items, top-left and bottom-right (moezoo.data.load_multi_mnist): "
    "50,000 training and 10,000 validation canvases from the training images, 10,000 test canvases from the test "
    "images. Tasks: the class of each item."
)

#: By the ``dataset`` setting of the recipe that trained a model.
RECIPE_DATASETS = {
    "census_income": DatasetDescription(
        name="Census-Income (KDD)",
        slug="census-income-kdd",
        task_type="tabular-classification",
        description=(
            "UCI's Census-Income (KDD) survey extract on the MMoE paper's protocol: 199,523 training rows; the "
            "99,762 test rows split 1:1 into validation and test with a fixed seed. Tasks: income above 50K, "
            "never married, college degree; the columns they are read from are not inputs."
        ),
        license="cc-by-4.0",
    ),
    "mnist": DatasetDescription(
        name="MultiMNIST", slug="multi-mnist", task_type="image-classification", description=MULTI_MNIST_DESCRIPTION,
        license="cc-by-sa-3.0", modality="image",
    ),
    "fashion-mnist": DatasetDescription(
        name="MultiFashion-MNIST", slug="multi-fashion-mnist", task_type="image-classification",
        description=MULTI_MNIST_DESCRIPTION, license="mit", modality="image",
    ),
}


def describe_dataset(arguments: Mapping[str, Any]) -> DatasetDescription:
    """The description of the data set named by a run's settings (``results.json``'s ``arguments``)."""
    name = arguments.get("dataset")
    if name not in RECIPE_DATASETS:
        raise ValueError(f"The run's settings name data set {name!r}; cards know {sorted(RECIPE_DATASETS)}.")
    return RECIPE_DATASETS[name]
