"""Bad input gets a clear error that names the problem; checks whose cost grows with the data run once
where the data is prepared, and stay on for direct calls of forward."""

import json
import warnings

import pandas as pd
import pytest
import torch
from datasets import Dataset
from huggingface_hub.errors import StrictDataclassFieldValidationError
from safetensors.torch import load_file, save_file
from transformers import AutoModel, Trainer, TrainingArguments

import moezoo
from moezoo.training import TensorDataset, TrainingConfig, make_dataloader, materialize, train


def dense_model(**overrides):
    tasks = [{"name": "a"}, {"name": "b", "kind": "regression"}]
    return moezoo.create_model("mmoe", tasks=tasks, input_size=6, **overrides)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_inputs_embeds_and_pixel_values_are_named(bad):
    model = dense_model()
    x = torch.randn(4, 6)
    x[2, 3] = bad
    with pytest.raises(ValueError, match=r"inputs_embeds contains 1 NaN or inf value"):
        model(inputs_embeds=x)
    image_model = moezoo.create_model("mmoe", image_encoder={"image_size": 12, "conv_channels": [2]})
    pixels = torch.rand(2, 1, 12, 12)
    pixels[1, 0, 5, 5] = bad
    with pytest.raises(ValueError, match=r"pixel_values contains 1 NaN or inf value"):
        image_model(pixel_values=pixels)


def test_value_checks_run_once_for_checked_data_and_always_for_direct_calls():
    model = dense_model()
    x = torch.randn(4, 6)
    x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="inputs_embeds contains"):
        model.check_input_values({"inputs_embeds": x, "labels": torch.zeros(4, 2)})
    # Data that passed the checks once is trusted inside the block: no per-batch scan.
    with model.skip_input_value_checks():
        assert torch.isnan(model(inputs_embeds=x).logits["a"][0]).all()
    with pytest.raises(ValueError, match="inputs_embeds contains"):
        model(inputs_embeds=x)  # and checked again outside it
    with pytest.raises(ValueError, match=r"Labels for binary task 'a' must lie in \[0, 1\]"):
        model.check_input_values({"inputs_embeds": torch.randn(4, 6), "labels": torch.full((4, 2), 2.0)})
    with pytest.raises(KeyError, match=r"Unknown input\(s\) \['input_ids'\]"):
        model.check_input_values({"input_ids": torch.zeros(4, 6)})


def test_training_loop_checks_materialised_data_once_before_the_first_step(tmp_path):
    model = dense_model()
    x = torch.randn(64, 6)
    x[40, 2] = float("nan")
    data = TensorDataset({"inputs_embeds": x, "labels": torch.zeros(64, 2)})
    before = {name: value.clone() for name, value in model.state_dict().items()}
    config = TrainingConfig(output_dir=str(tmp_path), num_train_epochs=1, per_device_train_batch_size=16)
    from accelerate import Accelerator

    with pytest.raises(ValueError, match="inputs_embeds contains 1 NaN"):
        train(model, data, None, config, Accelerator())
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())


def test_floating_inputs_are_cast_to_the_model_dtype(toy_rows, toy_processor, make_toy_model):
    model = dense_model().eval()
    x = torch.randn(3, 6)
    torch.testing.assert_close(model(inputs_embeds=x.double()).logits["a"], model(inputs_embeds=x).logits["a"])
    tabular = make_toy_model("mmoe").to(torch.bfloat16).eval()
    batch = dict(toy_processor(toy_rows.head(5)))  # float32 numeric features into a bfloat16 model
    assert tabular(**batch).logits["y1"].dtype == torch.bfloat16
    with pytest.raises(TypeError, match="inputs_embeds must be a float tensor, got torch.int64"):
        model(inputs_embeds=x.long())


def test_inputs_that_disagree_on_the_batch_size_are_named(toy_rows, toy_processor, make_toy_model):
    model = make_toy_model("mmoe")
    batch = dict(toy_processor(toy_rows.head(8)))
    with pytest.raises(ValueError, match="numeric_features has 8 rows but categorical_features has 5"):
        model(numeric_features=batch["numeric_features"], categorical_features=batch["categorical_features"][:5])
    with pytest.raises(ValueError, match="Labels have batch size 3, inputs 8"):
        model(**{**batch, "labels": batch["labels"][:3]})


