"""Resumable runs: a training process killed with SIGKILL mid-epoch and resumed ends exactly where an
uninterrupted run does."""

import json
import os
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
    recipe = REPO / "recipes" / "train_tabular.py"
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    completed = run(recipe, *recipe_args(reference, data_dir))
    assert completed.returncode == 0, completed.stderr[-3000:]

    # Killed at step 25: mid-way through epoch 2, five steps after the checkpoint of step 20.
    killed = run(REPO / "tests" / "scripts" / "killed_recipe.py", 25, *recipe_args(interrupted, data_dir))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert [path.name for path in list_checkpoints(interrupted)] == ["step_00000010", "step_00000020"]
    assert json.loads((interrupted / "results.json").read_text())["completed"] is False
    assert [record["epoch"] for record in json.loads((interrupted / "training_history.json").read_text())] == [1]

    # Starting again without saying what to do with the folder is refused, and changes nothing.
    refused = run(recipe, *recipe_args(interrupted, data_dir))
    assert refused.returncode != 0 and "--resume_from_checkpoint latest" in refused.stderr
    assert [path.name for path in list_checkpoints(interrupted)] == ["step_00000010", "step_00000020"]

    resumed = run(recipe, *recipe_args(interrupted, data_dir, "--resume_from_checkpoint", "latest"))
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
    assert history == json.loads((reference / "training_history.json").read_text())
    results = json.loads((interrupted / "results.json").read_text())
    assert results["completed"] is True
    assert results["test"] == json.loads((reference / "results.json").read_text())["test"]
    best = AutoModel.from_pretrained(interrupted / "best")
    assert best.config.tower_dropout == 0.2
