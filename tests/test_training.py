import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoFeatureExtractor, AutoModel, Trainer, TrainingArguments

import moezoo
from moezoo.cli import main as moezoo_command
from moezoo.data import load_census_income

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "train_tabular.py"
CONFIG = REPO / "recipes" / "configs" / "census_income_mmoe.yaml"
sys.path.insert(0, str(REPO / "recipes"))
from train_tabular import main as train_tabular  # noqa: E402


def short_run_args(output_dir, data_dir, **extra):
    args = [
        str(CONFIG), "--output_dir", str(output_dir), "--data_dir", str(data_dir),
        "--max_train_samples", "8000", "--max_eval_samples", "4000", "--num_train_epochs", "4",
        "--per_device_train_batch_size", "256",
    ]
    for key, value in extra.items():
        args += [f"--{key}", str(value)]
    return args


def test_short_recipe_run_learns_saves_and_scores_raw_rows(tmp_path, data_dir):
    result = train_tabular(short_run_args(tmp_path, data_dir))
    losses = [record["train_loss"] for record in result.training.history]
    assert losses[-1] < 0.8 * losses[0]
    assert result.training.num_processes == 1

    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary == result.summary
    assert summary["model_type"] == "mmoe" and summary["arguments"]["model_name"] == "mmoe"
    assert summary["num_parameters"] == sum(p.numel() for p in result.training.model.parameters())
    assert summary["test"]["income/auc"] > 0.85 and summary["test"]["marital/auc"] > 0.95

    model = AutoModel.from_pretrained(tmp_path / "best")
    processor = AutoFeatureExtractor.from_pretrained(tmp_path / "best")
    assert isinstance(model, moezoo.MMoEModel) and isinstance(processor, moezoo.TabularProcessor)
    raw = load_census_income(data_dir)["test"].select(range(200)).to_pandas()
    scores = moezoo.inference.predict_rows(model, processor, raw.drop(columns=["income", "marital"]))
    assert list(scores.columns) == ["income", "marital"]
    assert scores["marital"][raw["marital"] == 1].mean() > scores["marital"][raw["marital"] == 0].mean() + 0.5


def test_recipe_is_deterministic_on_cpu(tmp_path, data_dir):
    runs = []
    for name in ("a", "b"):
        result = train_tabular(short_run_args(tmp_path / name, data_dir, max_train_samples=2000, num_train_epochs=1))
        runs.append(result.training.model.state_dict())
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key


def test_recipe_rejects_unknown_yaml_keys(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("model_name: mmoe\nnum_train_epoch: 8\n")
    with pytest.raises(ValueError, match=r"unknown argument\(s\) 'num_train_epoch' \(did you mean 'num_train_epochs'"):
        train_tabular([str(config)])


@pytest.mark.slow
@pytest.mark.xdist_group("two_processes")  # one worker: they share accelerate's rendezvous port
def test_two_process_run_keeps_replicas_identical(tmp_path, data_dir, monkeypatch, capfd):
    # `moezoo train --num_processes 2` launches the recipe with `accelerate launch`, on the CPU here.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    status = moezoo_command([
        "train", "--num_processes", "2", str(REPO / "tests" / "scripts" / "distributed_recipe.py"),
        *short_run_args(tmp_path, data_dir, num_train_epochs=2, max_train_samples=4000),
    ])
    captured = capfd.readouterr()
    assert status == 0, captured.err[-4000:]
    # One line per epoch from the main process only, not one per process.
    epoch_lines = [line for line in (captured.out + captured.err).splitlines() if line.startswith("epoch=")]
    assert [line.split()[0] for line in epoch_lines] == ["epoch=1", "epoch=2"], epoch_lines
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert json.loads((tmp_path / "results.json").read_text())["num_processes"] == 2
    # 4000 rows, 256 per process and step, 2 processes: 8 steps per epoch, not the 16 of one process.
    assert ranks[0]["steps"] == ranks[1]["steps"] == 16
    first, second = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_transformers_trainer_trains_an_mmoe(tmp_path, toy_rows, toy_processor, make_toy_model):
    from datasets import Dataset

    rows = toy_rows.sample(2048, replace=True, random_state=0).reset_index(drop=True)
    # A learnable signal: y1 follows the job, y2 the sex.
    rows["y1"] = rows["job"].isin(["a", "b"]).astype(int)
    rows["y2"] = (rows["sex"] == "F").astype(int)
    encoded = Dataset.from_dict({key: value.tolist() for key, value in toy_processor(rows).items()})
    encoded = encoded.add_column("unused_note", ["x"] * len(encoded))
    model = make_toy_model("mmoe")
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=60, per_device_train_batch_size=64, learning_rate=1e-2,
        logging_steps=10, report_to=[], use_cpu=True, save_strategy="no", seed=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=encoded)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0]


