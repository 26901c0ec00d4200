import pytest

from moezoo.data import census_feature_columns, load_census_income, locate_dataset
from moezoo.data.census_income import CENSUS_SOURCE


@pytest.fixture(scope="module")
def census(data_dir):
    return load_census_income(data_dir, tasks=1, seed=0)


def test_paper_protocol_split_sizes_and_labels(census):
    assert {split: len(census[split]) for split in census} == {"train": 199_523, "validation": 49_881, "test": 49_881}
    # Counts from PROVENANCE.md: 12,382 training rows above 50K, 6,186 in the held-out file.
    assert sum(census["train"]["income"]) == 12_382
    assert sum(census["validation"]["income"]) + sum(census["test"]["income"]) == 6_186
    assert set(census["train"]["marital"]) == {0, 1}


def test_label_sources_are_removed_from_the_inputs(census):
    columns = census["train"].column_names
    assert "income_50k" not in columns and "marital_stat" not in columns and "instance_weight" not in columns
    assert "education" in columns  # an input in group 1, a label in group 2
    numeric, categorical = census_feature_columns(2)
    assert "education" not in categorical and "marital_stat" not in categorical and "income_50k" in categorical


def test_a_single_task_run_can_withhold_the_other_tasks_columns(data_dir, census):
    assert census_feature_columns(["income"], withheld_tasks=["marital"]) == census_feature_columns(1)
    assert "marital_stat" in census_feature_columns(["income"])[1]  # an input when only income is learnt
    alone = load_census_income(data_dir, tasks=["income"], withheld_tasks=["marital"])
    assert alone["test"].column_names == [name for name in census["test"].column_names if name != "marital"]
    assert alone["test"]["income"][:500] == census["test"]["income"][:500]
    with pytest.raises(KeyError, match=r"Unknown Census-Income task\(s\) \['wealth'\]"):
        census_feature_columns(["income"], withheld_tasks=["wealth"])


def test_split_is_deterministic_and_seeded(data_dir, census):
    again = load_census_income(data_dir, tasks=1, seed=0)
    assert again["validation"]["age"][:100] == census["validation"]["age"][:100]
    other = load_census_income(data_dir, tasks=1, seed=1)
    assert other["validation"]["age"][:100] != census["validation"]["age"][:100]


def test_missing_files_say_where_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"archive\.ics\.uci\.edu.*data_dir=.*MOEZOO_DATA_DIR"):
        load_census_income(tmp_path)


def test_unknown_task_is_named(data_dir):
    with pytest.raises(KeyError, match="Unknown Census-Income task"):
        load_census_income(data_dir, tasks=["income", "wealth"])


def test_resolve_accepts_the_dataset_folder_itself(data_dir):
    folder = locate_dataset(CENSUS_SOURCE, data_dir / "census-income", download=False)
    assert folder == data_dir / "census-income"
