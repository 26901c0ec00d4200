"""DSelect-k against the paper's formulas (Hazimeh et al. 2021, as written in DESIGN.md)."""

import math
import sys
from pathlib import Path

import pytest
import torch

import moezoo
from moezoo.data import make_expert_selection_problem
from moezoo.routing import DSelectKGate, TaskRouter, RoutingLevel, binary_codes, selector_distribution, smooth_step


def saturate_on(gate: DSelectKGate, gate_index: int, selector: int, expert_code: int, margin: float = 1.0) -> None:
    """Point a static gate's selector at ``expert_code``: each switch beyond +-gamma/2 by its bit."""
    bits = binary_codes(gate.num_bits)[expert_code]
    with torch.no_grad():
        gate.switch_logits[gate_index, selector] = (bits * 2 - 1) * (gate.gamma / 2 + margin)


@pytest.mark.parametrize("gamma", [1.0, 2.0, 0.5])
def test_smooth_step_values(gamma):
    t = torch.tensor([-gamma, -gamma / 2, -gamma / 4, 0.0, gamma / 4, gamma / 2, gamma, 10 * gamma])
    expected = [0.0, 0.0, 0.15625, 0.5, 0.84375, 1.0, 1.0, 1.0]  # -2u^3 + 3u/2 + 1/2 at u = t/gamma
    torch.testing.assert_close(smooth_step(t, gamma), torch.tensor(expected))


@pytest.mark.parametrize("gamma", [1.0, 3.0])
def test_smooth_step_derivative_is_continuous_at_the_ends(gamma):
    # Outside the transition S' = 0; inside, S'(t) = -6t^2/gamma^3 + 3/(2 gamma), which is 6 eps / gamma^2
    # (to first order) at distance eps from either end, so it falls to 0 as the end is approached.
    for end in (-gamma / 2, gamma / 2):
        for eps in (1e-2, 1e-4, 1e-6):
            inside = torch.tensor(end - math.copysign(eps, end), dtype=torch.float64, requires_grad=True)
            outside = torch.tensor(end + math.copysign(eps, end), dtype=torch.float64, requires_grad=True)
            smooth_step(inside, gamma).backward()
            smooth_step(outside, gamma).backward()
            assert inside.grad.item() == pytest.approx(6 * eps / gamma**2 - 6 * eps**2 / gamma**3)
            assert outside.grad.item() == 0.0
    t = torch.tensor(0.0, requires_grad=True)
    smooth_step(t, gamma).backward()
    assert t.grad.item() == pytest.approx(1.5 / gamma)


def test_selector_distribution_is_the_product_over_bits():
    switches = torch.tensor([0.2, 0.7, 0.9])  # S(z_j), m = 3
    r = selector_distribution(switches, binary_codes(3))
    for code in range(8):
        expected = math.prod(s if (code >> j) & 1 else 1 - s for j, s in enumerate(switches.tolist()))
        assert r[code].item() == pytest.approx(expected)
    assert r.sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize("per_example", [False, True])
@pytest.mark.parametrize("num_experts", [2, 4, 8, 16])
def test_weights_sum_to_one_for_powers_of_two(per_example, num_experts):
    gate = DSelectKGate(5, num_experts, num_gates=3, num_selectors=2, per_example=per_example)
    with torch.no_grad():  # move away from the near-uniform initialisation
        for parameter in gate.parameters():
            parameter.normal_()
    probs = gate(torch.randn(7, 5)).probs
    assert probs.shape == (7, 3, num_experts) and (probs >= 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(7, 3))


