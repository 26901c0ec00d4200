"""Single-task export: a task's update merged into the base weights gives the adapted model's outputs."""

import pytest
import torch
from peft import PolyConfig, get_peft_model
from peft.tuners.poly.layer import Linear as PolyLinear
from transformers import BertConfig, BertModel, GPT2Config, GPT2Model

from moezoo.adapters import MultiHeadLoraConfig, MultiHeadLoraLinear, TaskRouting, merge_task


def tiny_bert():
    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=32)).eval()


def tiny_gpt2():
    torch.manual_seed(0)
    return GPT2Model(GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=32)).eval()


ADAPTERS = {
    "mhr_bert": (tiny_bert, PolyConfig(target_modules=["query", "value"], n_tasks=3, n_skills=4, n_splits=2, r=2,
                                       init_weights=False), PolyLinear),
    "multi_head_bert": (tiny_bert, MultiHeadLoraConfig(target_modules=["query", "value"], router="task", num_tasks=3,
                                                       head_init="random"), MultiHeadLoraLinear),
    "multi_head_gpt2": (tiny_gpt2, MultiHeadLoraConfig(target_modules=["c_attn"], router="task", num_tasks=3,
                                                       head_init="random"), MultiHeadLoraLinear),
}


@pytest.mark.parametrize("name", ADAPTERS)
def test_a_merged_task_model_equals_the_adapted_model_on_that_task(name):
    build, config, layer_type = ADAPTERS[name]
    model = get_peft_model(build(), config).eval()
    for module in model.modules():  # routers away from their uniform start
        for attribute in ("module_logits",):
            if hasattr(module, attribute):
                torch.nn.init.normal_(getattr(module, attribute))
        if isinstance(module, MultiHeadLoraLinear):
            torch.nn.init.normal_(module.mhlora_router["default"].weight)
    routing = TaskRouting(3)
    routing.attach(model, layer_type)
    tokens = torch.randint(0, 50, (2, 6), generator=torch.Generator().manual_seed(1))
    outputs = []
    for task in range(3):
        routing.set(torch.full((2,), task))
        adapted = model(input_ids=tokens).last_hidden_state
        merged = merge_task(model, task)
        assert not any(isinstance(module, layer_type) for module in merged.modules())
        torch.testing.assert_close(merged(input_ids=tokens).last_hidden_state, adapted, rtol=1e-4, atol=1e-5)
        outputs.append(adapted)
    assert not torch.allclose(outputs[0], outputs[1])  # the tasks differ, so the test can fail
    routing.set(torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(model(input_ids=tokens).last_hidden_state, outputs[0])  # the adapted model is untouched
    with pytest.raises(ValueError, match="Task id 3 is out of range: the adapter knows 3 tasks"):
        merge_task(model, 3)


def test_a_token_router_has_nothing_to_merge():
    model = get_peft_model(tiny_bert(), MultiHeadLoraConfig(target_modules=["query"]))
    with pytest.raises(ValueError, match="token router mixes its heads by each token's input"):
        merge_task(model, 0)


def test_an_adapted_model_exports_one_tasks_merged_encoder_that_gives_its_logits(tmp_path):
    from transformers import BertModel as LoadedBert

    from moezoo.adapters import AdaptedTransformerModel

    tiny_bert().save_pretrained(tmp_path / "base")
    tasks = [{"name": "sentiment", "kind": "multiclass", "num_labels": 2}, {"name": "similarity", "kind": "regression"}]
    model = AdaptedTransformerModel.from_base(
        tmp_path / "base", tasks, "mhr", adapter={"target_modules": ["query", "value"], "n_splits": 2, "init_weights": False}
    ).eval()
    for layer in model.backbone.modules():
        if isinstance(layer, PolyLinear):
            torch.nn.init.normal_(layer.poly_router["default"].module_logits)
    tokens = torch.randint(0, 50, (3, 6), generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 5 + [0]])
    merged = model.merge_task("similarity")
    merged.save_pretrained(tmp_path / "merged")  # a plain transformers model
    encoder = LoadedBert.from_pretrained(tmp_path / "merged").eval()
    pooled = model.pool(encoder(input_ids=tokens, attention_mask=mask).last_hidden_state, mask)
    expected = model(input_ids=tokens, attention_mask=mask, task_ids=torch.ones(3, dtype=torch.long)).logits["similarity"]
    torch.testing.assert_close(model.heads["similarity"](pooled), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(KeyError, match="Unknown task 'similarty'.*'similarity'"):
        model.merge_task("similarty")
    lora = AdaptedTransformerModel.from_base(tmp_path / "base", tasks, "lora", adapter={"target_modules": ["query"]})
    with pytest.raises(ValueError, match="backbone.merge_and_unload"):
        lora.merge_task("sentiment")