def test_batch_norm_models_drop_the_incomplete_last_batch(tmp_path, toy_rows, toy_processor, make_toy_model):
    from accelerate import Accelerator

    # 65 rows in batches of 64 would leave a last batch of one row, which BatchNorm cannot normalise.
    rows = toy_rows.sample(65, replace=True, random_state=0)
    data = Dataset.from_dict({key: value.tolist() for key, value in toy_processor(rows).items()})
    model = make_toy_model("home")
    config = TrainingConfig(output_dir=str(tmp_path), num_train_epochs=2, per_device_train_batch_size=64)
    result = train(model, data, None, config, Accelerator())
    assert result.global_step == 2  # one full batch per epoch
    # Asked to keep it, the one-row batch reaches BatchNorm, which refuses it.
    config = TrainingConfig(
        output_dir=str(tmp_path), num_train_epochs=1, per_device_train_batch_size=64, dataloader_drop_last=False
    )
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        train(make_toy_model("home"), data, None, config, Accelerator())


def test_too_little_training_data_for_one_batch_is_named(tmp_path):
    from accelerate import Accelerator

    data = TensorDataset({"inputs_embeds": torch.randn(10, 6), "labels": torch.zeros(10, 2)})
    config = TrainingConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=16, dataloader_drop_last=True
    )
    with pytest.raises(ValueError, match="no full batch: 10 examples, batches of 16"):
        train(dense_model(), data, None, config, Accelerator())


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(num_experts=4), r"has no field 'num_experts' \(did you mean 'num_task_experts' or 'num_shared_experts'.*\) \(a field of m3vit\)"),
        (dict(tower_hiden_sizes=[64]), r"has no field 'tower_hiden_sizes' \(did you mean 'tower_hidden_sizes'"),
        (dict(num_shared_experts="8"), r"field 'num_shared_experts'.*expected int, got str"),
        (dict(num_shared_experts=2.5), r"field 'num_shared_experts'.*expected int, got float"),
        (dict(expert_hidden_sizes=[16.0]), r"field 'expert_hidden_sizes'"),
    ],
)
def test_unknown_or_mistyped_config_fields_are_named(overrides, message):
    with pytest.raises((ValueError, StrictDataclassFieldValidationError), match=f"(?s){message}"):
        moezoo.create_model("mmoe", **overrides)


def test_whole_numbers_are_accepted_for_float_fields():
    config = moezoo.MMoEConfig(expert_dropout=0, tower_dropout=0)
    assert config.expert_dropout == 0.0 and isinstance(config.expert_dropout, float)


def test_a_config_json_field_no_moezoo_version_writes_is_an_error(tmp_path):
    dense_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_expert": 8}))
    with pytest.raises(ValueError, match=r"has no field 'num_expert' \(did you mean"):
        AutoModel.from_pretrained(tmp_path)


def test_loading_a_checkpoint_into_another_architecture_is_an_error(tmp_path):
    dense_model().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="describes a 'mmoe' model, not a 'ple' one"):
        moezoo.PLEModel.from_pretrained(tmp_path)
    assert isinstance(moezoo.MMoEModel.from_pretrained(tmp_path), moezoo.MMoEModel)


def test_a_wrong_shaped_tensor_is_named_with_both_shapes(tmp_path):
    dense_model().save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["router.levels.0.gate.weight"] = torch.zeros(2, 8, 5)
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(
        OSError, match=r"router.levels.0.gate.weight has shape \[2, 8, 5\] in the checkpoint but \[2, 8, 6\] in the model"
    ):
        moezoo.MMoEModel.from_pretrained(tmp_path)


def test_trainer_predict_returns_the_logits(tmp_path):
    model = dense_model()
    data = Dataset.from_dict({"inputs_embeds": torch.randn(10, 6).tolist(), "labels": [[1.0, 0.5]] * 10})
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, per_device_eval_batch_size=4)
    predictions = Trainer(model=model, args=args).predict(data).predictions
    assert set(predictions) == {"a", "b"} and predictions["a"].shape == (10, 1)
    expected = model.eval()(inputs_embeds=torch.tensor(data["inputs_embeds"])).logits["a"]
    torch.testing.assert_close(torch.as_tensor(predictions["a"]), expected.detach())


def test_materialize_refuses_ragged_or_text_columns():
    with pytest.raises(ValueError, match="rows have different lengths"):
        materialize(Dataset.from_dict({"x": [[1.0], [1.0, 2.0]]}))
    with pytest.raises(ValueError, match="holds string values, not numbers"):
        materialize(Dataset.from_dict({"x": ["a", "b"]}))
    loader = make_dataloader(Dataset.from_dict({"x": [[1.0, 2.0], [3.0, 4.0]], "y": [0, 1]}), 2, False, 0)
    batch = next(iter(loader))
    assert torch.equal(batch["x"], torch.tensor([[1.0, 2.0], [3.0, 4.0]])) and torch.equal(batch["y"], torch.tensor([0, 1]))


