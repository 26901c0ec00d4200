"""Multi-head LoRA as a PEFT tuner: formula, router, balance loss, save / load, task routing, bad configs."""

import pytest
import torch
from peft import PeftConfig, PeftModel, get_peft_model
from transformers import BertConfig, BertModel, GPT2Config, GPT2Model

import moezoo  # noqa: F401  (registers the tuner with PEFT)
from moezoo.adapters import MultiHeadLoraConfig, MultiHeadLoraLinear, TaskRouting, balance_loss
from moezoo.routing import cv_squared

BERT = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)


def bert(seed=0):
    torch.manual_seed(seed)
    return BertModel(BERT)


def tokens(batch=3, length=6):
    return torch.randint(0, 50, (batch, length), generator=torch.Generator().manual_seed(1))


def test_the_layer_computes_the_formula_and_its_router_weights_sum_to_one():
    model = get_peft_model(bert(), MultiHeadLoraConfig(target_modules=["query"], r=4, num_heads=3, lora_alpha=8,
                                                       head_init="random"))
    layer = model.base_model.model.encoder.layer[0].attention.self.query
    assert isinstance(layer, MultiHeadLoraLinear)
    torch.nn.init.normal_(layer.mhlora_router["default"].weight)  # a non-uniform router
    x = torch.randn(2, 5, 16)
    weights = layer.head_weights("default", x, None)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 5))
    A, B = layer.mhlora_A["default"], layer.mhlora_B["default"]
    expected = layer.base_layer(x) + (8 / 4) * sum(weights[..., i : i + 1] * (x @ A.T @ B[i].T) for i in range(3))
    torch.testing.assert_close(layer(x), expected)


def test_zero_heads_start_as_the_base_model_and_the_balance_loss_follows_its_formula():
    base = bert().eval()
    for module in base.modules():  # no dropout: the same forward in training mode
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    inputs = tokens()
    reference = base(input_ids=inputs).last_hidden_state
    model = get_peft_model(base, MultiHeadLoraConfig(target_modules=["query", "value"], num_heads=4, balance_loss_weight=0.5))
    torch.testing.assert_close(model(input_ids=inputs).last_hidden_state, reference)
    layers = [module for module in model.modules() if isinstance(module, MultiHeadLoraLinear)]
    for layer in layers:
        torch.nn.init.normal_(layer.mhlora_router["default"].weight)
    model.train()
    model(input_ids=inputs)
    assert all(layer.balance_loss is not None for layer in layers)
    total = balance_loss(model)
    assert total is not None and total > 0
    # One layer by hand: 0.5 * cv^2 of the heads' mean weights over the tokens it saw.
    captured = {}
    first = layers[0]
    handle = first.register_forward_hook(lambda module, args, output: captured.setdefault("x", args[0]))
    model(input_ids=inputs)
    handle.remove()
    weights = first.head_weights("default", captured["x"], None)
    expected = 0.5 * cv_squared(weights.reshape(-1, 4).mean(0))
    torch.testing.assert_close(first.balance_loss, expected)
    total.backward()
    assert first.mhlora_router["default"].weight.grad.abs().sum() > 0
    model.eval()
    model(input_ids=inputs)
    assert balance_loss(model) is None  # training only


@pytest.mark.parametrize("router", ["token", "task"])
def test_save_and_load_with_peft_give_identical_outputs(tmp_path, router):
    config = MultiHeadLoraConfig(target_modules=["query", "value"], num_heads=3, head_init="random", router=router,
                                 num_tasks=3 if router == "task" else None)
    model = get_peft_model(bert(), config).eval()
    routing = TaskRouting(3)
    if router == "task":
        routing.attach(model, MultiHeadLoraLinear)
        routing.set(torch.tensor([0, 2, 1]))
    expected = model(input_ids=tokens()).last_hidden_state
    model.save_pretrained(tmp_path)
    assert PeftConfig.from_pretrained(tmp_path).peft_type == "MULTI_HEAD_LORA"
    loaded = PeftModel.from_pretrained(bert(), tmp_path).eval()
    assert isinstance(loaded.peft_config["default"], MultiHeadLoraConfig)
    if router == "task":
        routing.detach()
        routing.attach(loaded, MultiHeadLoraLinear)
    assert torch.equal(loaded(input_ids=tokens()).last_hidden_state, expected)


def test_task_routing_reaches_gpt2_layers_through_gradient_checkpointing():
    torch.manual_seed(0)
    gpt2 = GPT2Model(GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=32, resid_pdrop=0.0,
                                embd_pdrop=0.0, attn_pdrop=0.0))
    model = get_peft_model(gpt2, MultiHeadLoraConfig(target_modules=["c_attn"], router="task", num_tasks=2, head_init="random"))
    routing = TaskRouting(2)
    routing.attach(model, MultiHeadLoraLinear)
    inputs, task_ids = tokens(), torch.tensor([1, 0, 1])

    def gradients():
        model.zero_grad()
        routing.set(task_ids)
        model(input_ids=inputs).last_hidden_state.pow(2).sum().backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    model.train()
    plain = gradients()
    model.base_model.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    checkpointed = gradients()
    assert plain.keys() == checkpointed.keys() and any("mhlora_router" in name for name in plain)
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, msg=name)


