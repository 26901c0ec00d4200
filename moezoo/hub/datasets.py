"""What model cards say about the data sets moezoo's recipes train on (the registry,
`moezoo.training.datasets`, names each data set's description)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..data.glue import GLUE_TASKS
from .cards import DatasetDescription

#: What each MultiMNIST task asks, in a card's words.
_MULTI_MNIST_TASK_WORDS = {
    "top_left": "the class of the top-left item",
    "bottom_right": "the class of the bottom-right item",
    "pixel_class": "per pixel, the class of the item under it (background included)",
    "pixel_item": "per pixel, which item covers it (background, top-left, bottom-right)",
}
#: The training images: 60,000 in either data set; the test canvases come from the 10,000 test images.
_MULTI_MNIST_TRAINING_IMAGES = 60_000


def _multi_mnist_splits(arguments: Mapping[str, Any]) -> str:
    """How a MultiMNIST run's splits were made, from its settings (a recipe's defaults where unset)."""
    held_out = arguments.get("validation_size") or 10_000
    subset = arguments.get("max_train_samples")
    training = f"a random {subset:,}" if subset else f"{_MULTI_MNIST_TRAINING_IMAGES - held_out:,}"
    tasks = arguments.get("tasks") or ["top_left", "bottom_right"]
    return (
        "36x36 canvases of two overlapping 28x28 items, top-left and bottom-right (moezoo.data.load_multi_mnist): "
        f"{training} training and {held_out:,} validation canvases from the training images, 10,000 test canvases "
        "from the test images. Tasks: " + "; ".join(f"`{task}`, {_MULTI_MNIST_TASK_WORDS.get(task, task)}" for task in tasks)
        + "."
    )


CENSUS_INCOME_DESCRIPTION = DatasetDescription(
    name="Census-Income (KDD)",
    slug="census-income-kdd",
    task_type="tabular-classification",
    description=(
        "UCI's Census-Income (KDD) survey extract on the MMoE paper's protocol: 199,523 training rows; the "
        "99,762 test rows split 1:1 into validation and test with a fixed seed. Tasks: income above 50K, "
        "never married, college degree; the columns they are read from are not inputs."
    ),
    license="cc-by-4.0",
    provenance=(
        "the UCI Machine Learning Repository's census-income.data and census-income.test (1994-95 Current Population "
        "Survey extracts), read from byte-checked copies (moezoo.data.census_income lists their SHA-256 and download "
        "addresses)."
    ),
)
def describe_multi_mnist(arguments: Mapping[str, Any], dataset: str = "mnist") -> DatasetDescription:
    """MultiMNIST (``dataset="mnist"``) or MultiFashion-MNIST (``"fashion-mnist"``) as a run read it (its
    splits and tasks, from its settings)."""
    if dataset == "mnist":
        return DatasetDescription(
            name="MultiMNIST", slug="multi-mnist", task_type="image-classification",
            description=_multi_mnist_splits(arguments), license="cc-by-sa-3.0", modality="image",
            provenance=(
                "canvases built by moezoo.data.load_multi_mnist from the four official MNIST IDX files (LeCun, Cortes "
                "and Burges), byte-identical to the originals (their MD5s equal the official checksums)."
            ),
            source_hub_ids=("ylecun/mnist",),
        )
    if dataset == "fashion-mnist":
        return DatasetDescription(
            name="MultiFashion-MNIST", slug="multi-fashion-mnist", task_type="image-classification",
            description=_multi_mnist_splits(arguments), license="mit", modality="image",
            provenance=(
                "canvases built by moezoo.data.load_multi_mnist from the four official Fashion-MNIST IDX files (Xiao, "
                "Rasul and Vollgraf, Zalando Research), byte-identical to the originals."
            ),
            source_hub_ids=("zalando-datasets/fashion_mnist",),
        )
    raise ValueError(f"describe_multi_mnist takes dataset 'mnist' or 'fashion-mnist', got {dataset!r}.")


#: The descriptions at the recipes' defaults (two item tasks, 50,000 training canvases).
MULTI_MNIST_DESCRIPTION = describe_multi_mnist({})
MULTI_FASHION_MNIST_DESCRIPTION = describe_multi_mnist({}, "fashion-mnist")


def describe_glue(arguments: Mapping[str, Any]) -> DatasetDescription:
    """GLUE as a GLUE recipe run read it (its tasks and subset sizes, from its settings)."""
    tasks = arguments.get("tasks") or list(GLUE_TASKS)
    per_task = arguments.get("max_train_samples_per_task")
    validation = arguments.get("max_validation_samples_per_task")
    fraction = arguments.get("validation_fraction", 0.1)
    return DatasetDescription(
        name="GLUE", slug="glue", task_type="text-classification", hub_id="nyu-mll/glue",
        description=(
            f"Tasks {', '.join(GLUE_TASKS[name].folder for name in tasks)} as one mixed multi-task dataset "
            f"(moezoo.data.load_glue; GLUE's own TSV files): {fraction:.0%} of each task's training file held out for "
            "validation"
            + (f" (the first {validation:,} per task used)" if validation else "")
            + ", training on "
            + (f"a random {per_task:,} examples per task of the rest" if per_task else "the rest")
            + f", examples cut at {arguments.get('max_seq_length', 128)} tokens; the test split is GLUE's dev set, whole. "
            "Each task is scored by GLUE's metric: Matthews correlation (CoLA), F1 (MRPC), Pearson correlation (STS-B), "
            "accuracy (SST-2, RTE)."
        ),
        # The tasks keep their sources' licences, most for research use only (nyu-mll/glue's card lists them).
        license="other", license_link="https://huggingface.co/datasets/nyu-mll/glue", modality="text", language="en",
        provenance=(
            "the train.tsv and dev.tsv files GLUE's download_glue_data.py writes, byte-checked (moezoo.data.glue lists "
            "their SHA-256); without them the tasks load from nyu-mll/glue on the Hub, checked against their rows and "
            "label sums. The tasks keep their sources' licences, most for research use only."
        ),
        # GLUE's test labels are hidden: its dev set, the Hub repository's "validation" split, is the one reported.
        test_split="validation",
        test_split_description=(
            "GLUE's dev set, whole: the validation split of nyu-mll/glue on the Hub (GLUE's test labels are not public)."
        ),
    )
