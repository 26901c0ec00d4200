"""Fine-tuning from a checkpoint: other tasks (added fresh, dropped), frozen parts, and the recipe flags."""

import json
import sys
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from huggingface_hub.errors import StrictDataclassClassValidationError

import moezoo
from moezoo.models.transfer import FREEZABLE_PARTS, freeze, load_for_tasks
from moezoo.training import TensorDataset, TrainingConfig, train

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes"))
from train_tabular import main as train_tabular  # noqa: E402

TWO_TASKS = [{"name": "a"}, {"name": "b"}]
THREE_TASKS = [*TWO_TASKS, {"name": "c", "kind": "regression"}]


def saved_model(path, name="mmoe", tasks=TWO_TASKS, **overrides):
    model = moezoo.create_model(name, tasks=tasks, input_size=6, **overrides)
    model.save_pretrained(path)
    return model


def test_a_new_task_starts_fresh_and_everything_shared_loads(tmp_path):
    checkpoint = saved_model(tmp_path)
    model = load_for_tasks(tmp_path, THREE_TASKS, allow_task_changes=True)
    assert model.task_names == ["a", "b", "c"]
    old, new = checkpoint.state_dict(), model.state_dict()
    for name in ("router.levels.0.experts.layers.0.weight", "router.levels.0.experts.layers.0.bias"):
        assert torch.equal(old[name], new[name])  # the shared experts are the checkpoint's
    assert torch.equal(new["router.levels.0.gate.weight"][:2], old["router.levels.0.gate.weight"])
    assert torch.equal(new["heads.towers.layers.0.weight"][:2], old["heads.towers.layers.0.weight"])
    assert torch.equal(new["heads.outputs.a.weight"], old["heads.outputs.a.weight"])
    x = torch.randn(5, 6)
    torch.testing.assert_close(model.eval()(inputs_embeds=x).logits["b"], checkpoint.eval()(inputs_embeds=x).logits["b"])


def test_fine_tuning_a_two_task_mmoe_on_a_third_task_with_frozen_experts(tmp_path):
    checkpoint = saved_model(tmp_path / "checkpoint")
    model = load_for_tasks(tmp_path / "checkpoint", THREE_TASKS, allow_task_changes=True)
    frozen = freeze(model, ["experts"])
    assert frozen == ["router.levels.0.experts.layers.0.weight", "router.levels.0.experts.layers.0.bias"]
    torch.manual_seed(0)
    x = torch.randn(512, 6)
    labels = torch.full((512, 3), float("nan"))
    labels[:, 2] = x[:, 0] - 2 * x[:, 1]  # only the new task has labels
    config = TrainingConfig(output_dir=str(tmp_path / "run"), num_train_epochs=15, per_device_train_batch_size=64, learning_rate=1e-2)
    result = train(model, TensorDataset({"inputs_embeds": x, "labels": labels}), None, config, Accelerator())
    losses = [record["train_loss"] for record in result.history]
    assert losses[-1] < 0.5 * losses[0]
    experts = checkpoint.state_dict()["router.levels.0.experts.layers.0.weight"]
    assert torch.equal(result.model.state_dict()["router.levels.0.experts.layers.0.weight"], experts)


def test_dropped_tasks_are_removed_and_task_order_may_change(tmp_path):
    checkpoint = saved_model(tmp_path, name="cgc", tasks=THREE_TASKS)
    model = load_for_tasks(tmp_path, [{"name": "c", "kind": "regression"}, {"name": "a"}], allow_task_changes=True)
    assert model.task_names == ["c", "a"] and set(model.heads.outputs) == {"c", "a"}
    x = torch.randn(4, 6)
    for task in ("a", "c"):  # CGC task gates see shared + own experts: both paths are kept whole
        torch.testing.assert_close(model.eval()(inputs_embeds=x).logits[task], checkpoint.eval()(inputs_embeds=x).logits[task])
    reordered = load_for_tasks(tmp_path, [THREE_TASKS[1], THREE_TASKS[0], THREE_TASKS[2]])  # no change of tasks
    torch.testing.assert_close(reordered.eval()(inputs_embeds=x).logits["b"], checkpoint(inputs_embeds=x).logits["b"])


