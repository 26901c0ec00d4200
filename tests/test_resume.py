"""Resumable runs: a training process killed with SIGKILL mid-epoch and resumed ends exactly where an
uninterrupted run does."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

from moezoo.training import list_checkpoints

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "recipes" / "configs" / "census_income_mmoe.yaml"


def recipe_args(output_dir, data_dir, *extra):
    # 4,000 rows in batches of 256: 16 steps per epoch (the last one of 160 rows), 3 epochs. Dropout in
    # the towers makes the result depend on the restored random state too.
    return [
        str(CONFIG), "--output_dir", str(output_dir), "--data_dir", str(data_dir), "--max_train_samples", "4000",
        "--max_eval_samples", "2000", "--num_train_epochs", "3", "--per_device_train_batch_size", "256",
        "--checkpointing_steps", "10", "--model_config", '{"tower_dropout": 0.2}', *extra,
    ]


def run(script, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, str(script), *map(str, args)], env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_run_killed_mid_epoch_resumes_to_the_same_parameters(tmp_path, data_dir):
    # With FAMO, which carries state of its own (task logits, their Adam moments) beside the model's and reads
    # a second forward pass each step; the default equal weighting is FAMO's path without that state.
    balancing = ["--loss_balancing", "famo"]
    recipe = REPO / "recipes" / "train_tabular.py"
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    completed = run(recipe, *recipe_args(reference, data_dir, *balancing))
    assert completed.returncode == 0, completed.stderr[-3000:]

    # Killed at step 25: mid-way through epoch 2, five steps after the checkpoint of step 20.
    killed = run(REPO / "tests" / "scripts" / "killed_recipe.py", 25, *recipe_args(interrupted, data_dir, *balancing))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert [path.name for path in list_checkpoints(interrupted)] == ["step_00000010", "step_00000020"]
    assert json.loads((interrupted / "results.json").read_text())["completed"] is False
    assert [record["epoch"] for record in json.loads((interrupted / "training_history.json").read_text())] == [1]

    # Starting again without saying what to do with the folder is refused, and changes nothing.
    refused = run(recipe, *recipe_args(interrupted, data_dir, *balancing))
    assert refused.returncode != 0 and "--resume_from_checkpoint latest" in refused.stderr
    assert [path.name for path in list_checkpoints(interrupted)] == ["step_00000010", "step_00000020"]

    resumed = run(recipe, *recipe_args(interrupted, data_dir, *balancing, "--resume_from_checkpoint", "latest"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stdout + resumed.stderr

    # The final state (saved at the last step, 48) is bitwise the uninterrupted run's.
    final_reference = load_file(reference / "checkpoints" / "step_00000048" / "model.safetensors")
    final_resumed = load_file(interrupted / "checkpoints" / "step_00000048" / "model.safetensors")
    assert final_reference.keys() == final_resumed.keys()
    for name in final_reference:
        assert torch.equal(final_reference[name], final_resumed[name]), name

    history = json.loads((interrupted / "training_history.json").read_text())
    assert [record["epoch"] for record in history] == [1, 2, 3]
    # The weights moved, and the resumed epoch reports them over the whole epoch.
    assert history[1]["train/task_weight/income"] != history[1]["train/task_weight/marital"]
    assert history == json.loads((reference / "training_history.json").read_text())
    results = json.loads((interrupted / "results.json").read_text())
    assert results["completed"] is True
    assert results["test"] == json.loads((reference / "results.json").read_text())["test"]
    best = AutoModel.from_pretrained(interrupted / "best")
    assert best.config.tower_dropout == 0.2


def short_run_args(output_dir, data_dir, *extra):
    # 1,000 rows in batches of 256: 4 steps, one epoch, checkpoints at steps 2 and 4 (the last one saved
    # before the epoch's evaluation).
    return [
        str(CONFIG), "--output_dir", str(output_dir), "--data_dir", str(data_dir), "--max_train_samples", "1000",
        "--max_eval_samples", "500", "--num_train_epochs", "1", "--per_device_train_batch_size", "256",
        "--checkpointing_steps", "2", *extra,
    ]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir):
    sys.path.insert(0, str(REPO / "recipes"))
    from train_tabular import main

    folder = tmp_path_factory.mktemp("finished") / "run"
    main(short_run_args(folder, data_dir))
    return folder


def resume(folder, data_dir, *extra):
    from train_tabular import main

    main(short_run_args(folder, data_dir, "--resume_from_checkpoint", "latest", *extra))


def test_a_resume_that_changes_the_result_is_refused_naming_each_difference(finished_run, data_dir, tmp_path):
    folder = shutil.copytree(finished_run, tmp_path / "run")
    checkpoint = folder / "checkpoints" / "step_00000004"
    changes = ["--seed", "7", "--learning_rate", "0.01", "--per_device_eval_batch_size", "100",
               "--max_train_samples", "900", "--model_config", '{"num_shared_experts": 4}']
    with pytest.raises(ValueError) as error:
        resume(folder, data_dir, *changes)
    message = str(error.value)
    assert message.startswith(f"Cannot resume from {checkpoint}: this run's settings differ")
    for difference in ("seed: checkpoint 42, this run 7", "learning_rate: checkpoint 0.001, this run 0.01",
                       "per_device_eval_batch_size: checkpoint 8192, this run 100",
                       "max_train_samples: checkpoint 1000, this run 900", "model.num_shared_experts: checkpoint 8, this run 4"):
        assert difference in message, difference
    with pytest.raises(ValueError) as error:  # another architecture
        resume(folder, data_dir, "--model_name", "omoe")
    assert "model_name: checkpoint 'mmoe', this run 'omoe'" in str(error.value)
    assert "model.model_type: checkpoint 'mmoe', this run 'omoe'" in str(error.value)
    assert sorted(path.name for path in (folder / "checkpoints").iterdir()) == ["step_00000002", "step_00000004"]


@pytest.mark.parametrize("damaged", ["model.safetensors", "optimizer.bin"])
def test_a_damaged_checkpoint_file_is_named_with_its_path_and_cause(finished_run, data_dir, tmp_path, damaged):
    folder = shutil.copytree(finished_run, tmp_path / "run")
    path = folder / "checkpoints" / "step_00000004" / damaged
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # cut in half, as a full disk leaves it
    with pytest.raises(OSError, match=rf"The checkpoint .*step_00000004 is damaged: {re.escape(str(path))} \("):
        resume(folder, data_dir)


def test_resuming_a_finished_run_ends_where_it_ended(finished_run, data_dir, tmp_path):
    folder = shutil.copytree(finished_run, tmp_path / "run")
    resume(folder, data_dir)  # the last checkpoint was saved before the epoch's evaluation: that evaluation runs
    again = json.loads((folder / "results.json").read_text())
    first = json.loads((finished_run / "results.json").read_text())
    assert again["completed"] is True and again["test"] == first["test"] and again["best_epoch"] == 1
    assert json.loads((folder / "training_history.json").read_text()) == json.loads(
        (finished_run / "training_history.json").read_text()
    )


def test_overwrite_keeps_the_earlier_run_until_the_new_one_has_saved(finished_run, tmp_path, capsys):
    from moezoo.training.checkpoints import PREVIOUS_RUN_DIR, discard_replaced_run, prepare_output_dir

    folder = shutil.copytree(finished_run, tmp_path / "run")
    earlier = (folder / "results.json").read_text()
    prepare_output_dir(folder, overwrite=True, resuming=False)
    assert not (folder / "results.json").exists() and (folder / PREVIOUS_RUN_DIR / "results.json").read_text() == earlier
    # The replacing run writes its first files, then stops before saving a checkpoint or its best model.
    (folder / "results.json").write_text('{"completed": false}')
    with pytest.raises(FileExistsError):  # the next run in the folder finds the earlier run back in place
        prepare_output_dir(folder, overwrite=False, resuming=False)
    assert "Restored the earlier run" in capsys.readouterr().err
    assert (folder / "results.json").read_text() == earlier and not (folder / PREVIOUS_RUN_DIR).exists()
    assert sorted(path.name for path in (folder / "checkpoints").iterdir()) == ["step_00000002", "step_00000004"]
    # Once the replacement has saved, the earlier run is gone for good.
    prepare_output_dir(folder, overwrite=True, resuming=False)
    (folder / "best").mkdir()
    discard_replaced_run(folder)
    assert not (folder / PREVIOUS_RUN_DIR).exists() and not (folder / "checkpoints").exists()