def test_bad_configs_and_inputs_are_named():
    with pytest.raises(ValueError, match="num_heads must be a positive integer, got 0"):
        MultiHeadLoraConfig(num_heads=0)
    with pytest.raises(ValueError, match="r must be a positive integer, got 0"):
        MultiHeadLoraConfig(r=0)
    with pytest.raises(ValueError, match="router='task' needs num_tasks"):
        MultiHeadLoraConfig(router="task")
    with pytest.raises(ValueError, match="Unknown router 'expert'"):
        MultiHeadLoraConfig(router="expert")
    with pytest.raises(ValueError, match="Target modules {'querry'} not found"):
        get_peft_model(bert(), MultiHeadLoraConfig(target_modules=["querry"]))
    model = get_peft_model(bert(), MultiHeadLoraConfig(target_modules=["query"], router="task", num_tasks=2))
    with pytest.raises(ValueError, match="routes by task: pass task_ids"):
        model(input_ids=tokens())


def train_two_tasks_apart(model, routing, steps=100):
    """Adam on the adapter alone: the same kind of inputs, task 0 pushing the first half of the pooled hidden
    state up and task 1 the second half (orthogonal targets, so the two tasks' gradients differ in direction)."""
    optimizer = torch.optim.Adam([parameter for parameter in model.parameters() if parameter.requires_grad], lr=3e-2)
    generator = torch.Generator().manual_seed(2)
    task_ids = torch.tensor([0, 1] * 4)
    target = torch.zeros(8, 16)
    target[task_ids == 0, :8] = 2.0
    target[task_ids == 1, 8:] = 2.0
    losses = []
    for _ in range(steps):
        routing.set(task_ids)
        pooled = model(input_ids=torch.randint(0, 50, (8, 6), generator=generator)).last_hidden_state.mean(1)
        loss = ((pooled - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def head_similarity_and_router_shift(layers, start):
    """The mean cosine similarity between a layer's heads (averaged over layers), and the largest change of a
    task's head weight since ``start``."""
    similarities, shifts = [], []
    for layer, weights_at_start in zip(layers, start):
        heads = layer.mhlora_B["default"].detach().flatten(1)
        pairs = [(i, j) for i in range(len(heads)) for j in range(i + 1, len(heads))]
        similarities += [torch.cosine_similarity(heads[i], heads[j], dim=0).item() for i, j in pairs]
        weights = torch.softmax(layer.mhlora_router["default"].weight.detach(), dim=-1)
        shifts.append((weights - weights_at_start).abs().max().item())
    return sum(similarities) / len(similarities), max(shifts)


@pytest.mark.parametrize("symmetric_start", [False, True])
def test_tasks_with_different_targets_train_the_heads_apart(symmetric_start):
    """HydraLoRA's random router breaks the symmetry of zero heads: the heads part and the task routers move.
    Started uniform over zero heads (the config refuses that; forced here), nothing ever moves them apart."""
    config = BertConfig(**{**BERT.to_dict(), "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})
    torch.manual_seed(0)
    model = get_peft_model(BertModel(config), MultiHeadLoraConfig(target_modules=["query", "value"], r=4, num_heads=3,
                                                                 router="task", num_tasks=2))
    routing = TaskRouting(2)
    routing.attach(model, MultiHeadLoraLinear)
    layers = [module for module in model.modules() if isinstance(module, MultiHeadLoraLinear)]
    for layer in layers:
        assert torch.equal(layer.mhlora_B["default"], torch.zeros_like(layer.mhlora_B["default"]))
        if symmetric_start:
            torch.nn.init.zeros_(layer.mhlora_router["default"].weight)
    start = [torch.softmax(layer.mhlora_router["default"].weight.detach().clone(), dim=-1) for layer in layers]
    assert symmetric_start or min((weights - 1 / 3).abs().max().item() for weights in start) > 0.05

    losses = train_two_tasks_apart(model, routing)
    similarity, shift = head_similarity_and_router_shift(layers, start)
    if symmetric_start:  # one LoRA in three copies, blind to the task: it cannot serve both targets
        assert similarity == pytest.approx(1.0, abs=1e-6) and shift == 0.0
        assert losses[-1] > 0.7 * losses[0]
    else:
        assert similarity < 0.8 and shift > 0.2
        assert losses[-1] < 0.6 * losses[0]


def test_random_router_initialisation_is_the_default_and_a_symmetric_start_is_refused():
    model = get_peft_model(bert(), MultiHeadLoraConfig(target_modules=["query"], num_heads=3, router="task", num_tasks=2))
    layer = model.base_model.model.encoder.layer[0].attention.self.query
    logits = layer.mhlora_router["default"].weight
    assert logits.std() > 0.3  # N(0, 1) logits
    token = get_peft_model(bert(), MultiHeadLoraConfig(target_modules=["query"], num_heads=3))
    router = token.base_model.model.encoder.layer[0].attention.self.query.mhlora_router["default"]
    bound = 1 / 16**0.5  # nn.Linear's Kaiming uniform bound for 16 inputs
    assert 0 < router.weight.abs().max() <= bound and torch.equal(router.bias, torch.zeros(3))
    uniform = get_peft_model(bert(), MultiHeadLoraConfig(target_modules=["query"], num_heads=3, router_init="uniform",
                                                         head_init="random"))
    assert torch.equal(uniform.base_model.model.encoder.layer[0].attention.self.query.mhlora_router["default"].weight,
                       torch.zeros(3, 16))
    with pytest.raises(ValueError, match="never trains the heads apart"):
        MultiHeadLoraConfig(router_init="uniform")
    with pytest.raises(ValueError, match="Unknown router_init 'zeros'"):
        MultiHeadLoraConfig(router_init="zeros")
