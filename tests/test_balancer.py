"""TaskBalancer in one process: the loss weightings' surrogate gives the method's gradient, and the gradient
rules combine the tasks' gradients on the shared blocks only, each task-only block keeping its own."""

import pytest
import torch

import moezoo
from moezoo.balancing import TaskBalancer, pcgrad_weights

TASKS = [{"name": "ctr", "kind": "binary"}, {"name": "cvr", "kind": "binary", "weight": 0.5}, {"name": "like", "kind": "binary"}]


def model_and_batch(name="cgc", seed=0):
    torch.manual_seed(seed)
    model = moezoo.create_model(name, tasks=TASKS, input_size=6, num_task_experts=1) if name == "cgc" else \
        moezoo.create_model(name, tasks=TASKS, input_size=6)
    labels = torch.randint(0, 2, (32, 3)).float()
    labels[:5, 1] = float("nan")
    return model, {"inputs_embeds": torch.randn(32, 6), "labels": labels}


def gradients_of(model):
    return {name: parameter.grad.clone() for name, parameter in model.named_parameters() if parameter.grad is not None}


def test_equal_weighting_gives_the_models_own_loss_gradient():
    model, batch = model_and_batch("mmoe")
    model(**batch).loss.backward()
    expected = gradients_of(model)
    model.zero_grad()
    total = TaskBalancer(model, "equal").backward(model(**batch))
    assert total.item() == pytest.approx(model(**batch).loss.item(), rel=1e-6)
    for name, gradient in gradients_of(model).items():
        torch.testing.assert_close(gradient, expected[name], msg=name)
    # A loop of one's own may pass the task losses alone.
    model.zero_grad()
    TaskBalancer(model, "equal").backward(dict(model(**batch).task_losses))
    for name, gradient in gradients_of(model).items():
        torch.testing.assert_close(gradient, expected[name], msg=name)


def test_uncertainty_weighting_scales_each_task_and_learns_its_variance():
    model, batch = model_and_batch("mmoe")
    balancer = TaskBalancer(model, "uncertainty")
    balancer.weighting.log_variances.data = torch.tensor([0.0, 1.0, -0.5])
    output = model(**batch)
    losses = torch.stack([output.task_losses[task["name"]] for task in TASKS])
    task_weights = torch.tensor([1.0, 0.5, 1.0])
    scale = torch.exp(-balancer.weighting.log_variances.detach())
    (scale / 2 * task_weights * losses).sum().backward(retain_graph=True)
    expected = gradients_of(model)
    model.zero_grad()
    balancer.backward(output)
    for name, gradient in gradients_of(model).items():
        torch.testing.assert_close(gradient, expected[name], msg=name)
    torch.testing.assert_close(balancer.weighting.log_variances.grad, (1 - scale * task_weights * losses.detach()) / 2)
    torch.testing.assert_close(balancer.last_weights, (scale / 2 * task_weights).double())


