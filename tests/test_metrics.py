import math

import pytest
import torch

from moezoo.tasks import IGNORE_INDEX, TaskSpec
from moezoo.training import is_better, metric_names, multitask_metrics
from moezoo.training.metrics import DenseTaskMetrics, MultiTaskMetrics


def pairwise_auc(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """AUC as the probability that a positive outscores a negative (ties count half)."""
    positives, negatives = scores[targets == 1], scores[targets == 0]
    diff = positives[:, None] - negatives[None, :]
    return ((diff > 0).float() + 0.5 * (diff == 0).float()).mean().item()


def test_metrics_match_their_definitions_and_skip_missing_labels():
    generator = torch.Generator().manual_seed(0)
    tasks = [
        TaskSpec(name="click", kind="binary"),
        TaskSpec(name="digit", kind="multiclass", num_labels=10),
        TaskSpec(name="size", kind="regression"),
    ]
    logits = {
        "click": torch.randn(64, 1, generator=generator),
        "digit": torch.randn(64, 10, generator=generator),
        "size": torch.randn(64, 1, generator=generator),
    }
    click = torch.randint(0, 2, (64, 1), generator=generator).float()
    click[:5] = float("nan")
    digit = torch.randint(0, 10, (64, 1), generator=generator)
    digit[-7:] = IGNORE_INDEX
    size = torch.randn(64, 1, generator=generator)
    results = multitask_metrics(tasks, logits, {"click": click, "digit": digit, "size": size})

    present = ~click.isnan().squeeze(1)
    expected_auc = pairwise_auc(logits["click"][present, 0], click[present, 0])
    expected_click_accuracy = ((logits["click"][present, 0] > 0).float() == click[present, 0]).float().mean().item()
    expected_digit_accuracy = (logits["digit"][:-7].argmax(1) == digit[:-7, 0]).float().mean().item()
    assert results["click/auc"] == pytest.approx(expected_auc, abs=1e-6)
    assert results["click/accuracy"] == pytest.approx(expected_click_accuracy, abs=1e-6)
    assert results["digit/accuracy"] == pytest.approx(expected_digit_accuracy, abs=1e-6)
    assert results["size/mse"] == pytest.approx(((logits["size"] - size) ** 2).mean().item(), rel=1e-5)
    assert results["size/mae"] == pytest.approx((logits["size"] - size).abs().mean().item(), rel=1e-5)
    assert results["mean_auc"] == pytest.approx(expected_auc, abs=1e-6)
    assert results["mean_accuracy"] == pytest.approx((expected_click_accuracy + expected_digit_accuracy) / 2, abs=1e-6)
    assert "mean_mse" not in results


@pytest.mark.parametrize(
    "metric, value, best, expected",
    [("loss", 0.4, 0.5, True), ("digit/mse", 0.6, 0.5, False), ("mean_accuracy", 0.9, 0.8, True), ("mean_auc", 0.7, None, True)],
)
def test_is_better_knows_which_way_is_up(metric, value, best, expected):
    assert is_better(metric, value, best) is expected


def test_dense_metrics_follow_their_definitions_across_batches_and_skip_missing_pixels():
    torch.manual_seed(0)
    task = TaskSpec(name="segmentation", kind="multiclass", num_labels=3)
    logits = torch.randn(6, 3, 4, 4)
    labels = torch.randint(0, 3, (6, 1, 4, 4)).float()
    labels[0, 0, 0, :2] = float("nan")  # missing pixels
    labels[1, 0, 1, 1] = -100
    streamed = DenseTaskMetrics(task)
    for start in (0, 2, 5):  # uneven batches
        end = {0: 2, 2: 5, 5: 6}[start]
        streamed.update(logits[start:end], labels[start:end])

    rows = logits.permute(0, 2, 3, 1).reshape(-1, 3)
    targets = labels.reshape(-1)
    present = ~torch.isnan(targets) & (targets != -100)
    rows, targets = rows[present], targets[present].long()
    predictions = rows.argmax(1)
    ious = []
    for klass in range(3):
        union = ((predictions == klass) | (targets == klass)).sum()
        if union:
            ious.append(((predictions == klass) & (targets == klass)).sum() / union)
    metrics = streamed.compute()
    assert metrics["miou"] == pytest.approx(torch.stack(ious).mean().item(), abs=1e-6)
    assert metrics["pixel_accuracy"] == pytest.approx((predictions == targets).float().mean().item(), abs=1e-6)
    assert streamed.loss() == pytest.approx(torch.nn.functional.cross_entropy(rows, targets).item(), rel=1e-5)

    regression = TaskSpec(name="depth", kind="regression")
    maps, values = torch.randn(4, 1, 4, 4), torch.randn(4, 1, 4, 4)
    values[0, 0, 0, 0] = float("nan")
    both = MultiTaskMetrics([task, regression], dense_tasks=["segmentation", "depth"])
    both.update({"segmentation": logits[:4], "depth": maps}, {"segmentation": labels[:4], "depth": values})
    results = both.compute()
    kept = ~torch.isnan(values)
    assert results["depth/mse"] == pytest.approx(((maps - values)[kept] ** 2).mean().item(), rel=1e-5)
    assert results["depth/mae"] == pytest.approx((maps - values)[kept].abs().mean().item(), rel=1e-5)
    assert results["loss"] == pytest.approx(results["segmentation/loss"] + results["depth/loss"])
    assert results["mean_miou"] == results["segmentation/miou"]
    assert set(results) == set(metric_names([task, regression], ["segmentation", "depth"]))


def test_extra_metrics_follow_their_definitions_and_unknown_ones_are_named():
    generator = torch.Generator().manual_seed(0)
    acceptability = TaskSpec(name="cola", kind="multiclass", num_labels=2, metrics=["mcc", "f1"])
    similarity = TaskSpec.from_dict({"name": "stsb", "kind": "regression", "metrics": ["pearson", "spearman"]})
    assert similarity.to_dict()["metrics"] == ["pearson", "spearman"] and "metrics" not in TaskSpec(name="a").to_dict()
    logits = torch.randn(40, 2, generator=generator)
    classes = torch.randint(0, 2, (40, 1), generator=generator).float()
    scores, values = torch.randn(40, 1, generator=generator), torch.randn(40, 1, generator=generator)
    results = multitask_metrics([acceptability, similarity], {"cola": logits, "stsb": scores}, {"cola": classes, "stsb": values})

    predicted, truth = logits.argmax(1), classes.squeeze(1).long()
    tp = ((predicted == 1) & (truth == 1)).sum().item()
    tn = ((predicted == 0) & (truth == 0)).sum().item()
    fp = ((predicted == 1) & (truth == 0)).sum().item()
    fn = ((predicted == 0) & (truth == 1)).sum().item()
    mcc = (tp * tn - fp * fn) / ((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)) ** 0.5
    assert results["cola/mcc"] == pytest.approx(mcc, abs=1e-6)
    assert results["cola/f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-6)
    x, y = scores.squeeze(1), values.squeeze(1)
    pearson = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()).pow(2).sum() * (y - y.mean()).pow(2).sum()).sqrt()
    assert results["stsb/pearson"] == pytest.approx(pearson.item(), abs=1e-5)
    ranks = lambda v: v.argsort().argsort().float()  # noqa: E731  (no ties in continuous samples)
    spearman = torch.corrcoef(torch.stack([ranks(x), ranks(y)]))[0, 1]
    assert results["stsb/spearman"] == pytest.approx(spearman.item(), abs=1e-5)
    assert {"cola/mcc", "cola/f1", "stsb/pearson", "stsb/spearman"} <= set(metric_names([acceptability, similarity]))
    # The mean score averages each task's headline metric: its own (MCC, Pearson) before its kind's (accuracy).
    assert results["mean_score"] == pytest.approx((mcc + pearson.item()) / 2, abs=1e-5)
    sentiment = TaskSpec(name="sst2", kind="multiclass", num_labels=2)
    with_accuracy = multitask_metrics(
        [acceptability, sentiment], {"cola": logits, "sst2": logits}, {"cola": classes, "sst2": 1 - classes}
    )
    assert with_accuracy["mean_score"] == pytest.approx((mcc + with_accuracy["sst2/accuracy"]) / 2, abs=1e-6)
    plain_regression = TaskSpec(name="y", kind="regression")  # no headline metric: no mean score
    assert "mean_score" not in metric_names([plain_regression])
    assert "mean_score" not in multitask_metrics([plain_regression], {"y": scores}, {"y": values})
    with pytest.raises(ValueError, match=r"Task 'stsb' \(regression, 1 label\(s\)\) cannot report \['mcc'\]"):
        TaskSpec(name="stsb", kind="regression", metrics=["mcc"])


