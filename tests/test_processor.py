import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor

import moezoo
from moezoo.tabular import OUT_OF_VOCABULARY_INDEX, TabularProcessor


def test_fit_learns_statistics_and_vocabularies(toy_rows, toy_processor):
    assert toy_processor.numeric_mean == pytest.approx([toy_rows.age.mean(), toy_rows.hours.mean()])
    assert toy_processor.numeric_std == pytest.approx([toy_rows.age.std(ddof=0), toy_rows.hours.std(ddof=0)])
    assert toy_processor.vocabularies == {"sex": ["F", "M"], "job": ["a", "b", "c", "d"]}
    schema = toy_processor.feature_schema
    assert [(c.name, c.vocab_size, c.embedding_dim) for c in schema.categorical] == [("sex", 3, 2), ("job", 5, 3)]
    assert schema.output_size == 2 + 2 + 3


def test_encoding_standardises_and_maps_unseen_to_oov(toy_processor):
    rows = [{"age": 50.0, "hours": 40.0, "sex": "M", "job": "zzz"}, {"age": 20.0, "hours": 30.0, "sex": "F", "job": "c"}]
    with pytest.warns(UserWarning, match="50% of the values of categorical feature 'job' are not in its vocabulary"):
        batch = toy_processor(rows)
    expected_age = (np.array([50.0, 20.0]) - toy_processor.numeric_mean[0]) / toy_processor.numeric_std[0]
    torch.testing.assert_close(batch["numeric_features"][:, 0], torch.tensor(expected_age, dtype=torch.float32))
    assert batch["categorical_features"].tolist() == [[2, OUT_OF_VOCABULARY_INDEX], [1, 3]]
    assert "labels" not in batch
    with pytest.raises(KeyError, match=r"\['y1', 'y2'\]"), pytest.warns(UserWarning, match="'job'"):
        toy_processor(rows, require_labels=True)


def test_labels_are_read_when_present(toy_rows, toy_processor):
    batch = toy_processor(toy_rows.head(3))
    assert torch.equal(batch["labels"], torch.tensor(toy_rows[["y1", "y2"]].head(3).to_numpy(), dtype=torch.float32))


def test_missing_feature_and_non_finite_values_are_named(toy_processor):
    with pytest.raises(KeyError, match=r"\['job'\] are missing"):
        toy_processor([{"age": 1.0, "hours": 2.0, "sex": "F"}])
    with pytest.raises(ValueError, match=r"\['hours'\] hold NaN or inf in 1 row"):
        toy_processor([{"age": 1.0, "hours": float("inf"), "sex": "F", "job": "a"}])
    with pytest.raises(ValueError, match="'age' holds a non-numeric value"):
        toy_processor([{"age": "old", "hours": 2.0, "sex": "F", "job": "a"}])


def test_save_and_load_round_trip_beside_the_model(tmp_path, toy_rows, toy_processor, make_toy_model):
    model = make_toy_model("mmoe")
    model.save_pretrained(tmp_path)
    toy_processor.save_pretrained(tmp_path)
    for loaded in (TabularProcessor.from_pretrained(tmp_path), AutoFeatureExtractor.from_pretrained(tmp_path)):
        assert isinstance(loaded, TabularProcessor)
        for key in ("numeric_features", "categorical_features", "labels"):
            assert torch.equal(loaded(toy_rows)[key], toy_processor(toy_rows)[key])
        assert loaded.feature_schema == toy_processor.feature_schema


def test_predict_rows_scores_raw_rows(toy_rows, toy_processor, make_toy_model):
    model = make_toy_model("mmoe").eval()
    frame = moezoo.inference.predict_rows(model, toy_processor, toy_rows.drop(columns=["y1", "y2"]), batch_size=10)
    logits = model(**{k: v for k, v in toy_processor(toy_rows).items() if k != "labels"}).logits
    assert list(frame.columns) == ["y1", "y2"] and len(frame) == len(toy_rows)
    np.testing.assert_allclose(frame["y1"].to_numpy(), torch.sigmoid(logits["y1"]).squeeze(1).detach().numpy(), rtol=1e-6)


def test_a_missing_value_is_an_error_in_every_column_type(toy_rows, toy_processor):
    row = {"age": 30.0, "hours": 40.0, "sex": "F", "job": "a"}
    for column, missing in (("age", float("nan")), ("hours", None), ("sex", None), ("job", float("nan"))):
        kind = "Numeric" if column in ("age", "hours") else "Categorical"
        with pytest.raises(ValueError, match=rf"{kind} feature\(s\) \['{column}'\] hold .* in 1 row\(s\) \(first at position\(s\) \[1\]\)"):
            toy_processor([row, {**row, column: missing}])
    with pytest.raises(ValueError, match=r"Categorical feature\(s\) \['sex'\] hold missing values"):
        TabularProcessor.fit(toy_rows.assign(sex=[None] + list(toy_rows.sex[1:])), ["age"], ["sex"])


def test_values_far_outside_the_training_range_are_warned_by_feature(toy_processor):
    mean, std = toy_processor.numeric_mean[0], toy_processor.numeric_std[0]
    edge = mean + 99 * std  # within the threshold: no word
    rows = [{"age": edge, "hours": 40.0, "sex": "F", "job": "a"}]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        toy_processor(rows)
    with pytest.warns(UserWarning) as caught:
        toy_processor([*rows, {"age": 1e9, "hours": 40.0, "sex": "F", "job": "a"}])
    messages = [str(warning.message) for warning in caught]
    assert len(messages) == 1
    assert messages[0].startswith(
        "Numeric feature 'age' holds values more than 100 training standard deviations from its training mean in 1 "
        f"row(s) (first at position 1: 1e+09, {(1e9 - mean) / std:.3g} standard deviations away;"
    )
