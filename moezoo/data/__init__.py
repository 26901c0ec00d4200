"""Data set builders returning `datasets.DatasetDict` objects."""

from .census_income import (
    CENSUS_TASK_GROUPS,
    CENSUS_TASKS,
    census_feature_columns,
    census_task_columns,
    load_census_income,
    read_census_income_file,
)
from .paths import DATA_DIR_ENV, default_data_dir, resolve_dataset_dir
from .synthetic import ExpertSelectionProblem, make_expert_selection_problem

__all__ = [
    "CENSUS_TASKS",
    "CENSUS_TASK_GROUPS",
    "DATA_DIR_ENV",
    "ExpertSelectionProblem",
    "census_feature_columns",
    "census_task_columns",
    "default_data_dir",
    "load_census_income",
    "make_expert_selection_problem",
    "read_census_income_file",
    "resolve_dataset_dir",
]