def test_pcgrad_projects_the_shared_blocks_and_leaves_each_tower_its_own_gradient():
    model, batch = model_and_batch("cgc")
    output = model(**batch)
    weights = torch.tensor([1.0, 0.5, 1.0])
    parameters = dict(model.named_parameters())
    per_task = [torch.autograd.grad(weights[index] * output.task_losses[task["name"]], list(parameters.values()),
                                    retain_graph=True, allow_unused=True) for index, task in enumerate(TASKS)]
    per_task = [[g if g is not None else torch.zeros_like(p) for g, p in zip(row, parameters.values())] for row in per_task]
    dependence = model.task_dependence()
    shared = {name: (dependence[name].sum(0) > 1).repeat_interleave(parameter.numel() // dependence[name].shape[1]).view_as(parameter)
              for name, parameter in parameters.items()}
    G = torch.stack([torch.cat([g[index][shared[name]] for index, name in enumerate(parameters)]) for g in per_task]).double()
    balancer = TaskBalancer(model, "pcgrad", seed=3)
    alpha = pcgrad_weights(G @ G.T, torch.Generator().manual_seed(3))
    balancer.backward(output)
    assert (G @ G.T < 0).any()  # conflicts to project
    torch.testing.assert_close(balancer.last_weights, alpha)
    for index, (name, parameter) in enumerate(parameters.items()):
        stacked = torch.stack([g[index] for g in per_task])
        expected = torch.where(shared[name], torch.einsum("k,k...->...", alpha.float(), stacked), stacked.sum(0))
        torch.testing.assert_close(parameter.grad, expected, msg=name)
    # The towers (rows per task) are task-only; the shared experts and their gates' blocks are combined.
    assert not shared["heads.towers.layers.0.weight"].any() and shared["router.levels.0.experts.layers.0.weight"][0].all()


def test_bad_methods_options_and_losses_are_named(tiny_bert_folder):
    model, batch = model_and_batch("mmoe")
    with pytest.raises(ValueError, match=r"Unknown loss balancing method 'pcgard' \(did you mean 'pcgrad'"):
        TaskBalancer(model, "pcgard")
    with pytest.raises(ValueError, match=r"Unknown option 'temprature' for the loss balancing method 'dwa' \(did you mean 'temperature'\?\)"):
        TaskBalancer(model, "dwa", {"temprature": 2.0})
    with pytest.raises(ValueError, match=r"Unknown option 'c' for the loss balancing method 'mgda'; it takes \['representation'\]"):
        TaskBalancer(model, "mgda", {"c": 0.4})
    with pytest.raises(ValueError, match=r"Unknown loss balancing method 'PCGrad' \(did you mean 'pcgrad'"):
        TaskBalancer(model, "PCGrad")  # the paper's spelling finds the method's name
    with pytest.raises(ValueError, match=r"Unknown loss balancing method None; choose one of \['equal'"):
        TaskBalancer(model, None)
    with pytest.raises(ValueError, match=r"Option 'c' of the loss balancing method 'cagrad' must be a finite number, got 'x'"):
        TaskBalancer(model, "cagrad", {"c": "x"})
    for method, name, value in [("cagrad", "c", float("inf")), ("dwa", "temperature", float("nan")), ("famo", "lr", float("inf"))]:
        with pytest.raises(ValueError, match=rf"Option '{name}' of the loss balancing method '{method}' must be a finite number, got {value}"):
            TaskBalancer(model, method, {name: value})
    with pytest.raises(ValueError, match=r"Option 'representation' of the loss balancing method 'mgda' must be true or false, got 1"):
        TaskBalancer(model, "mgda", {"representation": 1})
    with pytest.raises(ValueError, match="CAGrad's c must be >= 0, got -1"):  # a bad value, at construction
        TaskBalancer(model, "cagrad", {"c": -1})
    with pytest.raises(ValueError, match=r"Unknown option 'task_weights' for the loss balancing method 'equal'; it takes no options"):
        TaskBalancer(model, "equal", {"task_weights": [1, 2, 3]})  # the tasks' weights are the model's
    single = moezoo.create_model("mmoe", tasks=TASKS[:1], input_size=6)
    with pytest.raises(ValueError, match="The method 'mgda' compares several tasks' gradients; this model has one task"):
        TaskBalancer(single, "mgda")
    from moezoo.adapters import AdaptedTransformerModel

    frozen = AdaptedTransformerModel.from_base(tiny_bert_folder, [{"name": n, "kind": "binary"} for n in "ab"], "frozen")
    with pytest.raises(ValueError, match="no trainable parameter of this AdaptedTransformerModel serves more than one task"):
        TaskBalancer(frozen, "pcgrad")
    output = model(**batch)
    output.task_losses["cvr"] = output.task_losses["cvr"] * float("nan")
    with pytest.raises(ValueError, match=r"The loss of task\(s\) \['cvr'\] is not finite"):
        TaskBalancer(model, "equal").backward(output)


def test_famo_and_gradnorm_update_from_what_the_step_left():
    model, batch = model_and_batch("mmoe")
    famo = TaskBalancer(model, "famo")
    assert famo.needs_output_after
    output = model(**batch)
    famo.backward(output)
    with pytest.raises(ValueError, match="pass forward_again"):
        famo.after_step()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter -= 0.1 * parameter.grad
    famo.after_step(lambda: model(**batch))
    assert not torch.equal(famo.weighting.logits, torch.zeros(3))

    # GradNorm's norms are of the last shared layer (the paper's W): here the second of two expert layers.
    torch.manual_seed(0)
    model = moezoo.create_model("mmoe", tasks=TASKS, input_size=6, expert_hidden_sizes=[8, 4])
    gradnorm = TaskBalancer(model, "gradnorm")
    output = model(**batch)
    weights = torch.tensor([1.0, 0.5, 1.0])
    last_layer = [dict(model.named_parameters())[f"router.levels.0.experts.layers.1.{name}"] for name in ("weight", "bias")]
    norms = torch.stack([
        torch.cat([g.flatten() for g in torch.autograd.grad(weights[index] * output.task_losses[task["name"]], last_layer,
                                                              retain_graph=True)]).norm()
        for index, task in enumerate(TASKS)
    ])
    gradnorm.backward(output)  # frees the graph
    torch.testing.assert_close(gradnorm._gradient_norms.float(), norms)
    gradnorm.after_step()
    assert gradnorm.weighting.weights.sum().item() == pytest.approx(3.0)
    assert not torch.equal(gradnorm.weighting.weights, torch.ones(3))


def test_task_gradients_batched_and_per_row_agree():
    from moezoo.balancing import task_gradients

    model, batch = model_and_batch("mmoe")
    output = model(**batch)
    rows = [output.task_losses[task["name"]] for task in TASKS]
    parameters = list(model.parameters())
    batched = task_gradients(rows, parameters, batched=True)
    per_row = task_gradients(rows, parameters, batched=False)
    for name, first, second in zip(dict(model.named_parameters()), batched, per_row):
        torch.testing.assert_close(first, second, msg=name)
    # Each row holds its own task's gradient, zeros where the task does not reach (another task's output layer).
    own = torch.autograd.grad(rows[1], parameters, retain_graph=True, allow_unused=True)
    for name, gradient, expected, parameter in zip(dict(model.named_parameters()), per_row, own, parameters):
        torch.testing.assert_close(gradient[1], expected if expected is not None else torch.zeros_like(parameter), msg=name)
    assert not per_row[-1][1].any()  # heads.outputs.<last task>.bias: the third task's alone
    # On the CPU the default is one pass per row (measured faster there).
    assert all(torch.equal(first, second) for first, second in zip(task_gradients(rows, parameters), per_row))


def test_gradnorms_norm_pass_costs_one_backward_pass_of_the_heads():
    """GradNorm's per-task pass to the last shared layer (a ViT's final LayerNorm) reaches back through each
    task's own head only: counted in floating-point operations, a GradNorm step costs an equal-weighting step
    plus one backward pass of the heads (to their input), not one per task (as a pass batched over the tasks,
    or one started from each entry of a stacked tensor of the losses, would)."""
    from torch.utils.flop_counter import FlopCounterMode

    from moezoo.models.m3vit import M3ViTConfig, M3ViTModel

    torch.manual_seed(0)
    tasks = [{"name": "digit", "kind": "multiclass", "num_labels": 10}, {"name": "parity", "kind": "binary"},
             {"name": "size", "kind": "regression"}]
    model = M3ViTModel(M3ViTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
                                   image_size=8, patch_size=4, num_experts=4, num_experts_per_tok=2, tasks=tasks))
    batch = {"pixel_values": torch.randn(6, 1, 8, 8),
             "labels": {"digit": torch.arange(6), "parity": torch.arange(6) % 2, "size": torch.randn(6)}}

    def step_flops(method):
        balancer = TaskBalancer(model, method)
        with FlopCounterMode(display=False) as counter:
            balancer.backward(model(**batch))
        return counter.get_total_flops(), balancer

    equal, _ = step_flops("equal")
    gradnorm, balancer = step_flops("gradnorm")
    assert balancer._gradnorm_layer == ["layernorm.weight", "layernorm.bias"]
    assert balancer._gradient_norms.shape == (3,) and (balancer._gradient_norms > 0).all()
    hidden = []
    handle = model.layernorm.register_forward_hook(lambda module, inputs, output: hidden.append(output))
    output = model(**batch)
    handle.remove()
    with FlopCounterMode(display=False) as counter:
        torch.autograd.grad(sum(output.task_losses.values()), hidden[0])
    heads_backward = counter.get_total_flops()
    assert 0 < gradnorm - equal <= heads_backward


