"""The card figures of adapted transformers measure what they say: each task's mixing of heads or skills,
and the gaps between the tasks' LoRA A outputs over whole splits."""

import itertools

import matplotlib.image
import pytest
import torch

from moezoo.adapters import AdaptedTransformerModel, gaussian_symmetric_kl
from moezoo.hub.figures import measure_adapter_mixing, measure_task_gaps, plot_task_gaps, plot_task_shares, short_layer_name

TASKS = [{"name": name, "kind": "multiclass", "num_labels": 2} for name in ("first", "second", "third")]


def batches(num_batches=3, size=5, length=7):
    generator = torch.Generator().manual_seed(0)
    made = []
    for _ in range(num_batches):
        mask = torch.ones(size, length, dtype=torch.long)
        mask[:, -2:] = torch.randint(0, 2, (size, 2), generator=generator)
        made.append({"input_ids": torch.randint(0, 50, (size, length), generator=generator), "attention_mask": mask,
                     "task_ids": torch.randint(0, len(TASKS), (size,), generator=generator)})
    return made


@pytest.mark.parametrize("method", ["multi_head_lora", "mhr"])
def test_the_mixing_figure_shows_each_tasks_weights_per_layer(method, tiny_bert_folder, tmp_path):
    adapter = {"target_modules": ["query", "value"], "r": 2}
    adapter.update({"num_heads": 3, "router": "task"} if method == "multi_head_lora" else {"n_skills": 3, "n_splits": 2})
    torch.manual_seed(0)
    model = AdaptedTransformerModel.from_base(tiny_bert_folder, TASKS, method, adapter=adapter)
    for parameter in model.parameters():  # routers away from their uniform start
        if parameter.requires_grad:
            parameter.data.normal_()
    names, mixing = measure_adapter_mixing(model)
    assert names == ["0 attention query", "0 attention value", "1 attention query", "1 attention value"]
    for task_id, task in enumerate(model.task_names):
        assert len(mixing[task]) == 4
        for weights in mixing[task]:
            assert weights.shape == (3,) and torch.isclose(weights.sum(), torch.tensor(1.0))
    layer = model.backbone.base_model.model.encoder.layer[1].attention.self.value
    if method == "multi_head_lora":
        expected = torch.softmax(layer.mhlora_router["default"].weight[2], dim=-1)
    else:
        logits = torch.sigmoid(layer.poly_router["default"].module_logits[2].view(2, 3))
        expected = (logits / logits.sum(-1, keepdim=True)).mean(0)
    torch.testing.assert_close(mixing["third"][3], expected, atol=1e-5, rtol=0)
    assert plot_task_shares(mixing, names, tmp_path / "mixing.png", unit="head").stat().st_size > 0
    assert matplotlib.image.imread(tmp_path / "mixing.png").shape[0] > matplotlib.image.imread(
        plot_task_shares(mixing, names, tmp_path / "one_row.png", unit="head", panels_per_row=4)
    ).shape[0]  # a row per block by default: two rows here

    lora = AdaptedTransformerModel.from_base(tiny_bert_folder, TASKS, "lora", adapter={"target_modules": ["query"]})
    with pytest.raises(ValueError, match="does not route by task"):
        measure_adapter_mixing(lora)


def test_short_layer_names_tell_the_maps_of_a_block_apart():
    paths = ("attention.self.query", "attention.output.dense", "intermediate.dense", "output.dense")
    names = [f"encoder.layer.3.{path}" for path in paths]
    assert [short_layer_name(name) for name in names] == ["3 attention query", "3 attention output", "3 intermediate", "3 output"]
    assert short_layer_name("model.layers.12.self_attn.q_proj") == "12 self_attn q_proj"
    assert short_layer_name("head") == "head"


def test_the_task_gaps_are_the_symmetric_kl_of_the_whole_splits_tokens(tiny_bert_folder, tmp_path):
    torch.manual_seed(0)
    model = AdaptedTransformerModel.from_base(
        tiny_bert_folder, TASKS, "align_lora", adapter={"target_modules": ["query", "value"], "r": 3}
    )
    data = batches()
    gaps = measure_task_gaps(model, data)

    # Recomputed from every real token of each task, gathered over all batches, layer by layer.
    outputs = {}
    for batch in data:
        with torch.no_grad():
            model(**batch)
        for layer, (output, mask) in enumerate(model.alignment.layer_tokens()):
            task_of_token = batch["task_ids"][:, None].expand(mask.shape)[mask]
            for task in range(len(TASKS)):
                outputs.setdefault((layer, task), []).append(output[mask][task_of_token == task])
    num_layers = 1 + max(layer for layer, _ in outputs)
    assert num_layers == 4
    expected = torch.zeros(len(TASKS), len(TASKS))
    for first, second in itertools.permutations(range(len(TASKS)), 2):
        expected[first, second] = sum(
            gaussian_symmetric_kl(torch.cat(outputs[layer, first]).double(), torch.cat(outputs[layer, second]).double())
            for layer in range(num_layers)
        ) / num_layers
    torch.testing.assert_close(gaps, expected, atol=1e-4, rtol=1e-4)
    assert torch.all(gaps.diagonal() == 0) and torch.all(gaps + torch.eye(len(TASKS)) > 0)
    assert plot_task_gaps(gaps, model.task_names, tmp_path / "gaps.png").stat().st_size > 0

    mhr = AdaptedTransformerModel.from_base(tiny_bert_folder, TASKS, "mhr", adapter={"target_modules": ["query"]})
    with pytest.raises(ValueError, match="needs adapter_method='align_lora'"):
        measure_task_gaps(mhr, data)
