"""How a model fails, for its card: classes never predicted, low recall, the trivial predictor beside it."""

import torch

from moezoo.hub.failures import TaskOutcomes
from moezoo.tasks import IGNORE_INDEX, TaskSpec


def test_a_constant_classifier_is_named_as_one():
    outcomes = TaskOutcomes(TaskSpec(name="cola", kind="multiclass", num_labels=2))
    outcomes.update(torch.tensor([[0.0, 1.0]] * 10), torch.tensor([[1.0]] * 7 + [[0.0]] * 3))
    assert outcomes.describe() == (
        "- `cola`: accuracy 0.7000 against 0.7000 for always answering the most frequent class (1); "
        "**it answers class 1 for every example**."
    )


def test_classes_never_predicted_and_low_recall_are_counted_over_batches():
    outcomes = TaskOutcomes(TaskSpec(name="digit", kind="multiclass", num_labels=4))
    outcomes.update(torch.eye(4)[[0, 1, 1]], torch.tensor([[0.0], [1.0], [3.0]]))
    outcomes.update(torch.eye(4)[[2, 0, 1, 0]], torch.tensor([[2.0], [1.0], [1.0], [IGNORE_INDEX]]))
    # Class 3 (1 example) is never predicted; class 1 is recalled 2 of 3 times; the missing label is skipped.
    assert outcomes.confusion.sum() == 6
    assert outcomes.describe() == (
        "- `digit`: accuracy 0.6667 against 0.5000 for always answering the most frequent class (1); "
        "**never predicts class(es) 3 (1 example)**."
    )


def test_a_classifier_no_more_accurate_than_the_majority_class_is_named_as_such():
    outcomes = TaskOutcomes(TaskSpec(name="rte", kind="multiclass", num_labels=2))
    # 6 of 10 are class 0; it answers both classes (recalling 4 of 6 and 2 of 4) but gets only 6 right, as
    # always answering class 0 would.
    outcomes.update(torch.eye(2)[[0, 0, 0, 0, 1, 1, 0, 0, 1, 1]], torch.tensor([[0.0]] * 4 + [[0.0]] * 2 + [[1.0]] * 4))
    assert outcomes.describe() == (
        "- `rte`: accuracy 0.6000 against 0.6000 for always answering the most frequent class (0); "
        "**no better than always answering the most frequent class**; every class recalled at least 50.0%."
    )


def test_dense_tasks_count_pixels_and_regression_compares_with_the_mean():
    dense = TaskOutcomes(TaskSpec(name="segment", kind="multiclass", num_labels=3), dense=True)
    logits = torch.zeros(1, 3, 2, 2)
    logits[:, 0] = 1.0  # background, but for one pixel of class 1
    logits[0, 1, 0, 1] = 2.0
    dense.update(logits, torch.tensor([[[[0.0, 1.0], [2.0, 0.0]]]]))  # labels [B, 1, H, W]
    assert dense.describe() == (
        "- `segment` (per pixel): accuracy 0.7500 against 0.5000 for always answering the most frequent class (0); "
        "**never predicts class(es) 2 (1 pixel)**."
    )
    regression = TaskOutcomes(TaskSpec(name="score", kind="regression"))
    regression.update(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[1.5], [2.0], [float("nan")]]))
    # Two labelled rows: errors 0.5 and 0 -> MSE 0.125; the mean predictor's MSE is the targets' variance 0.0625.
    assert regression.describe().startswith("- `score`: mean squared error 0.1250 against 0.0625 for always answering the mean")