@pytest.mark.parametrize("architecture", ["m3vit", "home"])
def test_famos_second_pass_replays_the_steps_draws_and_leaves_the_buffers(architecture):
    """After a step that changes nothing (learning rate 0), FAMO's second pass must measure the very losses
    of the first: the same sampled tasks (M³ViT's sample_task_in_training) and BatchNorm in the same state
    (HoME's experts). Its logits then stay exactly 0, and the running statistics hold the first pass's
    update only. Without the replay the draws differ and the loss changes."""
    from accelerate import Accelerator

    from moezoo.models.m3vit import M3ViTConfig, M3ViTModel

    torch.manual_seed(0)
    if architecture == "m3vit":
        tasks = [{"name": "digit", "kind": "multiclass", "num_labels": 10}, {"name": "parity", "kind": "binary"}]
        model = M3ViTModel(M3ViTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
                                       image_size=8, patch_size=4, num_experts=4, num_experts_per_tok=2, tasks=tasks,
                                       sample_task_in_training=True))
        batch = {"pixel_values": torch.randn(16, 1, 8, 8), "labels": {"digit": torch.arange(16) % 10, "parity": torch.arange(16) % 2}}
    else:
        model = moezoo.create_model("home", tasks=TASKS, input_size=6)
        _, batch = model_and_batch("mmoe")
    model.train()
    accelerator = Accelerator(cpu=True)
    balancer = TaskBalancer(model, "famo")
    optimizer = torch.optim.SGD([*model.parameters()], lr=0.0)
    with balancer.backward_context(accelerator, model):
        balancer.backward(model(**batch))
    buffers = [buffer.clone() for buffer in model.buffers()]
    optimizer.step()
    random_state = torch.get_rng_state()
    passes = []
    balancer.after_step(lambda: passes.append(model(**batch)) or passes[-1])
    assert torch.equal(balancer.weighting.logits, torch.zeros(len(model.task_names)))
    assert all(torch.equal(buffer, before) for buffer, before in zip(model.buffers(), buffers))
    assert torch.equal(torch.get_rng_state(), random_state)  # the training's random stream goes on untouched
    if architecture == "m3vit":  # a plain second pass draws other tasks: another loss
        with torch.no_grad():
            assert not torch.equal(model(**batch).loss, passes[0].loss)


