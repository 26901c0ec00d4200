import pytest
import torch

import moezoo
from moezoo.routing import RoutingStatistics


@pytest.mark.parametrize("name", ["mmoe", "ple", "dselect_k"])
def test_statistics_match_a_direct_computation(name):
    model = moezoo.create_model(name, input_size=6, expert_hidden_sizes=[5]).eval()
    batches = [torch.randn(7, 6), torch.randn(9, 6)]
    with RoutingStatistics(model) as stats:
        for x in batches:
            model(inputs_embeds=x)
    x = torch.cat(batches)
    first_level = model.router.levels[0]
    experts = first_level.experts(x)  # [B, E, h]
    expected_zeros = (experts == 0).double().mean(dim=(0, 2))
    torch.testing.assert_close(stats.zero_activation_rate()["router.levels.0.experts"], expected_zeros)
    assert 0 < expected_zeros.mean() < 1  # ReLU experts: some zeros, not all
    probs = model(inputs_embeds=x, output_router_probs=True).router_probs
    for level, level_probs in enumerate(probs):
        torch.testing.assert_close(
            stats.mean_gate_weights()[f"router.levels.{level}"], level_probs.double().mean(dim=0)
        )
    assert "heads.towers" in stats.zero_activation_rate()  # task towers are expert banks too
    # Detached on exit: further batches change nothing.
    before = stats.zero_activation_rate()["router.levels.0.experts"].clone()
    model(inputs_embeds=torch.randn(50, 6))
    torch.testing.assert_close(stats.zero_activation_rate()["router.levels.0.experts"], before)


def test_batch_norm_swish_experts_have_no_zero_outputs():
    relu = moezoo.create_model("mmoe", input_size=6)
    swish = moezoo.create_model("mmoe", input_size=6, expert_activation="silu", expert_normalization="batch_norm")
    x = torch.randn(64, 6)
    rates = {}
    for key, model in (("relu", relu), ("swish", swish)):
        with RoutingStatistics(model) as stats:
            model(inputs_embeds=x)
        rates[key] = stats.zero_activation_rate()["router.levels.0.experts"]
    assert rates["relu"].min() > 0.1 and torch.all(rates["swish"] == 0)


def test_statistics_reset_and_reject_models_without_routing():
    model = moezoo.create_model("mmoe", input_size=6)
    stats = RoutingStatistics(model)
    model(inputs_embeds=torch.randn(4, 6))
    stats.reset()
    assert stats.zero_activation_rate() == {} and stats.mean_gate_weights() == {}
    stats.remove()
    with pytest.raises(ValueError, match="no ExpertBank or TaskRouter"):
        RoutingStatistics(torch.nn.Linear(2, 2))


def test_effective_parameters_leave_out_masked_gate_weights():
    # CGC, 2 tasks, 1 shared + 1 per task expert: each task gate masks the other task's expert.
    model = moezoo.create_model("cgc", input_size=6, num_shared_experts=1, num_task_experts=1)
    gate = model.router.levels[0].gate
    assert gate.weight.shape == (2, 3, 6)
    masked_pairs = 2  # (task 0, expert of task 1) and (task 1, expert of task 0)
    total = sum(p.numel() for p in model.parameters())
    assert moezoo.routing.effective_num_parameters(model) == total - masked_pairs * (6 + 1)
    # A masked weight really is unused: it gets no gradient.
    model(inputs_embeds=torch.randn(4, 6), labels=torch.ones(4, 2)).loss.backward()
    assert gate.weight.grad[0, 2].abs().sum() == 0 and gate.weight.grad[1, 1].abs().sum() == 0
    assert gate.weight.grad[0, 1].abs().sum() > 0
    mmoe = moezoo.create_model("mmoe", input_size=6)
    assert moezoo.routing.effective_num_parameters(mmoe) == sum(p.numel() for p in mmoe.parameters())
