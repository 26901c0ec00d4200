"""Mixed-task data: task_ids through the model, the metrics, transformers.Trainer, and the mixing sampler."""

import json
import math
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

import moezoo
from moezoo.cli import main as moezoo_command
from moezoo.tasks import TaskSpec, task_loss
from moezoo.training import (
    TaskMixingSampler,
    concatenate_tasks,
    multitask_metrics,
    task_sampling_probabilities,
)

REPO = Path(__file__).resolve().parents[1]
TASKS = [{"name": "sentiment", "kind": "multiclass", "num_labels": 2}, {"name": "similarity", "kind": "regression"}]


def mixed_model():
    return moezoo.create_model("mmoe", tasks=TASKS, input_size=4)


def test_sampling_probabilities_follow_the_formulas():
    sizes = [800, 100, 100]
    torch.testing.assert_close(task_sampling_probabilities(sizes, "proportional"), torch.tensor([0.8, 0.1, 0.1], dtype=torch.float64))
    expected = torch.tensor([800**0.5, 100**0.5, 100**0.5], dtype=torch.float64)
    torch.testing.assert_close(task_sampling_probabilities(sizes, "temperature", 2.0), expected / expected.sum())
    torch.testing.assert_close(task_sampling_probabilities(sizes, "uniform"), torch.full((3,), 1 / 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"Unknown task mixing 'temprature' \(did you mean 'temperature'"):
        task_sampling_probabilities(sizes, "temprature")


@pytest.mark.parametrize("mixing, temperature", [("proportional", 1.0), ("temperature", 2.0), ("temperature", 5.0), ("uniform", 1.0)])
def test_sampled_task_frequencies_match_the_formula(mixing, temperature):
    task_ids = torch.cat([torch.full((6000,), 0), torch.full((1500,), 1), torch.full((500,), 2)])
    sampler = TaskMixingSampler(task_ids, mixing, temperature, seed=3)
    drawn = task_ids[torch.tensor(list(sampler))]
    frequencies = torch.bincount(drawn, minlength=3).double() / len(drawn)
    expected = task_sampling_probabilities([6000, 1500, 500], mixing, temperature)
    # Binomial standard deviation of a frequency over 8000 draws is at most 0.0056.
    torch.testing.assert_close(frequencies, expected, atol=0.02, rtol=0)
    if mixing == "proportional":
        assert sorted(sampler) == list(range(8000))  # every example exactly once
    # Seeded: the same epoch gives the same order, the next epoch another.
    assert list(sampler) == list(sampler)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_a_task_drawn_less_often_than_its_size_sees_distinct_examples():
    task_ids = torch.cat([torch.full((1000,), 0), torch.full((10,), 1)])
    drawn = list(TaskMixingSampler(task_ids, "uniform", num_samples=400, seed=0))
    big_task = [index for index in drawn if index < 1000]
    assert len(set(big_task)) == len(big_task)  # about 200 draws, no repeat before the 1,000 are used


def test_each_example_counts_for_its_own_task_only():
    model = mixed_model().train()
    x = torch.randn(6, 4)
    # Full label rows; with task_ids, the other task's columns must play no part.
    labels = torch.tensor([[1, 0.3], [0, 0.9], [1, 0.1], [0, 0.5], [1, 0.7], [0, 0.2]])
    task_ids = torch.tensor([0, 0, 1, 1, 1, 0])
    out = model(inputs_embeds=x, labels=labels, task_ids=task_ids)
    specs = [TaskSpec.from_dict(task) for task in TASKS]
    logits = model(inputs_embeds=x).logits
    sentiment = task_loss(specs[0], logits["sentiment"][task_ids == 0], labels[task_ids == 0, :1])
    similarity = task_loss(specs[1], logits["similarity"][task_ids == 1], labels[task_ids == 1, 1:])
    torch.testing.assert_close(out.task_losses["sentiment"], sentiment)
    torch.testing.assert_close(out.task_losses["similarity"], similarity)
    torch.testing.assert_close(out.loss, sentiment + similarity)
    with pytest.raises(ValueError, match=r"task_ids \[2, 5\] are out of range: this model has 2 tasks"):
        model(inputs_embeds=x, labels=labels, task_ids=torch.tensor([0, 2, 1, 5, 1, 0]))
    with pytest.raises(ValueError, match="task_ids has 3 entries but the batch has 6"):
        model(inputs_embeds=x, labels=labels, task_ids=task_ids[:3])
    with pytest.raises(TypeError, match="task_ids must be an integer tensor"):
        model(inputs_embeds=x, task_ids=task_ids.float())


def test_concatenate_tasks_builds_task_ids_and_own_task_label_rows():
    sentiment = Dataset.from_dict({"inputs_embeds": [[0.0] * 4] * 3, "label": [1, 0, 1]})
    similarity = Dataset.from_dict({"inputs_embeds": [[1.0] * 4] * 2, "label": [0.25, 0.75]})
    mixed = concatenate_tasks({"sentiment": sentiment, "similarity": similarity}, TASKS).with_format("torch")[:]
    assert mixed["task_ids"].tolist() == [0, 0, 0, 1, 1]
    labels = mixed["labels"]
    assert labels[:3, 0].tolist() == [1, 0, 1] and (labels[:3, 1].isnan()).all()
    assert labels[3:, 1].tolist() == [0.25, 0.75] and labels[3:, 0].tolist() == [-100, -100]
    with pytest.raises(KeyError, match=r"unknown task\(s\) \['topic'\]"):
        concatenate_tasks({"topic": sentiment}, TASKS)


def test_metrics_score_each_task_on_its_own_examples(tmp_path):
    from accelerate import Accelerator

    from moezoo.training import evaluate, prepare_eval_loader

    model = mixed_model().eval()
    x = torch.randn(8, 4)
    labels = torch.tensor([[1, 0.5]] * 8)
    task_ids = torch.tensor([0, 1] * 4)
    data = Dataset.from_dict({"inputs_embeds": x.tolist(), "labels": labels.tolist(), "task_ids": task_ids.tolist()})
    metrics = evaluate(model, prepare_eval_loader(model, data, Accelerator(), batch_size=3), Accelerator())
    logits = model(inputs_embeds=x).logits
    own = {"sentiment": labels[:, :1].where((task_ids == 0).unsqueeze(1), float("nan")),
           "similarity": labels[:, 1:].where((task_ids == 1).unsqueeze(1), float("nan"))}
    expected = multitask_metrics([TaskSpec.from_dict(task) for task in TASKS], logits, own)
    assert metrics.keys() == expected.keys()
    for name in expected:
        assert math.isclose(metrics[name], expected[name], rel_tol=1e-5), name
    sentiment_predictions = logits["sentiment"][task_ids == 0].argmax(-1)
    assert math.isclose(metrics["sentiment/accuracy"], (sentiment_predictions == 1).float().mean().item())


def test_trainer_keeps_task_ids_through_remove_unused_columns(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    task_ids = torch.randint(0, 2, (256,))
    # Each task has its own target; a model that ignored task_ids in its loss would not fit both.
    labels = torch.stack([(x[:, 0] > 0).float(), x[:, 1]], dim=1)
    data = Dataset.from_dict(
        {"inputs_embeds": x.tolist(), "labels": labels.tolist(), "task_ids": task_ids.tolist(), "note": ["x"] * 256}
    )
    model = mixed_model()
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=80, per_device_train_batch_size=32, learning_rate=1e-2, report_to=[],
        use_cpu=True, save_strategy="no", logging_steps=20, seed=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data)
    seen = []
    model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs.get("task_ids")), with_kwargs=True)
    trainer.train()
    assert all(ids is not None and ids.dtype == torch.long for ids in seen)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses[-1] < 0.6 * losses[0]


@pytest.mark.slow
@pytest.mark.xdist_group("two_processes")  # one worker: they share accelerate's rendezvous port
def test_two_processes_cover_every_example_once_per_epoch(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    script = REPO / "tests" / "scripts" / "mixed_task_epoch.py"
    status = moezoo_command(["train", "--num_processes", "2", str(script), str(tmp_path)])
    assert status == 0, capfd.readouterr().err[-4000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == 48
    assert sorted(ranks[0]["seen"] + ranks[1]["seen"]) == list(range(96))
    assert any(len(tasks) > 1 for rank in ranks for tasks in rank["batch_tasks"])  # several tasks per batch
