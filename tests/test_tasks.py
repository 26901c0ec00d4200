import math

import pytest
import torch

from moezoo.tasks import TaskSpec, parse_tasks, present_label_counts, split_labels, task_loss


def bce(logit, label):
    p = 1 / (1 + math.exp(-logit))
    return -(label * math.log(p) + (1 - label) * math.log(1 - p))


def test_binary_loss_averages_present_labels_only():
    task = TaskSpec("t")
    logits = torch.tensor([[0.5], [-1.0], [2.0]])
    labels = torch.tensor([[1.0], [float("nan")], [0.0]])
    expected = (bce(0.5, 1) + bce(2.0, 0)) / 2
    assert task_loss(task, logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_multiclass_loss_masks_nan_and_ignore_index():
    task = TaskSpec("c", kind="multiclass", num_labels=3)
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.1, 0.2, 0.3], [3.0, 0.0, 0.0]])
    labels = torch.tensor([[1.0], [-100.0], [float("nan")]])
    log_softmax = torch.log_softmax(logits[0], -1)
    assert task_loss(task, logits, labels).item() == pytest.approx(-log_softmax[1].item(), rel=1e-6)


def test_regression_and_multilabel_losses():
    reg = TaskSpec("r", kind="regression", num_labels=2)
    logits = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    labels = torch.tensor([[2.0, float("nan")], [3.0, 6.0]])
    assert task_loss(reg, logits, labels).item() == pytest.approx((1 + 0 + 4) / 3)
    multi = TaskSpec("m", kind="multilabel", num_labels=2)
    labels = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    expected = (bce(1.0, 1) + bce(3.0, 0) + bce(4.0, 1)) / 3
    assert task_loss(multi, logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_label_counts_are_the_denominators_of_the_losses():
    tasks = [TaskSpec("c", kind="multiclass", num_labels=3), TaskSpec("r", kind="regression", num_labels=2),
             TaskSpec("b")]
    labels = {"c": torch.tensor([[1.0], [-100.0], [float("nan")]]),
              "r": torch.tensor([[2.0, float("nan")], [3.0, 6.0], [float("nan")] * 2]),
              "b": torch.full((3, 1), float("nan"))}
    counts = present_label_counts(tasks, labels)
    assert {name: count.item() for name, count in counts.items()} == {"c": 1, "r": 3, "b": 0}
    logits = {"c": torch.randn(3, 3), "r": torch.randn(3, 2), "b": torch.randn(3, 1)}
    for task in tasks:  # loss x count = the sum of the per-label losses
        per_label_sum = task_loss(task, logits[task.name], labels[task.name]) * counts[task.name]
        doubled = {name: torch.cat([value, value]) for name, value in labels.items()}
        both = task_loss(task, torch.cat([logits[task.name]] * 2), doubled[task.name])
        assert (both * present_label_counts(tasks, doubled)[task.name]).item() == pytest.approx(2 * per_label_sum.item(), rel=1e-6)


@pytest.mark.parametrize("kind", ["binary", "regression", "multiclass"])
def test_missing_labels_get_zero_gradient(kind):
    num_labels = 3 if kind == "multiclass" else 1
    logits = torch.randn(3, num_labels, requires_grad=True)
    labels = torch.tensor([[1.0], [float("nan")], [0.0]])
    task_loss(TaskSpec("t", kind=kind, num_labels=num_labels), logits, labels).backward()
    assert torch.all(logits.grad[1] == 0) and torch.all(logits.grad[[0, 2]].abs().sum(dim=1) > 0)


def test_all_missing_gives_zero_loss_still_in_graph():
    logits = torch.randn(3, 1, requires_grad=True)
    loss = task_loss(TaskSpec("t"), logits, torch.full((3, 1), float("nan")))
    assert loss.item() == 0.0 and loss.requires_grad


def test_split_labels_matrix_and_mapping():
    tasks = [TaskSpec("a"), TaskSpec("b", kind="multilabel", num_labels=2), TaskSpec("c", kind="multiclass", num_labels=4)]
    matrix = torch.tensor([[1.0, 0.0, 1.0, 3.0], [0.0, 1.0, 1.0, 2.0]])
    split = split_labels(tasks, matrix)
    assert [split[name].shape for name in "abc"] == [(2, 1), (2, 2), (2, 1)]
    assert torch.equal(split["c"], torch.tensor([[3.0], [2.0]]))
    assert torch.equal(split_labels(tasks, {"c": torch.tensor([1, 2])})["c"], torch.tensor([[1.0], [2.0]]))


@pytest.mark.parametrize(
    "labels, error, message",
    [
        ({"nope": torch.zeros(2)}, KeyError, "unknown task"),
        (torch.zeros(2, 3), ValueError, r"shape \[batch, 2\]"),
        (torch.zeros(2, 2, dtype=torch.bool), TypeError, "dtype torch.bool"),
        (torch.tensor([[0.0, 2.0]]), ValueError, r"lie in \[0, 1\]"),
        (torch.tensor([[0.0, float("inf")]]), ValueError, "inf"),
    ],
)
def test_bad_labels_are_named(labels, error, message):
    with pytest.raises(error, match=message):
        split_labels([TaskSpec("a"), TaskSpec("b")], labels)


def test_bad_multiclass_labels():
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        split_labels([TaskSpec("c", kind="multiclass", num_labels=3)], torch.tensor([[3.0]]))


@pytest.mark.parametrize(
    "specs, message",
    [
        ([{"name": "a"}, {"name": "a"}], "listed twice"),
        ([], "at least one task"),
        ([{"name": "a", "kind": "ranking"}], "unknown kind"),
        ([{"name": "a", "kind": "multiclass", "num_labels": 1}], "num_labels >= 2"),
        ([{"name": "a", "weight": -1.0}], "non-negative weight"),
        ([{"name": "a", "colour": "red"}], "Unknown task field"),
    ],
)
def test_bad_task_lists(specs, message):
    with pytest.raises(ValueError, match=message):
        parse_tasks(specs)