def test_gate_matches_the_formula():
    gate = DSelectKGate(4, num_experts=8, num_gates=1, num_selectors=3, gamma=1.5)
    with torch.no_grad():
        gate.switch_logits.uniform_(-1, 1)
        gate.selector_logits.normal_()
    alpha = torch.softmax(gate.selector_logits[0], -1)
    expected = torch.zeros(8)
    for selector in range(3):
        s = smooth_step(gate.switch_logits[0, selector], 1.5)
        for expert in range(8):
            r = math.prod(s[j] if (expert >> j) & 1 else 1 - s[j] for j in range(3))
            expected[expert] += alpha[selector] * r
    torch.testing.assert_close(gate(torch.randn(2, 4)).probs[1, 0], expected)


def test_saturated_selector_is_one_hot_on_its_code():
    gate = DSelectKGate(4, num_experts=8, num_gates=2, num_selectors=1)
    saturate_on(gate, 0, 0, expert_code=5)
    saturate_on(gate, 1, 0, expert_code=2)
    probs = gate(torch.randn(3, 4)).probs
    assert torch.equal(probs[:, 0], torch.nn.functional.one_hot(torch.tensor([5, 5, 5]), 8).float())
    assert torch.equal(probs[:, 1], torch.nn.functional.one_hot(torch.tensor([2, 2, 2]), 8).float())


def test_at_most_k_nonzeros_once_saturated():
    torch.manual_seed(1)
    for num_experts, k in [(8, 2), (16, 3), (6, 4)]:
        gate = DSelectKGate(4, num_experts, num_gates=5, num_selectors=k)
        with torch.no_grad():
            magnitude = gate.gamma / 2 + torch.rand_like(gate.switch_logits)
            gate.switch_logits.copy_(magnitude * torch.randn_like(magnitude).sign())
            gate.selector_logits.normal_()
        probs = gate(torch.randn(2, 4)).probs
        assert ((probs > 0).sum(-1) <= k).all()


def test_zero_gradient_outside_the_transition():
    gate = DSelectKGate(4, num_experts=8, num_gates=1, num_selectors=2)
    with torch.no_grad():
        gate.switch_logits.copy_(torch.tensor([[[0.9, -0.7, 0.1], [0.2, -0.3, 2.0]]]))  # gamma / 2 = 0.5
    probs = gate(torch.randn(1, 4)).probs
    (probs * torch.randn_like(probs)).sum().backward()
    outside = gate.switch_logits.detach().abs() >= 0.5
    assert torch.all(gate.switch_logits.grad[outside] == 0)
    assert torch.all(gate.switch_logits.grad[~outside] != 0)


def test_gamma_changes_the_output():
    gate = DSelectKGate(4, num_experts=8, num_gates=1, num_selectors=2, gamma=1.0)
    other = DSelectKGate(4, num_experts=8, num_gates=1, num_selectors=2, gamma=3.0)
    other.load_state_dict(gate.state_dict())
    with torch.no_grad():
        gate.switch_logits.uniform_(-0.4, 0.4)
        other.switch_logits.copy_(gate.switch_logits)
    x = torch.randn(1, 4)
    assert not torch.allclose(gate(x).probs, other(x).probs)


def test_initialisation_ranges():
    gamma = 2.0
    static = DSelectKGate(4, num_experts=16, num_gates=50, num_selectors=4, gamma=gamma)
    assert static.switch_logits.abs().max() <= gamma / 100 and static.switch_logits.abs().max() > gamma / 200
    assert static.selector_logits.abs().max() <= 0.05 and static.selector_logits.abs().max() > 0.025
    per_example = DSelectKGate(4, num_experts=16, num_gates=50, num_selectors=4, gamma=gamma, per_example=True)
    assert per_example.switch_weight.abs().max() <= gamma / 100
    assert per_example.selector_weight.abs().max() <= 0.05
    assert torch.all(per_example.switch_bias == 0) and torch.all(per_example.selector_bias == 0)