def direct_mcc(predicted: list[int], truth: list[int]) -> float:
    """The Matthews correlation as the Pearson correlation of the one-hot class indicators (Gorodkin), 0 where
    either side is constant (its definition's limit, sklearn's and GLUE's value)."""
    classes = sorted(set(predicted) | set(truth))
    x = torch.tensor([[float(p == c) for c in classes] for p in predicted], dtype=torch.float64)
    y = torch.tensor([[float(t == c) for c in classes] for t in truth], dtype=torch.float64)
    x, y = x - x.mean(0), y - y.mean(0)
    denominator = ((x * x).sum() * (y * y).sum()).sqrt()
    return 0.0 if denominator == 0 else ((x * y).sum() / denominator).item()


@pytest.mark.parametrize(
    "predicted, truth",
    [
        ([1] * 8, [0, 1, 1, 0, 1, 1, 1, 0]),  # a model that predicts one class (torchmetrics: 0.1826)
        ([0] * 8, [0, 1, 1, 0, 1, 1, 1, 0]),
        ([0, 1, 1, 0, 1, 1, 1, 0], [1] * 8),  # a split with one class
        ([1] * 8, [1] * 8),  # both constant (torchmetrics: 1)
        ([0, 1, 1, 0, 1, 0, 1, 0], [0, 1, 1, 0, 1, 1, 1, 0]),
        ([1, 0, 0, 1, 0, 1, 0, 1], [0, 1, 1, 0, 1, 0, 1, 0]),  # perfectly wrong: -1
    ],
)
def test_matthews_correlation_follows_its_definition_in_every_degenerate_case(predicted, truth):
    task = TaskSpec(name="cola", kind="multiclass", num_labels=2, metrics=["mcc"])
    logits = torch.nn.functional.one_hot(torch.tensor(predicted), 2).float()
    results = multitask_metrics([task], {"cola": logits}, {"cola": torch.tensor(truth, dtype=torch.float32)[:, None]})
    assert results["cola/mcc"] == pytest.approx(direct_mcc(predicted, truth), abs=1e-12)


