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

__all__ = [
    "CENSUS_TASKS",
    "CENSUS_TASK_GROUPS",
    "DATA_DIR_ENV",
    "census_feature_columns",
    "census_task_columns",
    "default_data_dir",
    "load_census_income",
    "read_census_income_file",
    "resolve_dataset_dir",
]
