"""Task vectors of LoRA and full fine-tunes: applied to the base they reproduce the fine-tune's outputs, and
merging one source at weight 1 (or N copies of one) gives the source back; what cannot be merged exactly is
refused with the reason."""

import pytest
import torch
from transformers import BertModel

from moezoo.adapters import AdaptedTransformerModel
from moezoo.merging import (
    apply_task_vector,
    check_same_base,
    full_task_vector,
    lora_task_vector,
    merge_task_vectors,
)

TOKENS = torch.randint(0, 50, (3, 7), generator=torch.Generator().manual_seed(0))


def lora_fine_tune(folder, seed, rank=2, **adapter):
    """A single-task LoRA model on the tiny BERT whose B matrices are random (as after training)."""
    torch.manual_seed(seed)
    model = AdaptedTransformerModel.from_base(
        folder, [{"name": f"task_{seed}", "kind": "multiclass", "num_labels": 2}], "lora",
        adapter={"target_modules": ["query", "value", "dense"], "r": rank, **adapter},
    ).eval()
    with torch.no_grad():
        for name, parameter in model.backbone.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.3)
    return model


def hidden_states(model):
    with torch.no_grad():
        return model(input_ids=TOKENS).last_hidden_state


def test_a_lora_task_vector_applied_to_the_base_reproduces_the_fine_tune(tiny_bert_folder):
    source = lora_fine_tune(tiny_bert_folder, seed=1)
    base = BertModel.from_pretrained(tiny_bert_folder).eval()
    vector = lora_task_vector(source)
    assert len(vector) == 2 * (2 + 3) + 1  # 2 layers: query, value and the three dense maps; the pooler
    layer = source.backbone.base_model.model.encoder.layer[0].attention.self.query
    torch.testing.assert_close(vector["encoder.layer.0.attention.self.query.weight"],
                               layer.scaling["default"] * layer.lora_B["default"].weight @ layer.lora_A["default"].weight)
    expected = hidden_states(source.backbone)
    assert not torch.allclose(expected, hidden_states(base), atol=1e-3)  # the fine-tune moved, so the test can fail
    torch.testing.assert_close(hidden_states(apply_task_vector(base, vector)), expected, rtol=0, atol=1e-5)
    # Merging it alone at weight 1, or four copies of it at the default 1/N, gives it back.
    for merged in (merge_task_vectors([vector], "task_arithmetic", {"scaling": 1.0}),
                   merge_task_vectors([vector] * 4, "task_arithmetic"),
                   merge_task_vectors([vector] * 3, "ties", {"density": 1.0})):
        torch.testing.assert_close(hidden_states(apply_task_vector(base, merged)), expected, rtol=0, atol=1e-5)
    assert torch.equal(base.encoder.layer[0].attention.self.query.weight,
                       BertModel.from_pretrained(tiny_bert_folder).encoder.layer[0].attention.self.query.weight)


def test_lora_sources_of_different_ranks_merge_on_their_weight_updates(tiny_bert_folder):
    """Ranks 2 and 4: the updates B·A line up where the factors would not (PEFT's add_weighted_adapter merges
    the factors)."""
    first, second = lora_fine_tune(tiny_bert_folder, seed=2, rank=2), lora_fine_tune(tiny_bert_folder, seed=3, rank=4)
    check_same_base([first, second])
    vectors = [lora_task_vector(first), lora_task_vector(second)]
    merged = merge_task_vectors(vectors, "task_arithmetic", {"scaling": 1.0})
    name = "encoder.layer.1.attention.self.value.weight"
    torch.testing.assert_close(merged[name], vectors[0][name] + vectors[1][name])
    assert torch.linalg.matrix_rank(merged[name]) == 6


def test_a_full_task_vector_is_the_parameter_difference_and_adds_back(tiny_bert_folder):
    base = BertModel.from_pretrained(tiny_bert_folder).eval()
    tuned = BertModel.from_pretrained(tiny_bert_folder).eval()
    with torch.no_grad():
        for parameter in tuned.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    vector = full_task_vector(tuned, base)
    assert set(vector) == {name for name, _ in base.named_parameters()}
    torch.testing.assert_close(hidden_states(apply_task_vector(base, vector)), hidden_states(tuned), rtol=0, atol=1e-5)


