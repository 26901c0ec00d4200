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
