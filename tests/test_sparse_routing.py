"""Sparse routing: the top-k gate against its formulas, and sparse expert execution against a dense
reference (every expert computed, combined with the same top-k weights), for outputs and gradients."""

import math

import pytest
import torch

from moezoo.routing import ExpertBank, SparseMoE, TopKGate, cv_squared


def dense_reference(bank, inputs, expert_indices, expert_weights, kept=None):
    """Every expert on every token, then the top-k weights scattered into [N, E] and summed."""
    all_outputs = bank(inputs)  # [N, E, out]
    weights = expert_weights if kept is None else expert_weights * kept
    dense_weights = torch.zeros(inputs.shape[0], bank.num_experts).scatter(1, expert_indices, weights)
    return torch.einsum("ne,neo->no", dense_weights, all_outputs)


@pytest.mark.parametrize("output_activation", [False, True])
def test_sparse_execution_matches_the_dense_reference_in_outputs_and_gradients(output_activation):
    torch.manual_seed(0)
    bank = ExpertBank(8, 12, [24, 12], activation="gelu", output_activation=output_activation)
    gate = TopKGate(12, 8, num_experts_per_tok=3, num_gates=2)
    inputs = torch.randn(40, 12, requires_grad=True)
    gate_ids = torch.randint(0, 2, (40,))

    def run(sparse):
        bank.zero_grad()
        gate.zero_grad()
        inputs.grad = None
        routing = gate(inputs, gate_ids)
        if sparse:
            output = bank.forward_sparse(inputs, routing.expert_indices, routing.expert_weights)
        else:
            output = dense_reference(bank, inputs, routing.expert_indices, routing.expert_weights)
        (output * torch.linspace(-1, 1, output.numel()).view_as(output)).sum().backward()
        grads = [inputs.grad.clone()] + [p.grad.clone() for p in [*bank.parameters(), *gate.parameters()]]
        return output.detach(), grads

    gate.eval()  # no noise: both runs route identically
    sparse_output, sparse_grads = run(sparse=True)
    dense_output, dense_grads = run(sparse=False)
    torch.testing.assert_close(sparse_output, dense_output, rtol=1e-5, atol=1e-6)
    for sparse_grad, dense_grad in zip(sparse_grads, dense_grads):
        torch.testing.assert_close(sparse_grad, dense_grad, rtol=1e-5, atol=1e-6)


def test_sparse_execution_computes_only_the_selected_experts(monkeypatch):
    bank = ExpertBank(6, 4, [8, 4], output_activation=False)
    inputs = torch.randn(10, 4)
    indices = torch.tensor([[1, 4]] * 5 + [[4, 1]] * 5)
    computed = []
    original = bank._expert_forward
    first_layer = [weight.data_ptr() for weight in bank.layers[0].weight]

    def recorded(hidden, parameters):
        computed.append((first_layer.index(parameters[0][0].data_ptr()), hidden.shape[0]))
        return original(hidden, parameters)

    monkeypatch.setattr(bank, "_expert_forward", recorded)
    bank.forward_sparse(inputs, indices, torch.full((10, 2), 0.5))
    assert computed == [(1, 10), (4, 10)]  # two experts, each once, on its own tokens


def test_top_k_gate_follows_its_formula():
    torch.manual_seed(0)
    gate = TopKGate(5, 6, num_experts_per_tok=2, num_gates=3, normalize_top_k=False).eval()
    inputs, gate_ids = torch.randn(7, 5), torch.tensor([0, 1, 2, 2, 1, 0, 1])
    routing = gate(inputs, gate_ids)
    for n in range(7):
        g = gate_ids[n]
        probs = torch.softmax(gate.weight[g] @ inputs[n] + gate.bias[g], dim=0)
        torch.testing.assert_close(routing.probs[n], probs)
        top = probs.topk(2)
        assert routing.expert_indices[n].tolist() == top.indices.tolist()
        torch.testing.assert_close(routing.expert_weights[n], top.values)
    assert routing.aux_loss is None and routing.kept is None  # eval mode, no capacity
    # One gate for the whole batch (single-task inference) computes that gate alone, with the same result.
    single = gate(inputs[gate_ids == 1], 1)
    torch.testing.assert_close(single.probs, routing.probs[gate_ids == 1])
    renormalised = TopKGate(5, 6, 2, 3).eval()
    renormalised.load_state_dict(gate.state_dict())
    torch.testing.assert_close(renormalised(inputs, gate_ids).expert_weights.sum(-1), torch.ones(7))


