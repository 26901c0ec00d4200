import pytest
import torch
from torch import nn

from moezoo.routing import ExpertBank, RoutingLevel, SoftmaxGate, StackedTaskRouter, TaskRouter, progressive_layered_plan


def loop_experts_from_bank(bank: ExpertBank) -> list[nn.Sequential]:
    """A plain loop of nn.Linear experts holding copies of the bank's weights."""
    experts = []
    for e in range(bank.num_experts):
        layers = []
        for batched in bank.layers:
            linear = nn.Linear(batched.in_features, batched.out_features)
            with torch.no_grad():
                linear.weight.copy_(batched.weight[e])
                linear.bias.copy_(batched.bias[e])
            layers.append(linear)
            if bank.norms is not None:
                layers.append(nn.BatchNorm1d(batched.out_features))
            layers.append(nn.ReLU())
        experts.append(nn.Sequential(*layers))
    return experts


@pytest.mark.parametrize("hidden_sizes", [[16], [32, 8]])
@pytest.mark.parametrize("per_expert_input", [False, True])
@pytest.mark.parametrize("normalization", [None, "batch_norm"])
def test_expert_bank_matches_loop_of_linear_experts(hidden_sizes, per_expert_input, normalization):
    num_experts, batch, dim = 5, 12, 7
    bank = ExpertBank(num_experts, dim, hidden_sizes, normalization=normalization)
    loop = loop_experts_from_bank(bank)
    x = torch.randn(batch, num_experts, dim) if per_expert_input else torch.randn(batch, dim)
    x_bank, x_loop = x.clone().requires_grad_(), x.clone().requires_grad_()

    out_bank = bank(x_bank)
    out_loop = torch.stack([expert(x_loop[:, e] if per_expert_input else x_loop) for e, expert in enumerate(loop)], 1)
    assert out_bank.shape == (batch, num_experts, hidden_sizes[-1])
    torch.testing.assert_close(out_bank, out_loop)

    upstream = torch.randn_like(out_bank)
    (out_bank * upstream).sum().backward()
    (out_loop * upstream).sum().backward()
    torch.testing.assert_close(x_bank.grad, x_loop.grad)
    for layer, batched in enumerate(bank.layers):
        linears = [expert[i] for expert in loop for i in range(len(expert)) if isinstance(expert[i], nn.Linear)]
        per_expert = linears[layer :: len(bank.layers)]
        torch.testing.assert_close(batched.weight.grad, torch.stack([lin.weight.grad for lin in per_expert]))
        torch.testing.assert_close(batched.bias.grad, torch.stack([lin.bias.grad for lin in per_expert]))


def test_expert_bank_rejects_bad_input():
    bank = ExpertBank(3, 4, [5])
    with pytest.raises(ValueError, match=r"\[batch, 4\]"):
        bank(torch.randn(2, 6))
    with pytest.raises(ValueError, match="Per-expert inputs"):
        bank(torch.randn(2, 2, 4))
    with pytest.raises(ValueError, match="at least one expert"):
        ExpertBank(0, 4, [5])
    with pytest.raises(ValueError, match="Unknown expert normalization"):
        ExpertBank(2, 4, [5], normalization="group_norm")


def test_softmax_gate_is_masked_softmax_of_affine_map():
    gate = SoftmaxGate(6, num_experts=4, num_gates=2, mask=torch.tensor([[1, 1, 0, 1], [0, 1, 1, 0]]).bool())
    x = torch.randn(9, 6)
    output = gate(x)
    assert output.aux_loss is None
    probs = output.probs
    for g in range(2):
        logits = x @ gate.weight[g].T + gate.bias[g]
        logits[:, ~gate.mask[g]] = float("-inf")
        torch.testing.assert_close(probs[:, g], torch.softmax(logits, -1))
    assert torch.all(probs[:, 0, 2] == 0) and torch.all(probs[:, 1, [0, 3]] == 0)
    torch.testing.assert_close(probs.sum(-1), torch.ones(9, 2))


