"""The loss-weighting methods against their papers' formulas, and their state carried through state_dict."""

import copy
import math

import pytest
import torch

from moezoo.balancing import (
    FAMO,
    DynamicWeightAveraging,
    EqualWeighting,
    GradNorm,
    RandomLossWeighting,
    UncertaintyWeighting,
)


def losses_requiring_grad(*values):
    return torch.tensor(values, requires_grad=True)


def test_equal_weighting_is_the_fixed_weighted_sum():
    method = EqualWeighting(3, task_weights=[1.0, 0.5, 2.0])
    losses = losses_requiring_grad(0.3, 1.2, 0.7)
    total = method.combine(losses)
    assert total.item() == pytest.approx(0.3 + 0.6 + 1.4)
    total.backward()
    assert losses.grad.tolist() == [1.0, 0.5, 2.0] and method.last_weights.tolist() == [1.0, 0.5, 2.0]
    with pytest.raises(ValueError, match=r"task_weights must be 3 non-negative numbers, got \[1.0, -1.0, 1.0\]"):
        EqualWeighting(3, task_weights=[1.0, -1.0, 1.0])


def test_uncertainty_weighting_learns_each_tasks_log_variance():
    method = UncertaintyWeighting(2)
    losses = torch.tensor([0.5, 4.0])
    total = method.combine(losses)
    assert total.item() == pytest.approx((0.5 + 4.0) / 2)  # s = 0
    total.backward()
    # d/ds_k (e^(-s_k) L_k + s_k) / 2 = (1 - e^(-s_k) L_k) / 2
    torch.testing.assert_close(method.log_variances.grad, (1 - losses) / 2)
    optimizer = torch.optim.SGD(method.parameters(), lr=0.5)
    for _ in range(400):
        optimizer.zero_grad()
        method.combine(losses).backward()
        optimizer.step()
    # The minimum over s of e^(-s) L + s is at s = log L: the weight e^(-s)/2 becomes 1 / (2 L).
    torch.testing.assert_close(method.log_variances.detach(), losses.log(), atol=1e-4, rtol=0)
    torch.testing.assert_close(method.last_weights, 1 / (2 * losses), atol=1e-4, rtol=0)


