import pytest
import torch

import moezoo
from moezoo.routing import FeatureGate, RoutingLevel, SelfGate, TaskRouter, hierarchical_plan

THREE_TASKS = [{"name": "a", "kind": "binary"}, {"name": "b", "kind": "binary"}, {"name": "c", "kind": "binary"}]


def as_bool(rows):
    return torch.tensor(rows, dtype=torch.bool)


def test_hierarchical_plan_matches_the_paper_layout():
    # Tasks a, b in group 0 and c in group 1; 2 global experts, 1 per group, 1 per task.
    levels, task_to_gate = hierarchical_plan([0, 0, 1], num_global_experts=2, num_group_experts=1, num_task_experts=1)
    meta, task = levels
    # Meta experts: [global, global, group 0, group 1]; gates: group 0, group 1, global.
    assert torch.equal(meta.mask, as_bool([[1, 1, 1, 0], [1, 1, 0, 1], [1, 1, 1, 1]]))
    assert torch.equal(meta.self_gate_mask, as_bool([[0, 0, 1, 0], [0, 0, 0, 1], [1, 1, 0, 0]]))
    assert meta.expert_sources is None
    # Task experts: [global, global, group 0, group 1, task a, task b, task c]; gates: a, b, c.
    assert torch.equal(task.mask, as_bool([[1, 1, 1, 0, 1, 0, 0], [1, 1, 1, 0, 0, 1, 0], [1, 1, 0, 1, 0, 0, 1]]))
    assert torch.equal(task.self_gate_mask, as_bool([[0, 0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1]]))
    # Global experts read the global meta gate (2); group and task experts and task gates their group's.
    assert task.expert_sources.tolist() == [2, 2, 0, 1, 0, 0, 1]
    assert task.gate_sources.tolist() == [0, 0, 1]
    assert task_to_gate.tolist() == [0, 1, 2]


def test_flat_plan_without_self_gates():
    levels, _ = hierarchical_plan([0, 1], 1, 1, 2, hierarchical=False, self_gates=False)
    assert len(levels) == 1
    (level,) = levels
    assert level.expert_sources is None and level.self_gate_mask is None
    # [global, group 0, group 1, a, a, b, b]
    assert torch.equal(level.mask, as_bool([[1, 1, 0, 1, 1, 0, 0], [1, 0, 1, 0, 0, 1, 1]]))


@pytest.mark.parametrize(
    "groups, counts, message",
    [
        ([0, 2], (1, 1, 1), r"Groups \[1\] have no task"),
        ([0, -1], (1, 1, 1), "numbered from 0"),
        ([0], (1, -1, 1), "cannot be negative"),
        ([0], (0, 0, 1), "Every gate needs an expert"),
    ],
)
def test_hierarchical_plan_rejects_bad_plans(groups, counts, message):
    with pytest.raises(ValueError, match=message):
        hierarchical_plan(groups, *counts)


def test_feature_gate_formula_per_expert():
    gate = FeatureGate(num_experts=3, input_size=5, rank=2)
    x = torch.randn(4, 5)
    # A is zero at initialisation: every expert sees exactly x.
    torch.testing.assert_close(gate(x), x.unsqueeze(1).expand(-1, 3, -1))
    torch.nn.init.normal_(gate.up_weight)
    out = gate(x)
    for k in range(3):
        b_k, a_k = gate.down_weight[k].T, gate.up_weight[k].T  # [d, r], [r, d]
        torch.testing.assert_close(out[:, k], x * 2 * torch.sigmoid(x @ b_k @ a_k))
    # Per-expert inputs: expert k gates its own rows.
    per_expert = torch.randn(4, 3, 5)
    out = gate(per_expert)
    for k in range(3):
        b_k, a_k = gate.down_weight[k].T, gate.up_weight[k].T
        torch.testing.assert_close(out[:, k], per_expert[:, k] * 2 * torch.sigmoid(per_expert[:, k] @ b_k @ a_k))