def test_balance_loss_is_cv_squared_of_importance_and_load_per_group():
    torch.manual_seed(0)
    gate = TopKGate(5, 4, num_experts_per_tok=1, num_gates=2, noise_std=0.0, balance_loss_weight=0.5).train()
    inputs, gate_ids = torch.randn(12, 5), torch.tensor([0] * 7 + [1] * 5)
    routing = gate(inputs, gate_ids)
    expected = []
    for g in (0, 1):
        probs = routing.probs[gate_ids == g]
        counts = torch.bincount(probs.argmax(-1), minlength=4).float()
        importance = probs.sum(0)
        cv2 = lambda x: ((x - x.mean()) ** 2).mean() / x.mean() ** 2  # noqa: E731 - the formula, inline
        expected.append(cv2(importance) + cv2(counts))
    torch.testing.assert_close(routing.aux_loss, 0.5 * torch.stack(expected).mean())
    assert float(cv_squared(torch.tensor([3.0, 3.0, 3.0]))) == 0.0


def test_noisy_load_is_the_probability_of_staying_in_the_top_k():
    torch.manual_seed(0)
    gate = TopKGate(3, 5, num_experts_per_tok=2, noise_std=0.3).train()
    inputs = torch.randn(4, 3)
    clean = gate.gate_logits(inputs)
    noisy = clean + 0.3 * torch.randn_like(clean)
    load = gate._smooth_load(clean, noisy)
    normal = torch.distributions.Normal(0.0, 0.3)
    for n in range(4):
        for e in range(5):
            others = torch.cat([noisy[n, :e], noisy[n, e + 1 :]])
            kth_best_other = others.topk(2).values[-1]  # e is in the top 2 iff it beats the 2nd best other
            torch.testing.assert_close(load[n, e], normal.cdf(clean[n, e] - kth_best_other))
    routing = gate(inputs)
    routing.aux_loss.backward()
    assert gate.weight.grad.abs().sum() > 0


def test_capacity_keeps_the_first_tokens_of_each_expert_and_the_sparse_path_skips_the_rest():
    gate = TopKGate(4, 4, num_experts_per_tok=1, noise_std=0.0, capacity_factor=1.0).eval()
    with torch.no_grad():
        gate.weight.zero_()
        gate.bias.copy_(torch.tensor([5.0, 0.0, 0.0, 0.0]))  # every token wants expert 0
    inputs = torch.randn(8, 4)
    routing = gate(inputs)
    capacity = math.ceil(1.0 * 8 * 1 / 4)
    assert routing.kept.squeeze(1).tolist() == [True] * capacity + [False] * (8 - capacity)
    bank = ExpertBank(4, 4, [4], output_activation=False)
    output = bank.forward_sparse(inputs, routing.expert_indices, routing.expert_weights, routing.kept)
    reference = dense_reference(bank, inputs, routing.expert_indices, routing.expert_weights, routing.kept)
    torch.testing.assert_close(output, reference)
    assert output[capacity:].abs().sum() == 0


def test_sparse_moe_reads_a_separate_gate_input():
    torch.manual_seed(0)
    layer = SparseMoE(6, 8, [12, 6], num_experts_per_tok=2, gate_input_size=9).eval()
    tokens, gate_inputs = torch.randn(5, 6), torch.randn(5, 9)
    output = layer(tokens, gate_inputs)
    assert output.hidden_states.shape == (5, 6)
    torch.testing.assert_close(output.routing.probs, layer.gate(gate_inputs).probs)


def test_bad_settings_and_inputs_are_named():
    with pytest.raises(ValueError, match="num_experts_per_tok must be between 1 and the experts available"):
        TopKGate(4, 3, num_experts_per_tok=4)
    with pytest.raises(ValueError, match="capacity_factor must be positive"):
        TopKGate(4, 3, 2, capacity_factor=0)
    gate = TopKGate(4, 3, 2, num_gates=2)
    with pytest.raises(ValueError, match=r"expects \[tokens, 4\] inputs, got \[2, 5\]"):
        gate(torch.randn(2, 5))
    with pytest.raises(ValueError, match="Gate 2 does not exist; this gate has 2"):
        gate(torch.randn(2, 4), 2)
    bank = ExpertBank(3, 4, [4], normalization="batch_norm")
    with pytest.raises(ValueError, match="batch normalisation needs them all"):
        bank.forward_sparse(torch.randn(2, 4), torch.zeros(2, 1, dtype=torch.long), torch.ones(2, 1))