def test_regularizer_entropy_and_unused_codes():
    gate = DSelectKGate(4, num_experts=5, num_gates=2, num_selectors=2, entropy_weight=0.1, unused_code_weight=0.7)
    with torch.no_grad():
        gate.switch_logits.uniform_(-0.4, 0.4)
    selectors = selector_distribution(smooth_step(gate.switch_logits, 1.0), binary_codes(3))  # [G, k, 8]
    entropy = -(selectors * selectors.log()).sum()
    unused = selectors[..., 5:].sum()  # codes 5, 6, 7 name no expert
    output = gate(torch.randn(3, 4))
    torch.testing.assert_close(output.aux_loss, 0.1 * entropy + 0.7 * unused)
    # The gate's total weight is what its selectors put on real experts.
    alpha = torch.softmax(gate.selector_logits, -1)  # [G, k]
    torch.testing.assert_close(output.probs[0].sum(-1), (alpha * selectors[..., :5].sum(-1)).sum(-1))
    gate.eval()
    assert gate(torch.randn(3, 4)).aux_loss is None


def test_saturated_regularizer_has_finite_gradients():
    gate = DSelectKGate(4, num_experts=8, num_gates=1, num_selectors=2, per_example=True)
    with torch.no_grad():
        gate.switch_bias.fill_(3.0)  # every switch saturated: exact zeros in r(z)
    output = gate(torch.randn(6, 4))
    (output.probs.sum() + output.aux_loss).backward()
    assert all(torch.isfinite(p.grad).all() for p in gate.parameters())


def test_per_example_gate_depends_on_the_input_and_reads_per_gate_inputs():
    gate = DSelectKGate(4, num_experts=8, num_gates=2, num_selectors=2, per_example=True)
    with torch.no_grad():
        for parameter in gate.parameters():
            parameter.normal_()
    x = torch.randn(5, 4)
    probs = gate(x).probs
    assert not torch.allclose(probs[0], probs[1])
    torch.testing.assert_close(gate(x.unsqueeze(1).expand(-1, 2, -1)).probs, probs)
    for example in range(5):
        torch.testing.assert_close(gate(x[example : example + 1]).probs[0], probs[example])


def test_masked_gate_selects_among_allowed_experts_in_order():
    mask = torch.tensor([[1, 0, 1, 1, 0], [0, 1, 0, 0, 1]]).bool()
    gate = DSelectKGate(4, num_experts=5, num_gates=2, mask=mask, num_selectors=1)
    saturate_on(gate, 0, 0, expert_code=2)  # third allowed expert of gate 0: expert 3
    saturate_on(gate, 1, 0, expert_code=1)  # second allowed expert of gate 1: expert 4
    probs = gate(torch.randn(1, 4)).probs[0]
    assert torch.equal(probs, torch.tensor([[0, 0, 0, 1, 0], [0, 0, 0, 0, 1]]).float())


def test_router_sums_the_gate_regularizer_into_aux_loss():
    router = TaskRouter(4, RoutingLevel(torch.ones(2, 4, dtype=torch.bool)), [3], gate_type="dselect_k",
                        gate_options={"num_selectors": 2, "entropy_weight": 1.0})
    x = torch.randn(6, 4)
    output = router(x, output_router_probs=True)
    torch.testing.assert_close(output.aux_loss, router.gate(x).aux_loss)
    torch.testing.assert_close(output.mixtures, torch.bmm(output.router_probs, router.experts(x)))
    with pytest.raises(ValueError, match="Unknown gate_type 'top9'"):
        TaskRouter(4, RoutingLevel(torch.ones(2, 4, dtype=torch.bool)), [3], gate_type="top9")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_experts=3, num_selectors=4), r"num_selectors \(k\) = 4 exceeds"),
        (dict(num_experts=4, num_selectors=0), "at least one selector"),
        (dict(num_experts=4, gamma=0.0), "gamma must be positive"),
        (dict(num_experts=4, gamma=-1.0), "gamma must be positive"),
        (dict(num_experts=4, entropy_weight=-1.0), "cannot be negative"),
    ],
)
def test_bad_gate_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DSelectKGate(4, **kwargs)
    with pytest.raises(ValueError, match="gamma must be positive"):
        smooth_step(torch.zeros(2), gamma=0.0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(num_shared_experts=2, num_selectors=3), "exceeds the number of experts"),
        (dict(smooth_step_gamma=0.0), "gamma must be positive"),
        (dict(num_selectors=0), "at least one selector"),
    ],
)
def test_bad_dselect_k_configs_are_named(overrides, message):
    with pytest.raises(Exception, match=message):
        moezoo.DSelectKConfig(**overrides)


