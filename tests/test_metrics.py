import pytest
import torch

from moezoo.tasks import IGNORE_INDEX, TaskSpec
from moezoo.training import is_better, multitask_metrics


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
