"""M³ViT: task-routed sparse MoE blocks in a ViT, per-example and all-task pathways, dense heads and
their losses, upcycling from a dense transformers ViT, save / load."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import AutoImageProcessor, AutoModel, ViTConfig, ViTModel

import moezoo
from moezoo import M3ViTConfig, M3ViTModel
from moezoo.models.m3vit import image_processor_for

TASKS = [
    {"name": "digit", "kind": "multiclass", "num_labels": 10},
    {"name": "segmentation", "kind": "multiclass", "num_labels": 3},
    {"name": "depth", "kind": "regression"},
]
SMALL = dict(
    hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64, image_size=12, patch_size=4,
    num_experts=6, num_experts_per_tok=2, tasks=TASKS, dense_tasks=["segmentation", "depth"],
)


def small_model(**overrides):
    torch.manual_seed(0)
    return M3ViTModel(M3ViTConfig(**{**SMALL, **overrides})).eval()


def images(batch=5):
    return torch.randn(batch, 1, 12, 12, generator=torch.Generator().manual_seed(1))


def test_config_defaults_follow_the_paper_and_vit():
    config = M3ViTConfig()
    assert config.moe_layers == [1, 3, 5] and config.num_experts == 16 and config.num_experts_per_tok == 4
    assert config.moe_intermediate_size == config.intermediate_size and config.router_aux_loss_coef == 0.01
    whole_numbers = M3ViTConfig(router_noise_std=0, expert_capacity_factor=2)  # as YAML and JSON write them
    assert isinstance(whole_numbers.router_noise_std, float) and isinstance(whole_numbers.expert_capacity_factor, float)
    model = small_model()
    assert [layer.is_moe for layer in model.layers] == [False, True, False, True]
    assert model.layers[1].moe.experts.layers[0].weight.shape == (6, 64, 32)  # [E, out, in], as ExpertBank
    assert "m3vit" in moezoo.list_models()


@pytest.mark.parametrize("conditioning", ["task_routers", "task_embedding"])
def test_each_example_takes_its_own_tasks_pathway(conditioning):
    model = small_model(task_conditioning=conditioning)
    pixels, task_ids = images(), torch.tensor([0, 2, 1, 1, 0])
    mixed, _ = model.encode(pixels, task_ids)
    for index, task in enumerate(task_ids.tolist()):
        alone, _ = model.encode(pixels[index : index + 1], torch.tensor([task]))
        torch.testing.assert_close(mixed[index : index + 1], alone, rtol=1e-5, atol=1e-5)
    # The pathways differ: the same image under another task is routed differently.
    other, _ = model.encode(pixels[:1], torch.tensor([1]))
    assert not torch.allclose(other, mixed[:1])


@pytest.mark.parametrize("conditioning", ["task_routers", "task_embedding"])
def test_all_task_mode_runs_every_image_through_every_tasks_pathway(conditioning):
    model = small_model(task_conditioning=conditioning)
    pixels = images()
    everything = model(pixels).logits
    assert everything["segmentation"].shape == (5, 3, 12, 12) and everything["depth"].shape == (5, 1, 12, 12)
    for index, name in enumerate(model.task_names):
        own = model(pixels, task_ids=torch.full((5,), index)).logits[name]
        torch.testing.assert_close(everything[name], own, rtol=1e-5, atol=1e-5)
        single = model(pixels, tasks=name).logits  # single-task inference: that pathway and head only
        assert list(single) == [name]
        torch.testing.assert_close(single[name], own, rtol=1e-5, atol=1e-5)


def test_all_task_mode_copies_the_batch_after_the_first_moe_blocks_attention():
    # The first MoE block's attention reads the same input for every pathway: it runs once per image, and
    # the copies start at its MLP; blocks after it run once per pathway.
    model = small_model()  # MoE layers 1 and 3 of 4 blocks, three tasks
    attention_batches = {}
    for index, layer in enumerate(model.layers):
        layer.attention.register_forward_hook(
            lambda module, args, output, index=index: attention_batches.__setitem__(index, args[0].shape[0])
        )
    everything = model(images()).logits
    assert attention_batches == {0: 5, 1: 5, 2: 15, 3: 15}
    for index, name in enumerate(model.task_names):  # and every pathway is still its own task's
        torch.testing.assert_close(everything[name], model(images(), task_ids=torch.full((5,), index)).logits[name])


def test_losses_follow_the_formulas_and_count_each_example_for_its_own_task():
    model = small_model()
    pixels = images(4)
    labels = {
        "digit": torch.tensor([3, 1, 4, 1]),
        "segmentation": torch.randint(0, 3, (4, 12, 12)),
        "depth": torch.rand(4, 12, 12),
    }
    labels["segmentation"][0, :6] = -100  # ignored pixels
    output = model(pixels, labels=labels)
    logits = output.logits
    expected = {
        "digit": F.cross_entropy(logits["digit"], labels["digit"]),
        "segmentation": F.cross_entropy(logits["segmentation"], labels["segmentation"], ignore_index=-100),
        "depth": F.mse_loss(logits["depth"].squeeze(1), labels["depth"]),
    }
    for name, value in expected.items():
        torch.testing.assert_close(output.task_losses[name], value)
    torch.testing.assert_close(output.loss, sum(expected.values()) + output.aux_loss)

    task_ids = torch.tensor([1, 1, 0, 2])
    mixed = model(pixels, labels=labels, task_ids=task_ids)
    seg = mixed.logits["segmentation"]
    own = F.cross_entropy(seg[:2], labels["segmentation"][:2], ignore_index=-100)  # examples 0, 1 only
    torch.testing.assert_close(mixed.task_losses["segmentation"], own)
    torch.testing.assert_close(mixed.task_losses["digit"], F.cross_entropy(mixed.logits["digit"][2:3], labels["digit"][2:3]))


def test_training_returns_the_balance_loss_and_trains_experts_and_routers():
    model = small_model().train()
    output = model(images(), labels={"digit": torch.arange(5)})
    assert output.aux_loss > 0
    output.loss.backward()
    moe = model.layers[1].moe
    assert moe.gate.weight.grad.abs().sum() > 0 and moe.experts.layers[0].weight.grad.abs().sum() > 0
    probs = model.eval()(images(), task_ids=torch.zeros(5, dtype=torch.long), output_router_probs=True).router_probs
    assert len(probs) == 2 and probs[0].shape == (5, 10, 6)  # per MoE layer: [B, 1 + patches, E]


def test_task_routers_that_start_equal_route_alike_until_training_parts_them(tmp_path):
    model = small_model(task_routers_start_equal=True)
    for block in model.moe_blocks:
        weight = block.moe.gate.weight  # [tasks, E, d]
        assert all(torch.equal(weight[task], weight[0]) for task in range(1, weight.shape[0]))
    # At initialisation every pathway sends each token to the same experts with the same weights.
    probs = model(images(), output_router_probs=True).router_probs[0].view(3, 5, 10, 6)
    assert torch.equal(probs[1], probs[0]) and torch.equal(probs[2], probs[0])
    independent = small_model().layers[1].moe.gate.weight
    assert not torch.equal(independent[1], independent[0])

    # A step on different tasks' labels parts the routers, and a saved model keeps the parted ones.
    model.train()
    labels = {"digit": torch.arange(5), "depth": torch.randn(5, 12, 12)}
    model(images(), labels=labels).loss.backward()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.grad is not None:
                parameter -= 0.5 * parameter.grad
    trained = model.layers[1].moe.gate.weight.detach().clone()
    assert not torch.equal(trained[1], trained[0])
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert loaded.config.task_routers_start_equal and torch.equal(loaded.layers[1].moe.gate.weight, trained)
    with pytest.raises(StrictDataclassClassValidationError, match="task_routers_start_equal needs task_conditioning='task_routers'"):
        M3ViTConfig(**{**SMALL, "task_conditioning": "task_embedding", "task_routers_start_equal": True})


def test_save_and_load_round_trip(tmp_path):
    model = small_model(task_conditioning="task_embedding")
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is M3ViTModel
    first, second = model(images()).logits, loaded(images()).logits
    for name in first:
        assert torch.equal(first[name], second[name])


@pytest.mark.parametrize("conditioning", ["task_routers", "task_embedding"])
def test_upcycled_model_reproduces_the_dense_vits_hidden_states(conditioning):
    torch.manual_seed(0)
    vit = ViTModel(
        ViTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64, image_size=12,
                  patch_size=4, num_channels=1),
        add_pooling_layer=False,
    ).eval()
    model = M3ViTModel.from_dense(vit, tasks=TASKS, num_experts=6, num_experts_per_tok=2, task_conditioning=conditioning)
    model.eval()
    assert model.config.moe_layers == [1, 3]
    pixels = images()
    dense = vit(pixels).last_hidden_state
    for task in range(3):
        hidden, _ = model.encode(pixels, torch.full((5,), task))
        torch.testing.assert_close(hidden, dense, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"\['hidden_size'\] come from the dense ViT's config"):
        M3ViTModel.from_dense(vit, tasks=TASKS, hidden_size=64)


def test_a_dense_moezoo_vit_upcycles_with_its_heads_and_hidden_states(tmp_path):
    dense = small_model(moe_layers=[], task_conditioning="task_routers")
    dense.save_pretrained(tmp_path)
    tasks = [TASKS[0], TASKS[1], {"name": "edges", "kind": "multiclass", "num_labels": 2}]
    model = M3ViTModel.from_dense(tmp_path, tasks=tasks, dense_tasks=["segmentation", "edges"]).eval()
    assert model.config.moe_layers == [1, 3] and model.config.hidden_size == 32
    pixels = images()
    expected, _ = dense.encode(pixels, torch.zeros(5, dtype=torch.long))
    hidden, _ = model.encode(pixels, torch.ones(5, dtype=torch.long))
    torch.testing.assert_close(hidden, expected, rtol=1e-5, atol=1e-5)
    for name in ("digit", "segmentation"):  # shared tasks keep their trained heads; "edges" starts fresh
        for key, value in dense.heads[name].state_dict().items():
            assert torch.equal(model.heads[name].state_dict()[key], value)
        torch.testing.assert_close(model(pixels).logits[name], dense(pixels).logits[name], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"already has MoE layers \[1, 3\]"):
        M3ViTModel.from_dense(small_model(), tasks=TASKS)


def test_sampled_task_training_runs_one_drawn_pathway_per_image_and_evaluation_runs_all():
    model = small_model(sample_task_in_training=True).train()
    pixels = images(6)
    labels = {"digit": torch.arange(6), "segmentation": torch.zeros(6, 12, 12, dtype=torch.long),
              "depth": torch.rand(6, 12, 12, generator=torch.Generator().manual_seed(2))}
    torch.manual_seed(3)
    sampled = model(pixels, labels=labels)
    torch.manual_seed(3)  # the same draws, then the same router noise
    drawn = M3ViTModel.sampled_task_ids([0, 1, 2], pixels)
    model.config.sample_task_in_training = False
    explicit = model(pixels, labels=labels, task_ids=drawn)
    assert len(set(drawn.tolist())) > 1
    torch.testing.assert_close(sampled.loss, explicit.loss)
    # Each task's labels count where its pathway was drawn: images for "digit", pixels for the dense tasks.
    assert {name: count.item() for name, count in sampled.task_label_counts.items()} == {
        "digit": (drawn == 0).sum().item(), "segmentation": 144 * (drawn == 1).sum().item(),
        "depth": 144 * (drawn == 2).sum().item(),
    }
    # Only the tasks asked for are drawn; without labels, and in evaluation, every pathway runs as before.
    torch.manual_seed(3)
    assert set(M3ViTModel.sampled_task_ids([1, 2], images(64)).tolist()) == {1, 2}
    model.config.sample_task_in_training = True
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(pixels, labels=labels).loss, small_model()(pixels, labels=labels).loss)


def test_pixel_shuffle_heads_predict_each_pixel_from_its_own_patch_token():
    model = small_model(dense_head="pixel_shuffle")
    pixels = images(2)
    with torch.no_grad():
        hidden_states, _ = model.encode(pixels, task_ids=torch.tensor([1, 1]))
        logits = model(pixels, task_ids=torch.tensor([1, 1])).logits["segmentation"]
        per_token = model.heads["segmentation"].classifier(hidden_states[:, 1:])  # [B, 9, 3 * 4 * 4]
    assert logits.shape == (2, 3, 12, 12)
    patch = 4
    for row, column, label in [(0, 0, 0), (5, 11, 2), (11, 6, 1), (7, 3, 0)]:
        token = (row // patch) * 3 + column // patch
        offset = label * patch * patch + (row % patch) * patch + column % patch
        torch.testing.assert_close(logits[:, label, row, column], per_token[:, token, offset])
    # Bilinear heads and pixel-shuffle heads differ in shape: upcycling keeps a dense head only of its own kind.
    dense = small_model(moe_layers=[])
    upcycled = M3ViTModel.from_dense(dense, tasks=TASKS, dense_tasks=["segmentation", "depth"], dense_head="pixel_shuffle")
    assert upcycled.heads["segmentation"].classifier.weight.shape == (48, 32)
    torch.testing.assert_close(upcycled.heads["digit"].weight, dense.heads["digit"].weight)


def test_dense_tasks_train_and_evaluate_through_the_shared_loop(tmp_path):
    from accelerate import Accelerator

    from moezoo.training import TensorDataset, TrainingConfig, evaluate, prepare_eval_loader, train
    from moezoo.training.data import nest_task_labels

    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(48, 1, 12, 12, generator=generator)
    columns = {
        "pixel_values": pixels,
        "labels.digit": torch.randint(0, 10, (48,), generator=generator),
        # Maps the position embeddings can learn: the column's third, and the row.
        "labels.segmentation": (torch.arange(12) // 4).expand(48, 12, 12),
        "labels.depth": (torch.arange(12.0) / 12).view(12, 1).expand(48, 12, 12),
    }
    model = small_model()
    config = TrainingConfig(
        output_dir=str(tmp_path), num_train_epochs=5, per_device_train_batch_size=16, per_device_eval_batch_size=20,
        learning_rate=1e-2, metric_for_best_model="mean_miou",
    )
    accelerator = Accelerator(cpu=True)
    result = train(model, TensorDataset(columns), TensorDataset(columns), config, accelerator)
    first = result.history[0]
    assert result.best_metrics["segmentation/miou"] > first["eval/segmentation/miou"] + 0.2
    assert min(record["eval/depth/mse"] for record in result.history) < first["eval/depth/mse"]

    # Scored batch by batch, the metrics equal those of the whole split at once.
    best = M3ViTModel.from_pretrained(tmp_path / "best").eval()
    metrics = evaluate(best, prepare_eval_loader(best, TensorDataset(columns), accelerator, 20), accelerator)
    with torch.no_grad():
        logits = best(pixels).logits
    rows = logits["segmentation"].permute(0, 2, 3, 1).reshape(-1, 3).argmax(1)
    assert metrics["segmentation/pixel_accuracy"] == pytest.approx(
        (rows == columns["labels.segmentation"].reshape(-1)).float().mean().item(), abs=1e-6
    )
    assert metrics["depth/mse"] == pytest.approx(F.mse_loss(logits["depth"][:, 0], columns["labels.depth"]).item(), rel=1e-4)
    assert metrics["digit/accuracy"] == pytest.approx(
        (logits["digit"].argmax(1) == columns["labels.digit"]).float().mean().item()
    )
    with pytest.raises(ValueError, match=r"both a 'labels' column and per-task label columns \['labels.digit'\]"):
        nest_task_labels({"labels": torch.zeros(2), "labels.digit": torch.zeros(2)})


def test_bad_inputs_and_settings_are_named():
    model = small_model()
    with pytest.raises(ValueError, match=r"pixel_values must be \[batch, 1, 12, 12\], got \[2, 1, 10, 10\]"):
        model(torch.randn(2, 1, 10, 10))
    with pytest.raises(ValueError, match=r"pixel_values must be \[batch, 1, 12, 12\], got \[2, 3, 12, 12\]"):
        model(torch.randn(2, 3, 12, 12))  # RGB into a one-channel model
    with pytest.raises(ValueError, match="pixel_values contains 1 NaN or inf"):
        model(torch.where(torch.arange(144).view(1, 1, 12, 12) == 5, float("nan"), 0.0))
    with pytest.raises(KeyError, match=r"Unknown task\(s\) \['age'\]"):
        model(images(), tasks="age")
    with pytest.raises(ValueError, match=r"task_ids \[3\] are out of range"):
        model(images(2), task_ids=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"Labels for dense task 'segmentation' must be \[batch, 12, 12\]"):
        model(images(), labels={"segmentation": torch.zeros(5, 6, 6, dtype=torch.long)})
    with pytest.raises(ValueError, match="must be class indices in \\[0, 3\\)"):
        model(images(), labels={"segmentation": torch.full((5, 12, 12), 7)})
    with pytest.raises(StrictDataclassClassValidationError, match=r"moe_layers must be distinct block indices in \[0, 4\), got \[1, 4\]"):
        M3ViTConfig(**{**SMALL, "moe_layers": [1, 4]})
    with pytest.raises(StrictDataclassClassValidationError, match="num_experts_per_tok must be between 1 and num_experts=6"):
        M3ViTConfig(**{**SMALL, "num_experts_per_tok": 7})
    with pytest.raises(StrictDataclassClassValidationError, match=r"Dense task 'digit' is binary; dense tasks are \('multiclass', 'regression'\)"):
        M3ViTConfig(**{**SMALL, "tasks": [{"name": "digit", "kind": "binary"}], "dense_tasks": ["digit"]})
    with pytest.raises(StrictDataclassClassValidationError, match="Unknown task_conditioning 'per_task'"):
        M3ViTConfig(**{**SMALL, "task_conditioning": "per_task"})
    with pytest.raises(StrictDataclassClassValidationError, match=r"Unknown dense_head 'pixelshuffle' \(did you mean 'pixel_shuffle'\?\)"):
        M3ViTConfig(**{**SMALL, "dense_head": "pixelshuffle"})
    with pytest.raises(ValueError, match="has no field 'num_expert'"):
        M3ViTConfig(**{**SMALL, "num_expert": 4})
    # A dense checkpoint whose MLP does not fit the experts asked for.
    dense = small_model(moe_layers=[])
    with pytest.raises(ValueError, match="Experts upcycled from the dense MLP need moe_intermediate_size=64, got 32"):
        M3ViTModel.from_dense(dense, tasks=TASKS, moe_intermediate_size=32)


@pytest.mark.parametrize("conditioning", ["task_routers", "task_embedding"])
def test_single_task_export_keeps_the_tasks_experts_and_its_outputs(conditioning, tmp_path):
    model = small_model(task_conditioning=conditioning, num_experts=8)
    batches = [images(4), torch.randn(4, 1, 12, 12, generator=torch.Generator().manual_seed(2))]
    usage = model.expert_usage(batches, "segmentation")
    assert [int(counts.sum()) for counts in usage] == [8 * 10 * 2] * 2  # 8 images x 10 tokens x k = 2
    # Drop the least used experts: some tokens lose one.
    min_tokens = min(int(counts[counts > 0].min()) for counts in usage) + 1
    exported = model.export_single_task("segmentation", batches, min_tokens=min_tokens)
    for counts, kept in zip(usage, exported.kept_experts):
        assert kept == [e for e in range(8) if counts[e] >= min_tokens]
    assert exported.model.config.task_names == ["segmentation"]
    assert exported.model.config.num_experts_per_layer == [len(kept) for kept in exported.kept_experts]

    exported.model.save_pretrained(tmp_path / "single")
    model.save_pretrained(tmp_path / "full")
    single = AutoModel.from_pretrained(tmp_path / "single").eval()
    full_size = (tmp_path / "full" / "model.safetensors").stat().st_size
    assert (tmp_path / "single" / "model.safetensors").stat().st_size < full_size

    # Block by block, on the same tokens: a token whose chosen experts were all kept gets the same output.
    tokens = torch.randn(1, 200, 32, generator=torch.Generator().manual_seed(3))
    some_dropped = False
    for full_block, single_block, kept in zip(model.moe_blocks, single.moe_blocks, exported.kept_experts):
        embeddings = model.task_embedding(torch.tensor([1])) if model.task_embedding is not None else None
        full_output, routing = full_block._mixture(tokens, torch.tensor([1]), embeddings)
        single_output, _ = single_block._mixture(tokens, 0, None)
        untouched = torch.isin(routing.expert_indices, torch.tensor(kept)).all(dim=1)
        some_dropped |= bool((~untouched).any())
        torch.testing.assert_close(single_output[0, untouched], full_output[0, untouched], rtol=1e-5, atol=1e-6)
    assert some_dropped
    assert all(0 <= fraction < 1 for fraction in exported.dropped_token_fraction)
    assert max(exported.dropped_token_fraction) > 0
    pixels = torch.cat(batches)
    exported_all = model.export_single_task("segmentation", batches)  # every used expert: same outputs
    torch.testing.assert_close(
        exported_all.model(pixels).logits["segmentation"], model(pixels, tasks="segmentation").logits["segmentation"],
        rtol=1e-4, atol=1e-5,
    )
    assert exported_all.dropped_token_fraction == [0.0, 0.0]


def test_the_vit_image_processor_is_saved_and_loaded_beside_the_model(tmp_path):
    model = small_model()
    processor = image_processor_for(model.config)
    processor.save_pretrained(tmp_path)
    model.save_pretrained(tmp_path)  # keeps the image processor beside it
    assert (tmp_path / "preprocessor_config.json").is_file()
    for loaded in (AutoImageProcessor.from_pretrained(tmp_path), moezoo.processor_from_pretrained(tmp_path)):
        assert type(loaded) is type(processor)
    raw = np.random.default_rng(0).integers(0, 256, (3, 12, 12, 1), dtype=np.uint8)
    pixels = moezoo.processor_from_pretrained(tmp_path)(list(raw), return_tensors="pt")["pixel_values"]
    expected = (torch.from_numpy(raw).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    torch.testing.assert_close(pixels, expected)
    assert model(pixels).logits["digit"].shape == (3, 10)


def test_the_recipe_trains_a_dense_vit_upcycles_it_and_evaluate_reproduces_it(tmp_path, data_dir, capsys):
    import json
    import sys
    from pathlib import Path

    from moezoo.cli import main as moezoo_main

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
    from train_vit import main as train_vit

    tiny = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32}
    common = ["--max_train_samples", "64", "--max_eval_samples", "48", "--num_train_epochs", "1",
              "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "48"]
    config = "recipes/configs/multi_mnist_m3vit.yaml"
    dense = train_vit([config, *common, "--model_config", json.dumps({**tiny, "moe_layers": []}),
                       "--tasks", "top_left", "pixel_class", "--output_dir", str(tmp_path / "dense")])
    assert set(dense.summary["test"]) >= {"top_left/accuracy", "pixel_class/miou", "pixel_class/pixel_accuracy"}
    upcycled = train_vit([config, *common, "--upcycle_from", str(tmp_path / "dense" / "best"),
                          "--model_config", json.dumps({**tiny, "num_experts": 4, "num_experts_per_tok": 2,
                                                        "moe_layers": [1], "moe_intermediate_size": None}),
                          "--output_dir", str(tmp_path / "upcycled")])
    model = M3ViTModel.from_pretrained(tmp_path / "upcycled" / "best")
    assert model.config.moe_layers == [1] and model.config.hidden_size == 16 and len(model.task_specs) == 4
    assert isinstance(moezoo.processor_from_pretrained(tmp_path / "upcycled" / "best"), type(image_processor_for(model.config)))

    capsys.readouterr()
    assert moezoo_main(["evaluate", str(tmp_path / "upcycled" / "best"), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    for name, value in upcycled.summary["test"].items():
        assert evaluated[name] == pytest.approx(value, abs=1e-6), name


def test_a_checkpoint_moves_to_other_tasks_keeping_experts_routers_and_heads(tmp_path):
    from moezoo.models.transfer import load_for_tasks

    source = small_model()
    source.save_pretrained(tmp_path)
    tasks = [TASKS[1], {"name": "edges", "kind": "multiclass", "num_labels": 2}]  # "digit", "depth" dropped
    with pytest.raises(ValueError, match=r"new or changed: \['edges'\]; not in the data: \['digit', 'depth'\]"):
        load_for_tasks(tmp_path, tasks, config_overrides={"dense_tasks": ["segmentation", "edges"]})
    target = load_for_tasks(tmp_path, tasks, allow_task_changes=True, config_overrides={"dense_tasks": ["segmentation", "edges"]})
    assert target.task_names == ["segmentation", "edges"] and target.dense_tasks == ("segmentation", "edges")
    for layer in (1, 3):
        old, new = source.layers[layer].moe, target.layers[layer].moe
        assert torch.equal(new.experts.layers[0].weight, old.experts.layers[0].weight)  # shared experts
        assert torch.equal(new.gate.weight[0], old.gate.weight[1])  # segmentation's router moved to row 0
        assert not torch.equal(new.gate.weight[1], old.gate.weight[0])  # edges' router is fresh
    pixels = images()
    torch.testing.assert_close(
        target.eval()(pixels, tasks="segmentation").logits["segmentation"],
        source(pixels, tasks="segmentation").logits["segmentation"],
    )