def test_dwa_weights_follow_the_last_two_epochs_loss_ratios():
    method = DynamicWeightAveraging(3, temperature=2.0)
    epochs = [[[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], [[1.0, 1.0, 1.0], [1.0, 1.0, 3.0]], [[0.5, 1.0, 1.5]]]
    seen = []
    for epoch in epochs:
        for step in epoch:
            method.combine(torch.tensor(step))
            seen.append(method.last_weights.tolist())
        method.end_epoch()
    assert seen[:4] == [[1.0, 1.0, 1.0]] * 4  # the first two epochs
    first, second = torch.tensor([2.0, 2.0, 2.0]), torch.tensor([1.0, 1.0, 2.0])
    expected = 3 * torch.softmax((second / first) / 2.0, 0)
    assert seen[4] == pytest.approx(expected.tolist())
    assert sum(seen[4]) == pytest.approx(3.0) and seen[4][2] > seen[4][0]  # the slower task gets more


def test_rlw_draws_softmax_normal_weights_from_its_own_seeded_generator():
    method = RandomLossWeighting(4, seed=5)
    generator = torch.Generator().manual_seed(5)
    for _ in range(3):
        method.combine(torch.ones(4))
        torch.testing.assert_close(method.last_weights, torch.softmax(torch.randn(4, generator=generator), 0))
    # A resumed run continues the same draws.
    resumed = RandomLossWeighting(4, seed=0)
    resumed.load_state_dict(method.state_dict())
    method.combine(torch.ones(4))
    resumed.combine(torch.ones(4))
    torch.testing.assert_close(resumed.last_weights, method.last_weights)


def test_famo_scales_each_tasks_gradient_and_updates_its_logits_by_adam():
    method = FAMO(3, lr=0.1, weight_decay=0.0)
    method.logits.copy_(torch.tensor([0.2, -0.1, 0.0]))
    losses = losses_requiring_grad(0.5, 2.0, 1.0)
    method.combine(losses).backward()
    z = torch.softmax(torch.tensor([0.2, -0.1, 0.0]), 0)
    c = (z / losses.detach()).sum()
    torch.testing.assert_close(losses.grad, z / (c * losses.detach()), rtol=1e-5, atol=0)

    after = torch.tensor([0.4, 1.9, 0.5])
    method.after_step(losses.detach(), losses_after=after)
    delta = losses.detach().log() - after.log()
    jacobian = torch.diag(z) - z[:, None] * z[None, :]
    logits = torch.tensor([0.2, -0.1, 0.0], requires_grad=True)
    reference = torch.optim.Adam([logits], lr=0.1)
    logits.grad = jacobian.T @ delta
    reference.step()
    torch.testing.assert_close(method.logits, logits.detach(), rtol=1e-5, atol=1e-7)
    # The task whose loss fell least relative to its size (the second) gains weight.
    assert torch.softmax(method.logits, 0)[1] > z[1]
    with pytest.raises(ValueError, match="pass losses_after"):
        method.after_step(losses.detach())


def test_famo_from_the_next_batch_updates_as_the_paper_does_with_that_batchs_losses():
    """update_from="next_batch" takes the next step's losses as the losses after the step: the same logit
    update as the paper's, read in `combine` before the next weights are formed, with no second pass."""
    first, second = torch.tensor([0.5, 2.0, 1.0]), torch.tensor([0.4, 1.9, 0.5])
    paper = FAMO(3, lr=0.1, update_from="same_batch")
    paper.combine(first)
    paper.after_step(first, losses_after=second)
    paper.combine(second)
    cheap = FAMO(3, lr=0.1, update_from="next_batch")
    assert paper.needs == "losses_after" and cheap.needs is None
    cheap.combine(first)
    cheap.after_step(first)  # nothing to do: no losses_after needed
    assert torch.equal(cheap.logits, torch.zeros(3))
    cheap.combine(second)
    torch.testing.assert_close(cheap.logits, paper.logits)
    torch.testing.assert_close(cheap.last_weights, paper.last_weights)
    torch.testing.assert_close(cheap.pending_losses, second)
    with pytest.raises(ValueError, match=r"FAMO's update_from is one of \['same_batch', 'next_batch'\], got 'later'"):
        FAMO(3, update_from="later")


def test_gradnorm_moves_weights_toward_the_target_norms_and_keeps_their_sum():
    method = GradNorm(3, alpha=1.5, lr=0.05)
    first = torch.tensor([1.0, 1.0, 1.0])
    method.combine(first)
    now = torch.tensor([0.9, 0.5, 0.2])  # the third task trains fastest
    norms = torch.tensor([1.0, 1.0, 1.0])
    inverse_rate = now / first
    expected_targets = norms.mean() * (inverse_rate / inverse_rate.mean()) ** 1.5
    torch.testing.assert_close(method.targets(now, norms), expected_targets)
    method.combine(now)
    method.after_step(now, gradient_norms=norms)
    assert method.weights.sum().item() == pytest.approx(3.0)
    # The slowest task's norm is below its target: its weight rises; the fastest's falls.
    assert method.weights[0] > 1.0 > method.weights[2]
    with pytest.raises(ValueError, match="pass gradient_norms"):
        method.after_step(now)


@pytest.mark.parametrize(
    "make", [lambda: UncertaintyWeighting(3), lambda: DynamicWeightAveraging(3), lambda: RandomLossWeighting(3, seed=1),
             lambda: FAMO(3), lambda: FAMO(3, update_from="next_batch"), lambda: GradNorm(3)],
)
def test_a_method_restored_from_its_state_dict_continues_identically(make):
    generator = torch.Generator().manual_seed(0)
    steps = [torch.rand(3, generator=generator) + 0.1 for _ in range(6)]

    def run(method, batch):
        method.combine(batch)
        method.after_step(batch, losses_after=batch * 0.9, gradient_norms=batch + 1)
        if isinstance(method, DynamicWeightAveraging):
            method.end_epoch()
        return method.last_weights.clone()

    method = make()
    for batch in steps[:4]:
        run(method, batch)
    restored = make()
    restored.load_state_dict(copy.deepcopy(method.state_dict()))
    for batch in steps[4:]:
        torch.testing.assert_close(run(restored, batch), run(method, batch))


def test_bad_losses_are_named():
    method = EqualWeighting(2)
    with pytest.raises(ValueError, match=r"Expected the 2 task losses as a \[2\] tensor, got \[3\]"):
        method.combine(torch.ones(3))
    with pytest.raises(ValueError, match=r"A task loss is not finite: \[1.0, nan\]"):
        method.combine(torch.tensor([1.0, math.nan]))
    with pytest.raises(ValueError, match="DWA's temperature must be positive, got 0"):
        DynamicWeightAveraging(2, temperature=0)
