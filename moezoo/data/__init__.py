"""Data set builders returning `datasets.DatasetDict` objects."""

from .census_income import (
    CENSUS_TASK_GROUPS,
    CENSUS_TASKS,
    census_feature_columns,
    census_task_columns,
    load_census_income,
    read_census_income_file,
)
from .multi_mnist import (
    BACKGROUND_CLASS,
    MULTI_MNIST_DENSE_TASKS,
    MULTI_MNIST_TASK_SPECS,
    MULTI_MNIST_TASKS,
    load_multi_mnist,
    overlay_pairs,
    pixel_labels,
    place_items,
    read_idx,
)
from .paths import DATA_DIR_ENV, default_data_dir
from .sources import CACHE_ENV, DataSource, SourceFile, cache_dir, locate_dataset
from .synthetic import ExpertSelectionProblem, make_expert_selection_problem

__all__ = [
    "BACKGROUND_CLASS",
    "CACHE_ENV",
    "CENSUS_TASKS",
    "CENSUS_TASK_GROUPS",
    "DATA_DIR_ENV",
    "DataSource",
    "ExpertSelectionProblem",
    "SourceFile",
    "cache_dir",
    "MULTI_MNIST_DENSE_TASKS",
    "MULTI_MNIST_TASK_SPECS",
    "MULTI_MNIST_TASKS",
    "census_feature_columns",
    "census_task_columns",
    "default_data_dir",
    "load_census_income",
    "locate_dataset",
    "load_multi_mnist",
    "make_expert_selection_problem",
    "overlay_pairs",
    "pixel_labels",
    "place_items",
    "read_census_income_file",
    "read_idx",
]
