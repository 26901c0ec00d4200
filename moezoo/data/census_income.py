"""Census-Income (KDD), the benchmark of the MMoE paper, as a `datasets.DatasetDict`.

Protocol (Ma et al., KDD 2018): train on the 199,523 training rows; split the 99,762 test rows 1:1
into validation and test with a fixed seed. Tasks (binary):

- ``income``: income above 50K;
- ``marital``: marital status "Never married";
- ``education``: a college degree (associate's or higher).

Group 1 is (income, marital); group 2 is (education, marital). The columns a selected task is read
from are removed from the inputs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from datasets import Dataset, DatasetDict

from .sources import DataSource, SourceFile, locate_dataset

CENSUS_FILES = {"train": "census-income.data.gz", "test": "census-income.test.gz"}
_KERAS_MMOE = "https://raw.githubusercontent.com/drawbridge/keras-mmoe/5532ffb3ed6bccf4a0eae9d189fa0d661357425f/data"
#: The files and their checksums as ../shared/data/census-income/PROVENANCE.md records them. The training
#: file there was gzipped anew, so a download is also accepted by its text (the CSV every copy shares).
CENSUS_SOURCE = DataSource(
    folder="census-income",
    files=(
        SourceFile(
            CENSUS_FILES["train"], "d8fb4a6fe0add3e49462c17d2ed260a487b28ec720752024aeb8b54eada29a68",
            (f"{_KERAS_MMOE}/{CENSUS_FILES['train']}",),
            text_sha256="3676a81db7d3528f3f8b9f3c699d0f0aa28db45e6e994fa0b8ed38327539ee86",
        ),
        SourceFile(
            CENSUS_FILES["test"], "5ac4cacd3ca9f1ecb10de1a0a41e4ac68fdc419e3fec190f5c0c6cc03b2ea659",
            (f"{_KERAS_MMOE}/{CENSUS_FILES['test']}",),
            text_sha256="98402b1ab879573d0a7f38a699a40258080e25e33d3401e7bf9c96d3fa0fab8c",
        ),
    ),
    homepage="https://archive.ics.uci.edu/dataset/117/census+income+kdd",
)

CENSUS_COLUMNS = [
    "age", "class_worker", "det_ind_code", "det_occ_code", "education", "wage_per_hour", "hs_college",
    "marital_stat", "major_ind_code", "major_occ_code", "race", "hisp_origin", "sex", "union_member",
    "unemp_reason", "full_or_part_emp", "capital_gains", "capital_losses", "stock_dividends", "tax_filer_stat",
    "region_prev_res", "state_prev_res", "det_hh_fam_stat", "det_hh_summ", "instance_weight", "mig_chg_msa",
    "mig_chg_reg", "mig_move_reg", "mig_same", "mig_prev_sunbelt", "num_emp", "fam_under_18", "country_father",
    "country_mother", "country_self", "citizenship", "own_or_self", "vet_question", "vet_benefits",
    "weeks_worked", "year", "income_50k",
]
# Continuous columns. The coded columns (industry / occupation codes, year, ...) are categorical.
CENSUS_NUMERIC_FEATURES = [
    "age", "wage_per_hour", "capital_gains", "capital_losses", "stock_dividends", "num_emp", "weeks_worked",
]
# UCI's documentation says the survey's sampling weight "should not be used in the classifiers".
CENSUS_DROPPED_COLUMNS = ["instance_weight"]

COLLEGE_DEGREES = (
    "Associates degree-academic program",
    "Associates degree-occup /vocational",
    "Bachelors degree(BA AB BS)",
    "Masters degree(MA MS MEng MEd MSW MBA)",
    "Prof school degree (MD DDS DVM LLB JD)",
    "Doctorate degree(PhD EdD)",
)
# task name -> (source column, function of that column giving the 0/1 label)
CENSUS_TASKS = {
    "income": ("income_50k", lambda column: column == "50000+."),
    "marital": ("marital_stat", lambda column: column == "Never married"),
    "education": ("education", lambda column: column.isin(COLLEGE_DEGREES)),
}
CENSUS_TASK_GROUPS = {1: ("income", "marital"), 2: ("education", "marital")}


def read_census_income_file(path: str | os.PathLike) -> pd.DataFrame:
    """Read one raw Census-Income file (no header, ``", "``-separated, ``?`` kept as a category)."""
    frame = pd.read_csv(
        path, header=None, names=CENSUS_COLUMNS, skipinitialspace=True, dtype=str, keep_default_na=False
    )
    if frame.shape[1] != len(CENSUS_COLUMNS) or frame["income_50k"].isna().any():
        raise ValueError(f"{path} does not look like a Census-Income file: expected {len(CENSUS_COLUMNS)} columns.")
    for name in CENSUS_NUMERIC_FEATURES:
        frame[name] = pd.to_numeric(frame[name])
    return frame


def census_task_columns(tasks: Sequence[str] | int) -> list[str]:
    """Resolve a task group number or task names to a list of task names."""
    names = list(CENSUS_TASK_GROUPS[tasks]) if isinstance(tasks, int) and tasks in CENSUS_TASK_GROUPS else tasks
    if isinstance(names, int) or not names:
        raise ValueError(f"tasks must be a group number {sorted(CENSUS_TASK_GROUPS)} or task names {list(CENSUS_TASKS)}.")
    unknown = [name for name in names if name not in CENSUS_TASKS]
    if unknown:
        raise KeyError(f"Unknown Census-Income task(s) {unknown}; available: {list(CENSUS_TASKS)}.")
    return list(names)


def census_feature_columns(tasks: Sequence[str] | int = 1, withheld_tasks: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """The (numeric, categorical) input columns left once the source columns of the selected tasks, and of
    ``withheld_tasks`` (tasks not learnt whose columns stay out of the inputs all the same), are removed."""
    names = census_task_columns(tasks) + (census_task_columns(list(withheld_tasks)) if withheld_tasks else [])
    removed = {CENSUS_TASKS[name][0] for name in names} | set(CENSUS_DROPPED_COLUMNS)
    numeric = [name for name in CENSUS_NUMERIC_FEATURES if name not in removed]
    categorical = [name for name in CENSUS_COLUMNS if name not in removed and name not in CENSUS_NUMERIC_FEATURES]
    return numeric, categorical


def load_census_income(
    data_dir: str | os.PathLike | None = None,
    tasks: Sequence[str] | int = 1,
    seed: int = 0,
    withheld_tasks: Sequence[str] = (),
) -> DatasetDict:
    """Census-Income on the MMoE paper's protocol.

    Args:
        data_dir: Folder holding ``census-income/`` (default: ``../shared/data`` when present; without a local
            copy the files are downloaded and checked, see `moezoo.data.sources`).
        tasks: Task group 1 or 2, or task names from ``income``, ``marital``, ``education``.
        seed: Seed of the 1:1 validation / test split of the test rows.
        withheld_tasks: Tasks not learnt whose source columns are kept out of the inputs all the same: a
            single-task baseline of a multi-task run reads the multi-task run's inputs.

    Returns:
        ``train`` / ``validation`` / ``test`` splits with the raw input columns (numeric as floats,
        categorical as strings) and one 0/1 integer column per task.
    """
    task_names = census_task_columns(tasks)
    folder = locate_dataset(CENSUS_SOURCE, data_dir)
    numeric, categorical = census_feature_columns(task_names, withheld_tasks)

    def prepare(frame: pd.DataFrame) -> pd.DataFrame:
        labels = {name: CENSUS_TASKS[name][1](frame[CENSUS_TASKS[name][0]]).astype(np.int64) for name in task_names}
        return pd.concat([frame[numeric + categorical].reset_index(drop=True), pd.DataFrame(labels).reset_index(drop=True)], axis=1)

    train = prepare(read_census_income_file(folder / CENSUS_FILES["train"]))
    held_out = prepare(read_census_income_file(folder / CENSUS_FILES["test"]))
    order = np.random.default_rng(seed).permutation(len(held_out))
    half = len(held_out) // 2
    return DatasetDict(
        train=Dataset.from_pandas(train, preserve_index=False),
        validation=Dataset.from_pandas(held_out.iloc[order[:half]], preserve_index=False),
        test=Dataset.from_pandas(held_out.iloc[order[half:]], preserve_index=False),
    )