def test_feature_gate_rejects_bad_rank_and_inputs():
    with pytest.raises(ValueError, match="rank=6.*larger than the input"):
        FeatureGate(2, 5, 6)
    with pytest.raises(ValueError, match="rank=0"):
        FeatureGate(2, 5, 0)
    with pytest.raises(ValueError, match=r"\[batch, 5\]"):
        FeatureGate(2, 5, 2)(torch.randn(3, 4))


def test_self_gate_sigmoid_for_one_expert_softmax_for_several_zero_for_none():
    owned = as_bool([[0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]])
    gate = SelfGate(input_size=6, num_experts=4, num_gates=3, mask=owned)
    x = torch.randn(5, 6)
    probs = gate(x).probs
    logits = torch.einsum("bd,ged->bge", x, gate.weight) + gate.bias
    expected = torch.zeros(5, 3, 4)
    expected[:, 0, 1] = torch.sigmoid(logits[:, 0, 1])
    expected[:, 1, 2:] = torch.softmax(logits[:, 1, 2:], dim=-1)
    torch.testing.assert_close(probs, expected)
    # A self-gate over no experts at all holds no parameters and adds nothing.
    empty = SelfGate(6, 4, 2, mask=torch.zeros(2, 4, dtype=torch.bool))
    assert empty.weight is None and not empty(x).probs.any()


def test_router_adds_the_self_gated_experts_to_the_mixture():
    mask, owned = as_bool([[1, 1, 1], [1, 0, 1]]), as_bool([[0, 1, 0], [0, 0, 1]])
    router = TaskRouter(4, RoutingLevel(mask, self_gate_mask=owned), [3], feature_gate_rank=2)
    torch.nn.init.normal_(router.feature_gate.up_weight)
    x = torch.randn(6, 4)
    expert_outputs = router.experts(router.feature_gate(x))
    expected = router.gate(x).probs @ expert_outputs + router.self_gate(x).probs @ expert_outputs
    torch.testing.assert_close(router(x).mixtures, expected)


def make_home(**overrides):
    config = {"tasks": THREE_TASKS, "task_groups": {"ab": ["a", "b"], "c": ["c"]}, "input_size": 10, **overrides}
    return moezoo.create_model("home", **config)


def test_home_experts_are_linear_batchnorm_swish():
    model = make_home()
    bank = model.router.levels[0].experts
    assert bank.norms is not None
    x = torch.randn(16, bank.num_experts, 10)
    model.train()
    layer, norm = bank.layers[0], bank.norms[0]
    expected = []
    for e in range(bank.num_experts):
        hidden = x[:, e] @ layer.weight[e].T + layer.bias[e]
        size = layer.out_features
        mean, var = hidden.mean(0), hidden.var(0, unbiased=False)
        normed = (hidden - mean) / torch.sqrt(var + norm.eps)
        normed = normed * norm.weight[e * size : (e + 1) * size] + norm.bias[e * size : (e + 1) * size]
        expected.append(normed * torch.sigmoid(normed))
    torch.testing.assert_close(bank(x), torch.stack(expected, 1), rtol=1e-4, atol=1e-5)


def test_home_routes_each_group_through_its_own_meta_gate():
    # Without global experts, task c sees only group c's meta output: group ab's meta expert cannot
    # change its logits, while it changes a's and b's.
    model = make_home(num_global_experts=0, num_group_experts=2).eval()
    x = torch.randn(8, 10)
    before = model(inputs_embeds=x).logits
    meta_experts = model.router.levels[0].experts.layers[0]
    with torch.no_grad():
        meta_experts.weight[:2] += 1.0  # the two experts of group "ab"
    after = model(inputs_embeds=x).logits
    torch.testing.assert_close(after["c"], before["c"])
    assert not torch.allclose(after["a"], before["a"]) and not torch.allclose(after["b"], before["b"])