def test_multiclass_mcc_and_a_binary_tasks_mcc_follow_the_direct_formula():
    generator = torch.Generator().manual_seed(3)
    predicted, truth = torch.randint(0, 4, (50,), generator=generator), torch.randint(0, 4, (50,), generator=generator)
    task = TaskSpec(name="topic", kind="multiclass", num_labels=4, metrics=["mcc"])
    results = multitask_metrics([task], {"topic": torch.nn.functional.one_hot(predicted, 4).float()},
                                {"topic": truth.float()[:, None]})
    assert results["topic/mcc"] == pytest.approx(direct_mcc(predicted.tolist(), truth.tolist()), abs=1e-9)
    binary = TaskSpec(name="click", kind="binary", metrics=["mcc"])
    constant = multitask_metrics([binary], {"click": torch.full((6, 1), 3.0)}, {"click": torch.tensor([[0.0], [1.0]] * 3)})
    assert constant["click/mcc"] == 0.0


def test_correlations_of_a_constant_are_zero_and_an_auc_needs_both_classes():
    similarity = TaskSpec(name="stsb", kind="regression", metrics=["pearson", "spearman"])
    targets = torch.tensor([[0.5], [2.0], [3.5], [1.0]])
    constant = multitask_metrics([similarity], {"stsb": torch.full((4, 1), 2.5)}, {"stsb": targets})
    assert constant["stsb/pearson"] == 0.0 and constant["stsb/spearman"] == 0.0
    reversed_ = multitask_metrics([similarity], {"stsb": -targets}, {"stsb": targets})
    assert reversed_["stsb/pearson"] == pytest.approx(-1.0) and reversed_["stsb/spearman"] == pytest.approx(-1.0)

    click = TaskSpec(name="click", kind="binary")
    scores = torch.tensor([[0.3], [-1.0], [2.0]])
    one_class = multitask_metrics([click], {"click": scores}, {"click": torch.ones(3, 1)})
    assert math.isnan(one_class["click/auc"]) and "mean_auc" not in one_class  # torchmetrics: 0
    tied = multitask_metrics([click], {"click": torch.zeros(4, 1)}, {"click": torch.tensor([[0.0], [1.0], [1.0], [0.0]])})
    assert tied["click/auc"] == pytest.approx(0.5)  # a constant score ranks nothing: ties count half
    tags = TaskSpec(name="tags", kind="multilabel", num_labels=2)
    labels = torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])  # the second label has one class
    logits = torch.tensor([[0.1, 0.0], [0.9, 0.0], [0.2, 0.0], [0.8, 0.0]])
    assert multitask_metrics([tags], {"tags": logits}, {"tags": labels})["tags/auc"] == pytest.approx(1.0)
    assert is_better("mean_auc", float("nan"), None) and not is_better("mean_auc", float("nan"), 0.4)
    assert is_better("mean_auc", 0.4, float("nan")) and is_better("loss", 0.4, float("nan"))