@pytest.mark.slow
@pytest.mark.xdist_group("two_processes")  # one worker: they share accelerate's rendezvous port
def test_every_method_on_two_processes_equals_one_process_on_the_whole_batches(tmp_path, monkeypatch, capfd):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from moezoo.balancing import METHODS
    from moezoo.cli import main as moezoo_command

    repo = Path(__file__).resolve().parents[1]
    script = repo / "tests" / "scripts" / "balanced_steps.py"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", str(repo))
    assert moezoo_command(["train", "--num_processes", "2", str(script), str(tmp_path)]) == 0, capfd.readouterr().err[-4000:]
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True)
    one, two = (json.loads((tmp_path / f"{count}_processes.json").read_text()) for count in (1, 2))
    assert sorted(one) == sorted(two) == sorted([*METHODS, "mgda_ub", "famo_next_batch"])
    for method in one:
        for name, values in one[method].items():
            # The model's parameters to 1e-6; FAMO's logits follow log-ratios of losses, a little looser.
            tolerance = 1e-6 if not name.startswith("balancer.") else 1e-5
            torch.testing.assert_close(torch.tensor(two[method][name]), torch.tensor(values), atol=tolerance, rtol=0,
                                       equal_nan=True, msg=f"{method}: {name}")


def test_the_training_loop_balances_by_name_and_records_weights_and_gradient_cosines(tmp_path):
    from accelerate import Accelerator

    from moezoo.training import TensorDataset, TrainingConfig, train

    model, batch = model_and_batch("cgc")
    data = TensorDataset({"inputs_embeds": batch["inputs_embeds"].repeat(4, 1), "labels": batch["labels"].repeat(4, 1)})
    config = TrainingConfig(output_dir=str(tmp_path), num_train_epochs=2, per_device_train_batch_size=32,
                            loss_balancing="cagrad", loss_balancing_options='{"c": 0.5}', metric_for_best_model="mean_auc")
    result = train(model, data, data, config, Accelerator(cpu=True))
    record = result.history[-1]
    assert {f"train/task_weight/{task['name']}" for task in TASKS} <= set(record)
    assert {"train/gradient_cosine/ctr|cvr", "train/gradient_cosine/ctr|like", "train/gradient_cosine/cvr|like"} <= set(record)
    assert 0.0 <= record["train/gradient_conflict_rate"] <= 1.0
    assert all(-1.0 <= record[name] <= 1.0 for name in record if name.startswith("train/gradient_cosine/"))

    with pytest.raises(ValueError, match=r"Unknown loss_balancing 'nash' \(did you mean 'nash_mtl'\?\)"):
        TrainingConfig(loss_balancing="nash")
    with pytest.raises(ValueError, match="loss_balancing_options"):
        TrainingConfig(loss_balancing="cagrad", loss_balancing_options="{c: 0.5")
    with pytest.raises(ValueError, match=r"Unknown option 'rescal' for the loss balancing method 'cagrad' \(did you mean 'rescale'\?\)"):
        train(model, data, data, TrainingConfig(output_dir=str(tmp_path / "bad"), loss_balancing="cagrad",
                                                loss_balancing_options='{"rescal": 1}', metric_for_best_model="mean_auc"),
              Accelerator(cpu=True))