def test_what_cannot_be_merged_as_a_weight_update_is_refused(tiny_bert_folder):
    multi_head = AdaptedTransformerModel.from_base(
        tiny_bert_folder, [{"name": "a", "kind": "binary"}, {"name": "b", "kind": "binary"}], "multi_head_lora",
        adapter={"target_modules": ["query"], "r": 2, "router": "task"},
    )
    with pytest.raises(ValueError, match=r"needs adapter_method 'lora' or 'align_lora', got 'multi_head_lora' \(a task-routed"):
        lora_task_vector(multi_head)
    with pytest.raises(ValueError, match="DoRA adapter rescales each weight column"):
        lora_task_vector(lora_fine_tune(tiny_bert_folder, seed=4, use_dora=True))
    with pytest.raises(ValueError, match=r"lora_bias=True"):
        lora_task_vector(lora_fine_tune(tiny_bert_folder, seed=5, lora_bias=True))
    first, other = lora_fine_tune(tiny_bert_folder, seed=6), lora_fine_tune(tiny_bert_folder, seed=7)
    other.config.base_model_digest = "0" * 64
    with pytest.raises(ValueError, match="Source 1 was fine-tuned from .* task vectors of different bases do not add up"):
        check_same_base([first, other])
    base = BertModel.from_pretrained(tiny_bert_folder)
    with pytest.raises(KeyError, match=r"not parameters of this BertModel \(did you mean 'encoder.layer.0.attention.self.query.weight'"):
        apply_task_vector(base, {"encoder.layer.0.attention.self.querry.weight": torch.zeros(16, 16)})
    with pytest.raises(ValueError, match=r"an update of shape \[16, 8\] for a parameter of shape \[16, 16\]"):
        apply_task_vector(base, {"encoder.layer.0.attention.self.query.weight": torch.zeros(16, 8)})


def logits(model, task):
    with torch.no_grad():
        return model(input_ids=TOKENS, tasks=task).logits[task]


def test_merging_one_lora_source_gives_it_back_as_an_adapted_model_that_round_trips(tiny_bert_folder, tmp_path):
    from moezoo.merging import merge_lora_models

    source = lora_fine_tune(tiny_bert_folder, seed=8)
    for method, options in (("task_arithmetic", {"scaling": 1.0}), ("ties", {"density": 1.0}), ("dare_linear", {"density": 1.0, "scaling": 1.0})):
        merged = merge_lora_models([source], method, options, source_names=["runs/task_8"])
        torch.testing.assert_close(logits(merged, "task_8"), logits(source, "task_8"), rtol=0, atol=1e-5)
    # No folder of that name here: the name is taken for the Hub repository it would be.
    assert merged.config.merge == {"method": "dare_linear", "options": {"density": 1.0, "scaling": 1.0},
                                   "sources": ["runs/task_8"], "repositories": ["runs/task_8"]}
    assert merged.config.adapter["r"] == 2  # the source's own rank: nothing was widened
    merged.save_pretrained(tmp_path / "merged")
    loaded = AdaptedTransformerModel.from_pretrained(tmp_path / "merged")
    assert torch.equal(logits(loaded, "task_8"), logits(merged, "task_8"))
    assert loaded.config.merge == merged.config.merge


def test_merged_lora_sources_keep_every_tasks_head_and_apply_the_merged_updates(tiny_bert_folder):
    from moezoo.merging import merge_lora_models

    sources = [lora_fine_tune(tiny_bert_folder, seed=9, rank=2), lora_fine_tune(tiny_bert_folder, seed=10, rank=3)]
    vectors = [lora_task_vector(source) for source in sources]
    base = BertModel.from_pretrained(tiny_bert_folder).eval()
    for method, options in (("task_arithmetic", {}), ("ties", {"density": 0.5}), ("iso_c", {})):
        merged = merge_lora_models(sources, method, options)
        assert merged.task_names == ["task_9", "task_10"]
        expected = hidden_states(apply_task_vector(base, merge_task_vectors(vectors, method, options)))
        torch.testing.assert_close(hidden_states(merged.backbone), expected, rtol=0, atol=1e-5)
        assert torch.equal(merged.heads["task_10"].weight, sources[1].heads["task_10"].weight)
        # Task arithmetic and Iso-C stay within the ranks' sum; TIES' entrywise trim gives full-rank updates.
        assert merged.config.adapter["r"] == {"task_arithmetic": 5, "iso_c": 5, "ties": 16}[method]
    with pytest.raises(ValueError, match="Task 'task_9' is in more than one source"):
        merge_lora_models([sources[0], sources[0]], "task_arithmetic")


def test_a_gpt2_lora_source_merges_back_exactly(tmp_path):
    """GPT-2's Conv1D layers hold their weights as [in, out]: the update is written back in that layout."""
    from transformers import GPT2Config, GPT2Model

    from moezoo.merging import merge_lora_models

    torch.manual_seed(0)
    GPT2Model(GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=32)).save_pretrained(tmp_path)
    source = AdaptedTransformerModel.from_base(
        tmp_path, [{"name": "task", "kind": "binary"}], "lora", pooling="last",
        adapter={"target_modules": ["c_attn", "c_fc"], "r": 2, "fan_in_fan_out": True},
    ).eval()
    with torch.no_grad():
        for name, parameter in source.backbone.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.3)
    merged = merge_lora_models([source], "task_arithmetic", {"scaling": 1.0})
    torch.testing.assert_close(logits(merged, "task"), logits(source, "task"), rtol=0, atol=1e-5)
    assert not torch.allclose(logits(source, "task"), logits(merge_lora_models([source], "task_arithmetic", {"scaling": 0.5}), "task"))


