import os

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModel

import moezoo

ARCHITECTURES = ["shared_bottom", "omoe", "mmoe", "cgc", "ple", "dselect_k", "dselect_k_static", "home"]


def test_registry_lists_the_family():
    assert set(ARCHITECTURES) <= set(moezoo.list_models())
    with pytest.raises(KeyError, match="Unknown architecture 'moe9000'"):
        moezoo.create_model("moe9000")


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_config_constructible_without_arguments(name):
    config_class, model_class = moezoo.get_model_classes(name)
    config = config_class()
    assert config.model_type == name
    output = model_class(config)(inputs_embeds=torch.randn(3, config.input_size))
    assert set(output.logits) == {"task_0", "task_1"}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_save_pretrained_round_trip_is_bitwise(name, tmp_path, toy_rows, toy_processor, make_toy_model):
    model = make_toy_model(name, expert_normalization="batch_norm")
    batch = toy_processor(toy_rows)
    model.train()
    model(**batch)  # move the BatchNorm running statistics away from their initial values
    model.eval()
    model.save_pretrained(tmp_path)
    assert os.path.isfile(tmp_path / "model.safetensors")

    for loaded in (type(model).from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
        assert type(loaded) is type(model)
        assert loaded.config.to_diff_dict() == model.config.to_diff_dict()
        expected = model(**batch, output_router_probs=True)
        actual = loaded(**batch, output_router_probs=True)
        for task in expected.logits:
            assert torch.equal(actual.logits[task], expected.logits[task])
        assert torch.equal(actual.loss, expected.loss)
        for a, b in zip(actual.router_probs, expected.router_probs):
            assert torch.equal(a, b)
    assert type(AutoConfig.from_pretrained(tmp_path)) is type(model.config)


def test_output_fields(toy_rows, toy_processor, make_toy_model):
    model = make_toy_model("ple")
    batch = toy_processor(toy_rows)
    output = model(**batch, output_router_probs=True)
    assert set(output.task_losses) == {"y1", "y2"}
    assert output.aux_loss.item() == 0.0
    torch.testing.assert_close(output.loss, output.task_losses["y1"] + output.task_losses["y2"])
    # PLE, 2 levels, 4 shared + 2 per task: level 1 has a shared gate, level 2 only the task gates.
    assert [p.shape for p in output.router_probs] == [(64, 3, 8), (64, 2, 8)]
    assert model(**batch).router_probs is None


def test_task_weights_and_selection(toy_rows, toy_processor, make_toy_model):
    model = make_toy_model("mmoe", tasks=[{"name": "y1", "weight": 0.25}, {"name": "y2", "weight": 2.0}])
    output = model(**toy_processor(toy_rows))
    torch.testing.assert_close(output.loss, 0.25 * output.task_losses["y1"] + 2.0 * output.task_losses["y2"])
    only = model(**toy_processor(toy_rows), tasks="y2")
    assert set(only.logits) == {"y2"} and set(only.task_losses) == {"y2"}
    torch.testing.assert_close(only.loss, 2.0 * output.task_losses["y2"])
    with pytest.raises(KeyError, match=r"Unknown task\(s\) \['y3'\]"):
        model(**toy_processor(toy_rows), tasks=["y3"])


def test_missing_labels_do_not_count(toy_rows, toy_processor, make_toy_model):
    model = make_toy_model("mmoe")
    batch = toy_processor(toy_rows)
    labels = batch["labels"].clone()
    labels[:32, 0] = float("nan")
    masked = model(**{**batch, "labels": labels})
    partial = model(
        numeric_features=batch["numeric_features"][32:],
        categorical_features=batch["categorical_features"][32:],
        labels={"y1": batch["labels"][32:, 0]},
    )
    torch.testing.assert_close(masked.task_losses["y1"], partial.task_losses["y1"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(num_shared_experts=0), "at least one expert"),
        (dict(tasks=[{"name": "a"}, {"name": "a"}]), "listed twice"),
        (dict(num_shared_experts=0, num_task_experts=0, num_levels=2), "at least one expert"),
        (dict(expert_hidden_sizes=[]), "expert_hidden_sizes"),
        (dict(expert_normalization="weird"), "Unknown expert_normalization"),
        (dict(num_levels=2, gate_per_task=False), "single shared gate"),
        (dict(features={"numeric": ["a", "a"]}), "more than once"),
        (dict(features={"numeric": ["a"]}, input_size=5), "disagrees with the feature schema"),
    ],
)
def test_bad_configs_are_named(overrides, message):
    with pytest.raises(Exception, match=message):
        moezoo.MMoEConfig(**overrides)


def test_bad_inputs_are_named(toy_rows, toy_processor, make_toy_model):
    model = make_toy_model("mmoe")
    batch = dict(toy_processor(toy_rows))
    numeric = batch["numeric_features"].clone()
    numeric[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf in feature\(s\) \['hours'\]"):
        model(**{**batch, "numeric_features": numeric})
    categorical = batch["categorical_features"].clone()
    categorical[0, 1] = 99
    with pytest.raises(ValueError, match=r"outside the vocabulary of feature\(s\) \['job'\]"):
        model(**{**batch, "categorical_features": categorical})
    with pytest.raises(ValueError, match=r"numeric_features must be \[batch, 2\]"):
        model(**{**batch, "numeric_features": numeric[:, :1]})
    with pytest.raises(ValueError, match=r"shape \[batch, 2\]"):
        model(**{**batch, "labels": batch["labels"][:, :1]})
    with pytest.raises(TypeError, match="dtype torch.bool"):
        model(**{**batch, "labels": batch["labels"].bool()})
    with pytest.raises(KeyError, match="unknown task"):
        model(**{**batch, "labels": {"income": batch["labels"][:, 0]}})


def test_corrupt_or_missing_checkpoints_are_named(tmp_path, make_toy_model):
    model = make_toy_model("mmoe")
    model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    original = weights.read_bytes()

    weights.write_bytes(original[: len(original) // 2])
    with pytest.raises(OSError, match="corrupt or truncated"):
        AutoModel.from_pretrained(tmp_path)

    tensors = load_file_from_bytes(original)
    tensors.pop("heads.outputs.y1.weight")
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(OSError, match=r"missing: \[.heads.outputs.y1.weight.\]"):
        moezoo.MMoEModel.from_pretrained(tmp_path)

    weights.unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(OSError, match="model.safetensors"):
        moezoo.MMoEModel.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="safetensors only"):
        moezoo.MMoEModel.from_pretrained(tmp_path, use_safetensors=False)


def load_file_from_bytes(data: bytes) -> dict:
    from safetensors.torch import load

    return load(data)
