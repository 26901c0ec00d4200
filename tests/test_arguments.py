"""Recipe arguments: every flag is checked before any work, and the YAML's model_config is overridden
field by field."""

import json
import sys
from pathlib import Path

import pytest

import moezoo
from moezoo.training import ModelArguments, TrainingConfig, parse_config_and_args

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "recipes" / "configs"
sys.path.insert(0, str(REPO / "recipes"))
from train_tabular import DataArguments  # noqa: E402
from train_tabular import main as train_tabular  # noqa: E402

DATACLASSES = (DataArguments, ModelArguments, TrainingConfig)


def test_model_config_flag_overrides_the_yaml_field_by_field():
    _, model_args, _ = parse_config_and_args(
        DATACLASSES, [str(CONFIGS / "census_income_home.yaml"), "--model_config", '{"num_global_experts": 3}']
    )
    overrides = model_args.config_overrides()
    assert overrides["num_global_experts"] == 3
    # The YAML's other fields, the task groups among them, are kept.
    assert overrides["task_groups"] == {"socioeconomic": ["income", "education"], "household": ["marital"]}
    assert overrides["feature_gate_rank"] == 4
    _, model_args, _ = parse_config_and_args(
        DATACLASSES, [str(CONFIGS / "census_income_home.yaml"), '--model_config={"feature_gate_rank": null}']
    )
    assert model_args.config_overrides()["feature_gate_rank"] is None
    assert "task_groups" in model_args.config_overrides()


def test_task_weights_set_the_named_tasks_loss_weights_and_refuse_unknown_tasks():
    from moezoo.training import build_model

    _, model_args, _ = parse_config_and_args(
        DATACLASSES, [str(CONFIGS / "census_income_mmoe.yaml"), "--task_weights", '{"marital": 0.25}']
    )
    tasks = [{"name": "income", "kind": "binary"}, {"name": "marital", "kind": "binary"}]
    model = build_model(model_args, tasks, input_size=4)
    assert [task.weight for task in model.task_specs] == [1.0, 0.25]
    assert tasks[1] == {"name": "marital", "kind": "binary"}  # the recipe's specs are not changed in place
    _, model_args, _ = parse_config_and_args(
        DATACLASSES, [str(CONFIGS / "census_income_mmoe.yaml"), "--task_weights", '{"marriage": 2}']
    )
    with pytest.raises(ValueError, match=r"task_weights names task\(s\) \['marriage'\] this run does not train \(did you mean 'marital'"):
        build_model(model_args, tasks, input_size=4)


def test_fields_of_another_architecture_are_an_error():
    _, model_args, _ = parse_config_and_args(DATACLASSES, [str(CONFIGS / "census_income_mmoe.yaml"), "--model_name", "home"])
    with pytest.raises(ValueError, match=r"HoMEConfig \('home'\) has no field 'num_shared_experts' \(did you mean .*\) \(a field of .*mmoe"):
        moezoo.create_model(model_args.model_name, **model_args.config_overrides())


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--num_train_epochs", "0"], "num_train_epochs must be at least 1, got 0"),
        (["--eval_every_epochs", "0"], "eval_every_epochs must be at least 1, got 0"),
        (["--max_train_samples", "0"], "max_train_samples must be at least 1, got 0"),
        (["--max_eval_samples", "0"], "max_eval_samples must be at least 1, got 0"),
        (["--per_device_train_batch_size", "0"], "per_device_train_batch_size must be at least 1"),
        (["--learning_rate", "-1"], "learning_rate must be positive"),
        (["--warmup_ratio", "1.5"], r"warmup_ratio must be in \[0, 1\)"),
        (["--lr_scheduler_type", "cosin"], "Unknown lr_scheduler_type 'cosin' \\(did you mean 'cosine'"),
        (["--checkpointing_steps", "often"], "checkpointing_steps must be a positive number of steps or 'epoch'"),
        (["--model_name", "hom"], "Unknown model_name 'hom' \\(did you mean 'home'"),
        (["--model_config", "{bad"], "model_config is not valid JSON"),
        (["--model_config", "[1]"], "model_config must be a JSON object"),
        (["--task_weights", '{"income": -1}'], "task_weights: the weight of 'income' must be a finite number >= 0, got -1"),
        (["--task_weights", '{"income": "2"}'], "task_weights: the weight of 'income' must be a finite number >= 0, got '2'"),
        (["--tasks", "income", "marriage"], r"Unknown Census-Income task\(s\) \['marriage'\]"),
        # Abbreviations are refused: a misspelt flag must not silently become another.
        (["--num_train_epoch", "3"], "Unknown argument\\(s\\) '--num_train_epoch' \\(did you mean '--num_train_epochs'"),
    ],
)
def test_bad_flags_are_named_before_any_work(flags, message, tmp_path):
    with pytest.raises((ValueError, KeyError), match=message):
        train_tabular([str(CONFIGS / "census_income_mmoe.yaml"), "--output_dir", str(tmp_path / "run"), *flags])
    assert not (tmp_path / "run").exists()