def test_transformers_trainer_balances_through_balanced_trainer(tmp_path):
    from datasets import Dataset
    from transformers import TrainingArguments

    from moezoo.balancing import BalancedTrainer

    model, batch = model_and_batch("cgc")
    data = Dataset.from_dict({"inputs_embeds": batch["inputs_embeds"].tolist(), "labels": batch["labels"].tolist()})
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=32, learning_rate=0.1,
                             optim="sgd", lr_scheduler_type="constant", report_to=[], use_cpu=True, save_strategy="no",
                             seed=0, max_grad_norm=0.0)
    reference, _ = model_and_batch("cgc")
    reference.load_state_dict(model.state_dict())
    trainer = BalancedTrainer(model=model, args=args, train_dataset=data, balancer=TaskBalancer(model, "imtl_g"))
    trainer.train()
    # The same three steps by hand: one batch of all 32 rows each time.
    balancer = TaskBalancer(reference, "imtl_g")
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    for _ in range(3):
        balancer.backward(reference(**batch))
        optimizer.step()
        optimizer.zero_grad()
    for (name, trained), by_hand in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(trained, by_hand, msg=name)
    assert trainer.balancer.last_weights.sum() != 3.0  # IMTL-G's weights, not the plain sum

    with pytest.raises(ValueError, match="train with moezoo.training.train instead"):
        BalancedTrainer(model=model, args=args, train_dataset=data, balancer=TaskBalancer(model, "famo"))


def test_mgda_ub_weighs_the_losses_by_the_representations_gradients():
    model, batch = model_and_batch("cgc")
    balancer = TaskBalancer(model, "mgda", {"representation": True})
    output = model(**batch)
    weights = torch.tensor([1.0, 0.5, 1.0])
    losses = torch.stack([output.task_losses[task["name"]] for task in TASKS]) * weights
    representation = balancer._representation
    assert representation.shape == (32, 7, 16)  # the last level's experts: 4 shared, one per task
    rows = torch.stack([torch.autograd.grad(loss, representation, retain_graph=True)[0].flatten() for loss in losses]).double()
    alpha = moezoo.balancing.mgda_weights(rows @ rows.T)
    parameters = dict(model.named_parameters())
    per_task = [torch.autograd.grad(loss, list(parameters.values()), retain_graph=True, allow_unused=True) for loss in losses]
    balancer.backward(output)
    torch.testing.assert_close(balancer.last_weights, alpha)
    owners = {name: torch.where(uses.sum(0) == 1, uses.long().argmax(0), -1) for name, uses in model.task_dependence().items()}
    for index, (name, parameter) in enumerate(parameters.items()):
        stacked = torch.stack([row[index] if row[index] is not None else torch.zeros_like(parameter) for row in per_task])
        blocks = owners[name].repeat_interleave(parameter.numel() // len(owners[name])).view_as(parameter)
        own = stacked.gather(0, blocks.clamp_min(0)[None]).squeeze(0)  # each task-only entry: its task's gradient
        expected = torch.where(blocks >= 0, own, torch.einsum("k,k...->...", alpha.float(), stacked))
        torch.testing.assert_close(parameter.grad, expected, msg=name)
    with pytest.raises(ValueError, match=r"Unknown option 'representation' for the loss balancing method 'pcgrad'; it takes no options"):
        TaskBalancer(model, "pcgrad", {"representation": True})


def test_a_yaml_names_the_method_and_the_flags_override_its_options_key_by_key(tmp_path):
    from moezoo.training import TrainingConfig, parse_config_and_args

    config = tmp_path / "run.yaml"
    config.write_text("loss_balancing: cagrad\nloss_balancing_options:\n  c: 0.4\n  rescale: 2\n")
    (training,) = parse_config_and_args((TrainingConfig,), [str(config), "--loss_balancing_options", '{"c": 0.5}'])
    assert training.loss_balancing == "cagrad" and training.balancing_options() == {"c": 0.5, "rescale": 2}