class TestProcessor:
    def test_zero_rows_are_refused_at_fit_and_give_an_empty_frame_at_prediction(self, toy_rows, toy_processor, make_toy_model):
        with pytest.raises(ValueError, match="Cannot fit a TabularProcessor on 0 rows"):
            moezoo.TabularProcessor.fit(toy_rows.head(0), ["age"], ["sex"])
        scores = moezoo.inference.predict_rows(make_toy_model("mmoe"), toy_processor, toy_rows.head(0))
        assert list(scores.columns) == ["y1", "y2"] and len(scores) == 0

    def test_a_single_row_dict_is_one_row(self, toy_rows, toy_processor, make_toy_model):
        model = make_toy_model("mmoe")
        row = toy_rows.iloc[3].to_dict()
        scores = moezoo.inference.predict_rows(model, toy_processor, row)
        expected = moezoo.inference.predict_rows(model, toy_processor, toy_rows.iloc[[3]])
        pd.testing.assert_frame_equal(scores, expected)

    def test_label_columns_are_ignored_by_predict_rows_and_named_when_not_numbers(self, toy_rows, toy_processor, make_toy_model):
        rows = toy_rows.head(4).assign(y1=["yes", "no", "yes", "no"])
        scores = moezoo.inference.predict_rows(make_toy_model("mmoe"), toy_processor, rows)
        assert len(scores) == 4
        with pytest.raises(ValueError, match="Label column 'y1' holds a non-numeric value"):
            toy_processor(rows, require_labels=True)

    def test_a_label_used_as_a_feature_is_refused(self, toy_rows):
        with pytest.raises(ValueError, match=r"Column\(s\) \['y1'\] are both labels and input features"):
            moezoo.TabularProcessor.fit(toy_rows, ["age", "y1"], ["sex"], label_columns=["y1", "y2"])

    def test_values_of_another_type_or_mostly_unseen_draw_a_warning_naming_the_feature(self):
        rows = pd.DataFrame({"age": [30.0, 40.0, 50.0], "code": ["32", "33", "34"]})
        processor = moezoo.TabularProcessor.fit(rows, ["age"], ["code"])
        with pytest.warns(UserWarning) as record:
            processor(pd.DataFrame({"age": [30.0], "code": [32.0]}))
        messages = [str(warning.message) for warning in record]
        assert any("'code' holds floating values, but its vocabulary was fitted on string" in m for m in messages)
        assert any("100% of the values of categorical feature 'code'" in m for m in messages)
        with pytest.warns(UserWarning, match=r"100% of the values of categorical feature 'code' are not in its vocabulary"):
            processor(pd.DataFrame({"age": [30.0, 31.0], "code": [" 32", " 33"]}))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            processor(pd.DataFrame({"age": [30.0] * 20, "code": ["32"] * 19 + ["99"]}))  # 5% unseen: no warning

    def test_a_processor_of_other_features_than_the_saved_model_is_refused(self, tmp_path, toy_rows, toy_processor, make_toy_model):
        make_toy_model("mmoe").save_pretrained(tmp_path)
        other = moezoo.TabularProcessor.fit(toy_rows, ["age"], ["sex"], label_columns=["y1", "y2"])
        with pytest.raises(ValueError, match="reads other features than this processor produces"):
            other.save_pretrained(tmp_path)
        assert not (tmp_path / "preprocessor_config.json").exists()
        with pytest.raises(ValueError, match="does not produce the features the model reads"):
            moezoo.inference.predict_rows(make_toy_model("mmoe"), other, toy_rows)


def test_saving_a_model_over_another_removes_that_models_files(tmp_path, toy_rows, toy_processor, make_toy_model):
    first = make_toy_model("mmoe")
    first.save_pretrained(tmp_path, max_shard_size="1KB")  # sharded: an index and several files
    toy_processor.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors.index.json").exists()
    dense_model().save_pretrained(tmp_path)  # another model, which reads no tabular features
    assert sorted(path.name for path in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert isinstance(AutoModel.from_pretrained(tmp_path), moezoo.MMoEModel)

    # The same model saved again keeps its matching processor.
    first.save_pretrained(tmp_path)
    toy_processor.save_pretrained(tmp_path)
    first.save_pretrained(tmp_path)
    assert (tmp_path / "preprocessor_config.json").exists()