def test_an_output_dir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="is a file"):
        train_tabular([str(CONFIGS / "census_income_mmoe.yaml"), "--output_dir", str(path)])
    assert path.read_text() == "not a folder"


def test_an_unknown_metric_for_best_model_is_named_before_training(tmp_path, data_dir):
    with pytest.raises(ValueError, match=r"'mean_acu' is not a metric of this model \(did you mean 'mean_auc'"):
        train_tabular([
            str(CONFIGS / "census_income_mmoe.yaml"), "--output_dir", str(tmp_path / "run"), "--data_dir", str(data_dir),
            "--max_train_samples", "1000", "--metric_for_best_model", "mean_acu",
        ])
    assert not (tmp_path / "run" / "results.json").exists()


def test_an_output_dir_holding_a_run_needs_overwrite_or_resume(tmp_path, data_dir):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"completed": True, "test": {"income/auc": 0.9}}))
    (run / "notes.txt").write_text("mine")
    args = [
        str(CONFIGS / "census_income_mmoe.yaml"), "--output_dir", str(run), "--data_dir", str(data_dir),
        "--max_train_samples", "2000", "--max_eval_samples", "1000", "--num_train_epochs", "1",
    ]
    with pytest.raises(FileExistsError, match=r"already holds a run \(results.json\).*--overwrite_output_dir"):
        train_tabular(args)
    assert json.loads((run / "results.json").read_text())["test"] == {"income/auc": 0.9}
    train_tabular([*args, "--overwrite_output_dir"])
    assert json.loads((run / "results.json").read_text())["completed"] is True
    assert (run / "notes.txt").read_text() == "mine"  # only the run's own files are replaced
    assert not (run / ".previous_run").exists()  # the replaced run went once the new one saved its best model


@pytest.mark.parametrize(
    "text, message",
    [
        ("tasks: [income, marital]\nseed: 1\nseed: 2\n", r"key 'seed' is given twice \(lines 2 and 3\)"),
        ("tasks: [income, marital]\n\tseed: 1\n", r"is not valid YAML: line 2, column 1: .*found character '\\t'"),
        ("tasks: [1, 2\nseed: 1\n", r"is not valid YAML: line 2, column 5: while parsing a flow sequence expected ',' or ']'"),
        ("- seed\n", r"must hold a mapping of argument names to values, not a list"),
        ("tasks: income\n", r"tasks in .* must be a list \(tasks: \[income\]\), got 'income'"),
        ("seed: [1, 2]\n", r"seed in .* must be a single value, got \[1, 2\]"),
        ("dataset: census\n", r"argument --dataset: invalid choice: 'census' \(choose from 'census_income'\) \(set in .*\.yaml\)"),
        ("learning_rate: fast\n", r"argument --learning_rate/--learning-rate: invalid float value: 'fast' \(set in .*\.yaml\)"),
    ],
)
def test_yaml_mistakes_are_one_line_errors_that_name_the_problem(tmp_path, text, message):
    config = tmp_path / "config.yaml"
    config.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        parse_config_and_args(DATACLASSES, [str(config)])
    assert "\n" not in str(error.value)


def test_yaml_values_are_parsed_as_their_flags_are_and_flags_win(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("tasks: [income]\nlearning_rate: 1e-3\nmax_eval_samples: null\ndataloader_drop_last: true\n")
    data_args, _, training = parse_config_and_args(DATACLASSES, [str(config), "--tasks", "marital", "income"])
    assert data_args.tasks == ["marital", "income"] and training.learning_rate == 0.001  # YAML reads 1e-3 as text
    assert data_args.max_eval_samples is None and training.dataloader_drop_last is True
    with pytest.raises(ValueError, match=r"^argument --dataset: invalid choice: 'census' \(choose from 'census_income'\)\.$"):
        parse_config_and_args(DATACLASSES, [str(config), "--dataset", "census"])
    with pytest.raises(FileNotFoundError, match="Config file .*missing.yaml does not exist"):
        parse_config_and_args(DATACLASSES, [str(tmp_path / "missing.yaml")])