def test_model_returns_the_regularizer_in_training_only():
    model = moezoo.create_model("dselect_k_static", input_size=4, num_shared_experts=6, num_selectors=2)
    x, labels = torch.randn(8, 4), torch.randint(0, 2, (8, 2)).float()
    output = model(inputs_embeds=x, labels=labels)
    assert output.aux_loss > 0  # 6 experts on 8 codes: mass on unused codes
    torch.testing.assert_close(output.loss, sum(output.task_losses.values()) + output.aux_loss)
    model.eval()
    output = model(inputs_embeds=x, labels=labels)
    assert output.aux_loss == 0
    torch.testing.assert_close(output.loss, sum(output.task_losses.values()))


def test_static_gates_select_the_ground_truth_experts():
    """The expert-selection experiment at small size: each task is one of 8 frozen experts, k = 2."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from dselect_k_expert_selection import run_expert_selection

    problem = make_expert_selection_problem(
        num_experts=8, num_tasks=8, experts_per_task=1, input_size=32, split_sizes=(2000, 100, 100), seed=0
    )
    result = run_expert_selection(problem, num_selectors=2, num_steps=3000, seed=0)
    assert result.selected == problem.task_experts
    assert result.max_nonzeros <= 2


@pytest.mark.parametrize("per_example", [False, True])
def test_each_gate_addresses_its_experts_with_its_own_bit_width(per_example):
    # Gates allowed 4, 2, 1 and 6 of 8 experts: 2, 1, 0 and 3 bits of their own.
    mask = torch.zeros(4, 8, dtype=torch.bool)
    mask[0, :4] = mask[1, 4:6] = mask[2, 7] = mask[3, 2:] = True
    gate = DSelectKGate(5, 8, num_gates=4, mask=mask, num_selectors=1, per_example=per_example)
    torch.nn.init.uniform_(gate.switch_weight if per_example else gate.switch_logits, -3, 3)
    probs = gate(torch.randn(16, 5)).probs
    sums = probs.sum(dim=-1)
    # Power-of-two counts sum to exactly 1 whatever the switches; the 6-expert gate leaves mass on its
    # two codes that name no expert (the regulariser's business).
    torch.testing.assert_close(sums[:, :3], torch.ones(16, 3))
    assert (sums[:, 3] <= 1 + 1e-6).all()
    assert (probs[~mask.expand(16, -1, -1)] == 0).all()
    # The surplus bits' switches never matter, and are not counted as effective parameters.
    surplus = 1 * ((3 - 2) + (3 - 1) + (3 - 0))
    assert gate.num_unused_parameters() == surplus * (5 + 1 if per_example else 1)


def test_mixed_expert_counts_of_one_level_sum_to_one_at_initialisation():
    # The case: 3 shared experts + 1 per task, 2 levels, 3 tasks. Each task gate of level 0
    # allows 4 experts (2 bits), the shared gate 6 (3 bits).
    model = moezoo.create_model(
        "dselect_k_static", tasks=[{"name": f"t{i}"} for i in range(3)], num_shared_experts=3,
        num_task_experts=1, num_levels=2, input_size=8,
    ).eval()
    level_0, level_1 = model(inputs_embeds=torch.randn(4, 8), output_router_probs=True).router_probs
    torch.testing.assert_close(level_0[:, :3].sum(-1), torch.ones(4, 3))
    torch.testing.assert_close(level_1.sum(-1), torch.ones(4, 3))