def test_home_needs_a_group_for_a_new_task_and_keeps_the_others(tmp_path):
    checkpoint = saved_model(tmp_path, name="home", task_groups={"g": ["a", "b"]})
    with pytest.raises(StrictDataclassClassValidationError, match=r"Tasks \['c'\] are in no group"):
        load_for_tasks(tmp_path, THREE_TASKS, allow_task_changes=True)
    model = load_for_tasks(
        tmp_path, THREE_TASKS, allow_task_changes=True, config_overrides={"task_groups": {"g": ["a", "b"], "h": ["c"]}}
    )
    assert torch.equal(model.state_dict()["router.levels.0.experts.layers.0.weight"][:3], checkpoint.state_dict()["router.levels.0.experts.layers.0.weight"])


def test_task_changes_and_other_architectures_need_saying(tmp_path):
    saved_model(tmp_path)
    with pytest.raises(ValueError, match=r"new or changed: \['c'\]; not in the data: \[\].*--allow_task_changes"):
        load_for_tasks(tmp_path, THREE_TASKS)
    with pytest.raises(ValueError, match=r"new or changed: \['b'\]"):  # same name, another kind
        load_for_tasks(tmp_path, [{"name": "a"}, {"name": "b", "kind": "regression"}])
    with pytest.raises(ValueError, match="holds a 'mmoe' model, not a 'ple' one"):
        load_for_tasks(tmp_path, TWO_TASKS, model_type="ple")
    with pytest.raises(ValueError, match=r"would change the checkpoint .* \(expert_hidden_sizes \[16\] -> \[4\]\)"):
        load_for_tasks(tmp_path, TWO_TASKS, config_overrides={"expert_hidden_sizes": [4]})
    with pytest.raises(ValueError, match="router.levels.0.experts.layers.0.weight has rows of shape"):
        load_for_tasks(tmp_path, TWO_TASKS, config_overrides={"expert_hidden_sizes": [4]}, allow_config_changes=True)
    with pytest.raises(ValueError, match=r"Unknown part to freeze 'expert' \(did you mean 'experts'"):
        freeze(moezoo.create_model("mmoe"), ["expert"])
    with pytest.raises(ValueError, match="has no embeddings to freeze"):
        freeze(moezoo.create_model("mmoe"), ["embeddings"])
    assert set(FREEZABLE_PARTS) >= {"embeddings", "experts", "gates", "towers", "outputs"}


def test_recipe_continues_from_a_checkpoint_with_frozen_parts(tmp_path, data_dir):
    config = str(REPO / "recipes" / "configs" / "census_income_mmoe.yaml")
    short = ["--data_dir", str(data_dir), "--max_train_samples", "3000", "--max_eval_samples", "1000", "--num_train_epochs", "1"]
    train_tabular([config, "--output_dir", str(tmp_path / "first"), *short])
    first = moezoo.MMoEModel.from_pretrained(tmp_path / "first" / "best")
    result = train_tabular([
        config, "--output_dir", str(tmp_path / "second"), *short, "--model_name_or_path", str(tmp_path / "first" / "best"),
        "--freeze", "embeddings", "experts",
    ])
    second = result.training.model.state_dict()
    for name, value in first.state_dict().items():
        if name.startswith("embeddings.") or ".experts." in name:
            assert torch.equal(second[name], value), name
    assert not torch.equal(second["router.levels.0.gate.weight"], first.state_dict()["router.levels.0.gate.weight"])
    summary = json.loads((tmp_path / "second" / "results.json").read_text())
    assert summary["arguments"]["model_name_or_path"] == str(tmp_path / "first" / "best")
    # The checkpoint read the education column as a feature: as a label now, it would leak.
    with pytest.raises(ValueError, match=r"Column\(s\) \['education'\] are both labels and input features"):
        train_tabular([
            config, "--output_dir", str(tmp_path / "third"), *short, "--tasks", "income", "marital", "education",
            "--model_name_or_path", str(tmp_path / "first" / "best"),
        ])


