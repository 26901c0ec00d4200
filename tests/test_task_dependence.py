"""`task_dependence` reads from a model's structure which tasks each block of each parameter serves; each
task's gradient on a random batch is zero exactly where the model says the task does not reach."""

import pytest
import torch

import moezoo
from moezoo import M3ViTConfig, M3ViTModel
from moezoo.adapters import AdaptedTransformerModel
from moezoo.routing import plan_task_dependence, progressive_layered_plan

TASKS = [{"name": name, "kind": "binary"} for name in ("ctr", "cvr", "like")]


def gradient_reach(model, task_losses):
    """Per parameter, Bool [T, R]: the rows of the parameter (viewed as the dependence's [R, -1]) where
    each task's loss has a non-zero gradient."""
    dependence = model.task_dependence()
    names = list(dependence)
    parameters = dict(model.named_parameters())
    reach = {name: torch.zeros_like(uses) for name, uses in dependence.items()}
    for task, loss in enumerate(task_losses):
        gradients = torch.autograd.grad(loss, [parameters[name] for name in names], retain_graph=True, allow_unused=True)
        for name, gradient in zip(names, gradients):
            if gradient is not None:
                rows = dependence[name].shape[1]
                reach[name][task] = gradient.reshape(rows, -1).abs().sum(1) > 0
    return dependence, reach


def test_the_plan_says_which_tasks_each_gate_and_expert_reaches():
    # PLE, two levels, two tasks, one shared and one task expert each.
    (gates_0, experts_0), (gates_1, experts_1) = plan_task_dependence(*progressive_layered_plan(2, 1, 1, num_levels=2))
    assert gates_1.tolist() == [[True, False], [False, True]]
    assert experts_1.tolist() == [[True, True], [True, False], [False, True]]  # shared, task 0's, task 1's
    # Level 0: each task gate feeds its task's next experts and gate; the shared gate feeds the shared expert.
    assert gates_0.tolist() == [[True, False], [False, True], [True, True]]
    assert experts_0.all()  # the shared gate mixes every expert of level 0


@pytest.mark.parametrize(
    "name, config",
    [("shared_bottom", {}), ("omoe", {}), ("mmoe", {}), ("cgc", {"num_task_experts": 1}),
     ("ple", {"num_task_experts": 1, "num_levels": 2}), ("dselect_k", {}), ("dselect_k_static", {}), ("home", {})],
)
def test_routed_models_depend_on_exactly_the_blocks_their_plan_routes(name, config):
    torch.manual_seed(0)
    model = moezoo.create_model(name, tasks=TASKS, input_size=6, **config).double()
    for parameter in model.parameters():
        if not parameter.any():  # a zero-initialised block (HoME's feature-gate) would block every gradient
            parameter.data.normal_(std=0.1)
    inputs = torch.randn(64, 6, dtype=torch.float64)
    output = model(inputs_embeds=inputs, labels=torch.randint(0, 2, (64, 3)).double())
    dependence, reach = gradient_reach(model, [output.task_losses[task["name"]] for task in TASKS])
    assert set(dependence) == {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    for parameter_name, uses in dependence.items():
        assert torch.equal(reach[parameter_name], uses), parameter_name
    # Something is task-only in every architecture (the towers), and something shared (the experts).
    assert any(uses.sum(0).max() == 1 for uses in dependence.values())
    assert any(uses.sum(0).max() == 3 for uses in dependence.values())


def test_m3vit_task_routers_serve_their_task_and_the_trunk_every_task():
    torch.manual_seed(0)
    config = M3ViTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, image_size=8,
                         patch_size=4, num_experts=4, num_experts_per_tok=2, tasks=TASKS, router_noise_std=0)
    model = M3ViTModel(config)
    labels = {task["name"]: torch.randint(0, 2, (16,)).float() for task in TASKS}
    output = model(torch.randn(16, 1, 8, 8), labels=labels)
    dependence, reach = gradient_reach(model, [output.task_losses[task["name"]] for task in TASKS])
    assert torch.equal(dependence["layers.1.moe.gate.weight"], torch.eye(3, dtype=torch.bool))
    assert dependence["layers.1.moe.experts.layers.0.weight"].all() and dependence["embeddings.cls_token"].all()
    for name, uses in dependence.items():
        assert not (reach[name] & ~uses).any(), name  # no gradient where the model says the task does not reach
        if uses.sum(0).max() == 1:
            assert torch.equal(reach[name], uses), name
    embedded = M3ViTModel(M3ViTConfig(**{**config.to_dict(), "task_conditioning": "task_embedding"}))
    assert embedded.task_dependence()["layers.1.moe.gate.weight"].all()


@pytest.mark.parametrize("method", ["multi_head_lora", "mhr"])
def test_adapter_task_routers_serve_their_task_and_the_adapters_every_task(method, tiny_bert_folder):
    tasks = [{"name": name, "kind": "multiclass", "num_labels": 2} for name in ("first", "second")]
    adapter = {"target_modules": ["query", "value"], "r": 2}
    adapter.update({"num_heads": 3, "router": "task"} if method == "multi_head_lora" else {"n_skills": 3, "n_splits": 2})
    torch.manual_seed(0)
    model = AdaptedTransformerModel.from_base(tiny_bert_folder, tasks, method, adapter=adapter)
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data.normal_()  # every path live (LoRA's B starts at zero)
    batch = {"input_ids": torch.randint(0, 50, (8, 5)), "attention_mask": torch.ones(8, 5, dtype=torch.long),
             "task_ids": torch.tensor([0, 1] * 4)}
    output = model(**batch, labels=torch.randint(0, 2, (8, 2)))
    dependence, reach = gradient_reach(model, [output.task_losses[task["name"]] for task in tasks])
    routers = [name for name in dependence if "router" in name]
    assert len(routers) == 4
    for name, uses in dependence.items():
        expected = torch.eye(2, dtype=torch.bool) if name in routers else uses
        assert torch.equal(uses, expected) and torch.equal(reach[name], uses), name