@pytest.mark.parametrize(
    "overrides, absent",
    [
        ({"expert_normalization": None, "expert_activation": "relu"}, "norms"),
        ({"hierarchical": False}, "meta level"),
        ({"feature_gate_rank": None}, "feature_gate"),
        ({"self_gate": False}, "self_gate"),
    ],
)
def test_each_home_component_switches_off(overrides, absent):
    full, ablated = make_home(), make_home(**overrides)
    levels = ablated.router.levels
    if absent == "norms":
        assert all(level.experts.norms is None for level in levels)
        assert isinstance(levels[0].experts.activation, torch.nn.ReLU)
    elif absent == "meta level":
        assert len(levels) == 1 and len(full.router.levels) == 2
    else:
        assert all(getattr(level, absent) is None for level in levels)
        assert getattr(full.router.levels[0], absent) is not None
    output = ablated(inputs_embeds=torch.randn(4, 10), labels=torch.randint(0, 2, (4, 3)).float())
    assert torch.isfinite(output.loss)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"task_groups": {"ab": ["a", "b"]}}, r"Tasks \['c'\] are in no group"),
        ({"task_groups": {"ab": ["a", "b"], "c": ["c"], "spare": []}}, "'spare' has no tasks"),
        ({"task_groups": {"ab": ["a", "b"], "bc": ["b", "c"]}}, "Task 'b' is in task groups 'ab' and 'bc'"),
        ({"task_groups": {"ab": ["a", "b", "z"], "c": ["c"]}}, "names 'z', which is not a task"),
        ({"task_groups": {}}, "task_groups is empty"),
        ({"feature_gate_rank": 11}, "feature_gate_rank=11 must be between 1 and the input size 10"),
        ({"num_global_experts": 0, "num_group_experts": 0}, "Every gate needs an expert"),
    ],
)
def test_bad_home_configs_are_named(overrides, message):
    # huggingface_hub's strict dataclasses wrap a validator's ValueError, keeping its message.
    with pytest.raises(Exception, match=message):
        make_home(**overrides)


def test_home_trains_and_diagnostics_see_every_expert_bank():
    torch.manual_seed(0)
    model = make_home()
    x = torch.randn(256, 10)
    labels = torch.stack([(x[:, 0] > 0), (x[:, 1] > 0), (x[:, 0] + x[:, 2] > 0)], 1).float()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = model(inputs_embeds=x, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.5 * first
    with moezoo.routing.RoutingStatistics(model.eval()) as stats:
        model(inputs_embeds=x)
    rates = stats.zero_activation_rate()
    # Swish is zero only at 0, so BatchNorm + Swish experts never output exact zeros.
    for name in ("router.levels.0.experts", "router.levels.1.experts"):
        assert rates[name].shape == (model.router.levels[int(name.split(".")[2])].experts.num_experts,)
        assert rates[name].max() == 0
    assert set(stats.mean_gate_weights()) == {"router.levels.0", "router.levels.1"}


def test_task_groups_map_to_the_same_experts_after_save_and_load(tmp_path):
    # The config JSON sorts keys, so "zeta" comes after "alpha" on disk although it comes first here.
    model = make_home(task_groups={"zeta": ["a", "b"], "alpha": ["c"]}).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_()  # asymmetric weights, so a swapped group would show
    model.save_pretrained(tmp_path)
    loaded = moezoo.HoMEModel.from_pretrained(tmp_path).eval()
    x = torch.randn(8, 10)
    expected, actual = model(inputs_embeds=x).logits, loaded(inputs_embeds=x).logits
    for task in expected:
        assert torch.equal(actual[task], expected[task]), task
    assert torch.equal(loaded.router.levels[1].gate_sources, model.router.levels[1].gate_sources)


def test_home_without_task_experts_has_no_task_level_self_gate():
    model = make_home(num_task_experts=0)
    assert model.router.levels[0].self_gate is not None and model.router.levels[1].self_gate is None
    output = model(inputs_embeds=torch.randn(4, 10), labels=torch.randint(0, 2, (4, 3)).float())
    assert torch.isfinite(output.loss)