def test_gate_with_one_available_expert_is_constant_and_parameter_free():
    gate = SoftmaxGate(6, num_experts=3, num_gates=2, mask=torch.tensor([[1, 0, 0], [0, 0, 1]]).bool())
    assert gate.weight is None and not list(gate.parameters())
    probs = gate(torch.randn(4, 6)).probs
    assert torch.equal(probs, torch.tensor([[1.0, 0, 0], [0, 0, 1]]).expand(4, -1, -1))


def test_empty_mask_row_is_rejected():
    with pytest.raises(ValueError, match=r"rows \[1\] are empty"):
        SoftmaxGate(3, num_experts=2, num_gates=2, mask=torch.tensor([[1, 1], [0, 0]]).bool())


def test_task_router_mixture_follows_mmoe_formula():
    plan, _ = progressive_layered_plan(num_tasks=3, num_shared_experts=4)
    router = TaskRouter(5, plan[0], [6])
    x = torch.randn(8, 5)
    output = router(x, output_router_probs=True)
    experts = router.experts(x)  # [B, E, h]
    expected = torch.einsum("bge,beh->bgh", router.gate(x).probs, experts)
    torch.testing.assert_close(output.mixtures, expected)
    assert output.router_probs.shape == (8, 3, 4)
    assert router(x).router_probs is None


def test_plans_give_the_family_masks():
    mmoe, mmoe_gates = progressive_layered_plan(2, 3)
    assert torch.equal(mmoe[0].mask, torch.ones(2, 3, dtype=torch.bool)) and mmoe_gates.tolist() == [0, 1]
    omoe, omoe_gates = progressive_layered_plan(2, 3, gate_per_task=False)
    assert omoe[0].mask.shape == (1, 3) and omoe_gates.tolist() == [0, 0]
    cgc, _ = progressive_layered_plan(2, num_shared_experts=1, num_task_experts=2)
    assert cgc[0].mask.int().tolist() == [[1, 1, 1, 0, 0], [1, 0, 0, 1, 1]]
    ple, _ = progressive_layered_plan(2, num_shared_experts=1, num_task_experts=1, num_levels=3)
    assert [level.mask.shape for level in ple] == [(3, 3), (3, 3), (2, 3)]
    assert ple[0].mask.int().tolist() == [[1, 1, 0], [1, 0, 1], [1, 1, 1]]
    # Level 2 on: shared experts read the shared gate (index 2), task experts their task's gate.
    assert ple[1].expert_sources.tolist() == [2, 0, 1] and ple[1].gate_sources.tolist() == [0, 1, 2]
    assert ple[2].gate_sources.tolist() == [0, 1]


def test_stacked_router_feeds_each_expert_its_source():
    levels, _ = progressive_layered_plan(2, num_shared_experts=1, num_task_experts=1, num_levels=2)
    stack = StackedTaskRouter(4, levels, [3])
    x = torch.randn(5, 4)
    output = stack(x, output_router_probs=True)
    mixtures, probs = output.mixtures, output.router_probs
    assert output.aux_loss is None  # softmax gates have no auxiliary loss
    first = stack.levels[0](x).mixtures  # [B, 3 gates, h]
    second = stack.levels[1]
    expert_inputs = first[:, [2, 0, 1]]
    expected = torch.einsum("bge,beh->bgh", second.gate(first[:, :2]).probs, second.experts(expert_inputs))
    torch.testing.assert_close(mixtures, expected)
    assert [p.shape for p in probs] == [(5, 3, 3), (5, 2, 3)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_tasks=2, num_shared_experts=0, num_task_experts=0), "at least one expert"),
        (dict(num_tasks=0, num_shared_experts=2), "at least one task"),
        (dict(num_tasks=2, num_shared_experts=2, num_levels=2, gate_per_task=False), "single shared gate"),
    ],
)
def test_bad_plans_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        progressive_layered_plan(**kwargs)


def test_routing_level_checks_source_shapes():
    with pytest.raises(ValueError, match="both be given"):
        RoutingLevel(torch.ones(2, 2, dtype=torch.bool), expert_sources=torch.tensor([0, 1]))