def test_image_recipe_trains_saves_and_scores_accuracy(tmp_path, data_dir):
    from train_image import main as train_image

    args = [
        str(REPO / "recipes" / "configs" / "multi_mnist_dselect_k.yaml"), "--dataset", "fashion-mnist",
        "--data_dir", str(data_dir), "--output_dir", str(tmp_path), "--max_train_samples", "3000",
        "--max_eval_samples", "1000", "--num_train_epochs", "3",
    ]
    result = train_image(args)
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary == result.summary and summary["model_type"] == "dselect_k"
    assert summary["arguments"]["dataset"] == "fashion-mnist"
    # Ten classes: chance is 10%; three short epochs on 3000 canvases already do well above it.
    assert summary["test"]["top_left/accuracy"] > 0.25 and summary["test"]["bottom_right/accuracy"] > 0.25
    assert summary["test"]["mean_accuracy"] == pytest.approx(
        (summary["test"]["top_left/accuracy"] + summary["test"]["bottom_right/accuracy"]) / 2
    )
    model = AutoModel.from_pretrained(tmp_path / "best")
    assert isinstance(model, moezoo.DSelectKModel) and model.image_encoder is not None


def test_image_recipe_trains_one_task_alone_on_that_tasks_labels(tmp_path, data_dir):
    from train_image import DataArguments, select_tasks
    from train_image import main as train_image

    from moezoo.data import load_multi_mnist

    splits = load_multi_mnist(data_dir, select_rows=lambda name, size: range(50))
    alone = select_tasks(splits, ["bottom_right"])
    assert torch.equal(alone["test"][:]["labels"], splits["test"][:]["labels"][:, 1:])
    swapped = select_tasks(splits, ["bottom_right", "top_left"])["train"][:]["labels"]
    assert torch.equal(swapped, splits["train"][:]["labels"].flip(1))
    args = [
        str(REPO / "recipes" / "configs" / "multi_mnist_dselect_k.yaml"), "--data_dir", str(data_dir),
        "--output_dir", str(tmp_path), "--max_train_samples", "3000", "--max_eval_samples", "1000",
        "--num_train_epochs", "3", "--tasks", "bottom_right",
    ]
    summary = train_image(args).summary
    assert summary["arguments"]["tasks"] == ["bottom_right"] and "top_left/accuracy" not in summary["test"]
    assert summary["test"]["bottom_right/accuracy"] > 0.2  # chance is 0.1
    assert AutoModel.from_pretrained(tmp_path / "best").task_names == ["bottom_right"]
    with pytest.raises(ValueError, match=r"--tasks must be distinct names from \['top_left', 'bottom_right'\], got \['top_lef'\] \(did you mean 'top_left'\?\)"):
        DataArguments(tasks=["top_lef"])


def test_subsample_splits_and_missing_splits(tmp_path):
    from datasets import Dataset, DatasetDict

    from moezoo.training import TrainingConfig, subsample_splits, train_and_test

    splits = DatasetDict({name: Dataset.from_dict({"x": list(range(100))}) for name in ("train", "validation", "test")})
    small = subsample_splits(splits, max_train_samples=10, max_eval_samples=5, seed=0)
    assert len(small["train"]) == 10 and len(set(small["train"]["x"])) == 10
    assert small["validation"]["x"] == small["test"]["x"] == [0, 1, 2, 3, 4]
    assert len(splits["train"]) == 100  # the input is left as it was
    with pytest.raises(KeyError, match="needs a 'test' split"):
        train_and_test(None, DatasetDict(train=splits["train"], validation=splits["validation"]), TrainingConfig(), None)


@pytest.mark.slow
@pytest.mark.xdist_group("two_processes")  # one worker: they share accelerate's rendezvous port
def test_a_failure_on_two_processes_prints_its_cause_first_and_alone(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    status = moezoo_command([
        "train", "--num_processes", "2", str(REPO / "recipes" / "configs" / "census_income_mmoe.yaml"),
        "--data_dir", str(tmp_path / "no_data"), "--output_dir", str(tmp_path / "run"),
    ])
    err = capfd.readouterr().err
    assert status != 0
    lines = [line for line in err.splitlines() if line.strip()]
    cause = lines[-2]
    assert cause.startswith("train_tabular.py: error: ") and str(tmp_path / "no_data") in cause
    assert err.count(cause) == 1  # not once per rank
    assert "ChildFailedError" not in err and "torch.distributed" not in err
    log = Path(lines[-1].removeprefix("(the launcher's full output: ").removesuffix(")"))
    report = log.read_text()
    # Everything is kept in the log: the cause (once per rank that got to print it before the launcher stopped the
    # others) and the launcher's report.
    assert cause in report and "ChildFailedError" in report
    log.unlink()