def test_recipe_fine_tunes_a_zoo_entry_by_name(tmp_path, data_dir):
    if moezoo.zoo.entry_folder("mmoe-census-income") is None:
        pytest.skip("the mmoe-census-income zoo entry is not built in this checkout")
    entry = moezoo.from_pretrained("mmoe-census-income")
    result = train_tabular([
        str(REPO / "recipes" / "configs" / "census_income_mmoe.yaml"), "--output_dir", str(tmp_path), "--data_dir", str(data_dir),
        "--max_train_samples", "2000", "--max_eval_samples", "1000", "--num_train_epochs", "1", "--tasks", "income",
        "--model_name_or_path", "mmoe-census-income", "--allow_task_changes", "--freeze", "experts",
    ])
    model = result.training.model
    assert model.task_names == ["income"]
    assert torch.equal(
        model.state_dict()["router.levels.0.experts.layers.0.weight"], entry.state_dict()["router.levels.0.experts.layers.0.weight"]
    )
    assert json.loads((tmp_path / "results.json").read_text())["arguments"]["model_name_or_path"] == "mmoe-census-income"


def test_an_override_that_changes_the_checkpoints_model_is_refused_unless_allowed(tmp_path, caplog):
    source = saved_model(tmp_path / "mmoe", num_shared_experts=4)
    with pytest.raises(ValueError, match=r"would change the checkpoint .* itself \(num_shared_experts 4 -> 6\).*--allow_config_changes"):
        load_for_tasks(tmp_path / "mmoe", TWO_TASKS, config_overrides={"num_shared_experts": 6})
    with caplog.at_level("WARNING"):
        grown = load_for_tasks(tmp_path / "mmoe", TWO_TASKS, config_overrides={"num_shared_experts": 6}, allow_config_changes=True)
    message = next(record.getMessage() for record in caplog.records if "num_shared_experts 4 -> 6" in record.getMessage())
    assert "new (fresh): ['expert shared 4', 'expert shared 5']; dropped: []" in message
    assert "kept from the checkpoint: ['expert shared 0', 'expert shared 1', 'expert shared 2', 'expert shared 3'," in message
    kept = source.state_dict()["router.levels.0.experts.layers.0.weight"]
    assert torch.equal(grown.state_dict()["router.levels.0.experts.layers.0.weight"][:4], kept)
    shrunk = load_for_tasks(tmp_path / "mmoe", TWO_TASKS, config_overrides={"num_shared_experts": 2}, allow_config_changes=True)
    assert torch.equal(shrunk.state_dict()["router.levels.0.experts.layers.0.weight"], kept[:2])
    # A width cannot be kept: the error says so even when allowed.
    with pytest.raises(ValueError, match="the configs differ in more than their tasks"):
        load_for_tasks(tmp_path / "mmoe", TWO_TASKS, config_overrides={"expert_hidden_sizes": [7]}, allow_config_changes=True)


def test_the_recipe_refuses_flags_a_checkpoint_overrides(tmp_path, data_dir):
    if moezoo.zoo.entry_folder("mmoe-census-income") is None:
        pytest.skip("the mmoe-census-income zoo entry is not built in this checkout")
    base = [str(REPO / "recipes" / "configs" / "census_income_mmoe.yaml"), "--output_dir", str(tmp_path), "--data_dir",
            str(data_dir), "--max_train_samples", "500", "--num_train_epochs", "1", "--model_name_or_path", "mmoe-census-income"]
    with pytest.raises(ValueError, match=r"--embedding_dim 16 conflicts with the checkpoint mmoe-census-income, whose embeddings are 8 wide"):
        train_tabular([*base, "--embedding_dim", "16"])
    if moezoo.zoo.entry_folder("mhr-glue") is not None:
        with pytest.raises(ValueError, match=r"mhr-glue is not a tabular checkpoint \(its processor is a BertTokenizer\)"):
            train_tabular([*base[:-1], "mhr-glue"])
    with pytest.raises(ValueError, match="--allow_config_changes applies to a checkpoint: give --model_name_or_path too"):
        train_tabular([*base[:-2], "--allow_config_changes"])


def test_freezing_every_part_is_refused_before_training(tmp_path):
    model = moezoo.create_model("mmoe", tasks=TWO_TASKS, input_size=6)
    freeze(model, ["experts", "gates", "towers", "outputs"])
    data = TensorDataset({"inputs_embeds": torch.randn(8, 6), "labels": torch.randint(0, 2, (8, 2)).float()})
    config = TrainingConfig(output_dir=str(tmp_path), num_train_epochs=1, per_device_train_batch_size=4)
    with pytest.raises(ValueError, match="Every parameter of the MMoEModel is frozen \\(--freeze\\): nothing would train"):
        train(model, data, None, config, Accelerator(cpu=True))