def test_a_merged_models_card_lists_its_sources_as_a_merge_with_the_settings(tiny_bert_folder):
    from huggingface_hub import ModelCard

    from moezoo.hub import CardDetails, DatasetDescription, build_model_card
    from moezoo.merging import merge_lora_models

    sources = [lora_fine_tune(tiny_bert_folder, seed=11), lora_fine_tune(tiny_bert_folder, seed=12)]
    merged = merge_lora_models(sources, "ties", {"density": 0.3}, source_names=["org/cola-lora", "org/sst2-lora"])
    data = DatasetDescription("GLUE", "glue", "text-classification", hub_id="nyu-mll/glue", license="other")
    card = ModelCard(build_model_card(merged, None, CardDetails(model_id="org/merged", dataset=data)).content)
    assert card.data.base_model == ["org/cola-lora", "org/sst2-lora"]
    assert card.data.base_model_relation == "merge"
    assert "**Merged:** from `org/cola-lora`, `org/sst2-lora` by `ties` (density 0.3)" in card.text
    plain = build_model_card(sources[0], None, CardDetails(model_id="org/lora", dataset=data))
    assert plain.data.base_model_relation == "adapter" and plain.data.base_model == str(tiny_bert_folder)


def test_task_vectors_as_experts_reproduce_each_source_given_its_task_and_mix_them_without(tiny_bert_folder, tmp_path):
    from moezoo.merging import task_vector_experts

    sources = [lora_fine_tune(tiny_bert_folder, seed=13, rank=2), lora_fine_tune(tiny_bert_folder, seed=14, rank=3)]
    experts = task_vector_experts(sources, source_names=["a", "b"])
    assert experts.config.adapter["r"] == 5 and experts.config.adapter["num_heads"] == 2
    for index, (source, task) in enumerate(zip(sources, ["task_13", "task_14"])):
        with torch.no_grad():
            given = experts(input_ids=TOKENS, task_ids=torch.full((3,), index), tasks=task).logits[task]
        torch.testing.assert_close(given, logits(source, task), rtol=0, atol=1e-5)
    # Without task ids the token routers, at zero, weigh the sources alike: task arithmetic at 1/N.
    base = BertModel.from_pretrained(tiny_bert_folder).eval()
    mean = merge_task_vectors([lora_task_vector(source) for source in sources], "task_arithmetic")
    experts.routing.set(None)  # the backbone alone: no ids (the model's forward clears them itself)
    torch.testing.assert_close(hidden_states(experts.backbone), hidden_states(apply_task_vector(base, mean)), rtol=0, atol=1e-5)
    # A batch mixing known and unknown ids (-1): each example takes its own path.
    with torch.no_grad():
        mixed = experts(input_ids=TOKENS, task_ids=torch.tensor([0, -1, 1]), tasks="task_13").logits["task_13"]
        unrouted = experts(input_ids=TOKENS, tasks="task_13").logits["task_13"]
    torch.testing.assert_close(mixed[0], logits(sources[0], "task_13")[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(mixed[1], unrouted[1], rtol=0, atol=1e-6)
    experts.save_pretrained(tmp_path / "experts")
    loaded = AdaptedTransformerModel.from_pretrained(tmp_path / "experts")
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=TOKENS, task_ids=torch.ones(3, dtype=torch.long), tasks="task_14").logits["task_14"],
                                   logits(sources[1], "task_14"), rtol=0, atol=1e-5)
    from huggingface_hub.errors import StrictDataclassClassValidationError

    with pytest.raises(StrictDataclassClassValidationError, match="router='task_or_token' leaves examples without a task id"):
        AdaptedTransformerModel.from_base(tiny_bert_folder, [{"name": "a", "kind": "binary"}], "multi_head_lora",
                                          adapter={"router": "task_or_token", "target_modules": ["query"]})


def test_the_scaling_is_chosen_by_the_score_and_the_scores_are_recorded(tiny_bert_folder, tmp_path):
    from moezoo.merging import merge_lora_models

    source = lora_fine_tune(tiny_bert_folder, seed=15)
    target = logits(source, "task_15")

    def closeness(model):  # the scaling that gives the source back scores best
        return -float((logits(model, "task_15") - target).abs().max())

    merged = merge_lora_models([source], "task_arithmetic", scalings=[0.5, 1.0, 1.5], score=closeness)
    assert merged.config.merge["options"] == {"scaling": 1.0}
    assert [entry["scaling"] for entry in merged.config.merge["scaling_scores"]] == [0.5, 1.0, 1.5]
    assert max(merged.config.merge["scaling_scores"], key=lambda entry: entry["score"])["scaling"] == 1.0
    torch.testing.assert_close(logits(merged, "task_15"), target, rtol=0, atol=1e-5)
    merged.save_pretrained(tmp_path / "tuned")
    assert AdaptedTransformerModel.from_pretrained(tmp_path / "tuned").config.merge == merged.config.merge
    with pytest.raises(ValueError, match="needs both the candidates"):
        merge_lora_models([source], "ties", scalings=[1.0])
    with pytest.raises(ValueError, match="either the scaling option or candidate scalings"):
        merge_lora_models([source], "ties", {"scaling": 1.0}, scalings=[1.0], score=closeness)
