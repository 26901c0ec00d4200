"""Model cards (huggingface_hub.ModelCard) and their gate-weight figure."""

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

import moezoo
from moezoo.hub import CardDetails, DatasetDescription, build_model_card, measure_gate_weights, plot_gate_weights, task_parameter_counts

REPO = Path(__file__).resolve().parents[1]
CENSUS = DatasetDescription("Census-Income (KDD)", "census-income-kdd", "tabular-classification", license="cc-by-4.0")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data_dir):
    sys.path.insert(0, str(REPO / "recipes"))
    from train_tabular import main as train_tabular

    output_dir = tmp_path_factory.mktemp("run")
    train_tabular([
        str(REPO / "recipes" / "configs" / "census_income_mmoe.yaml"), "--output_dir", str(output_dir), "--data_dir", str(data_dir),
        "--max_train_samples", "3000", "--max_eval_samples", "1000", "--num_train_epochs", "1",
    ])
    return output_dir


def test_card_metadata_and_model_index_come_from_results_json(trained_run, tmp_path):
    results = json.loads((trained_run / "results.json").read_text())
    model = moezoo.MMoEModel.from_pretrained(trained_run / "best")
    details = CardDetails(model_id=str(trained_run / "best"), dataset=CENSUS, processor_class="AutoFeatureExtractor", command="python recipes/train_tabular.py ...")
    build_model_card(model, results, details).save(tmp_path / "README.md")

    card = ModelCard.load(tmp_path / "README.md")
    metadata = card.data.to_dict()
    assert metadata["library_name"] == "moezoo" and metadata["license"] == "cc-by-4.0"
    assert {"mixture-of-experts", "multi-task", "mmoe"} <= set(metadata["tags"])
    # The model-index validates with huggingface_hub's own parser and holds exactly results.json's numbers.
    _, parsed = model_index_to_eval_results(metadata["model-index"])
    reported = {(result.task_name, result.metric_type): result.metric_value for result in parsed}
    expected = {
        (name.split("/")[0], {"auc": "roc_auc", "accuracy": "accuracy"}[name.split("/")[1]]): round(value, 6)
        for name, value in results["test"].items()
        if name.endswith(("/auc", "/accuracy"))
    }
    assert reported == expected
    text = card.text
    assert "Ma et al., Modeling Task Relationships" in text
    assert f"{model.num_parameters():,}" in text and "python recipes/train_tabular.py ..." in text
    assert results["environment"]["hardware"] in text
    for name, value in results["test"].items():
        if name.endswith("/auc"):
            assert f"{value:.4f}" in text


def test_the_cards_loading_snippet_runs_as_written(trained_run, tmp_path):
    model = moezoo.MMoEModel.from_pretrained(trained_run / "best")
    details = CardDetails(model_id=str(trained_run / "best"), dataset=CENSUS, processor_class="AutoFeatureExtractor")
    card = build_model_card(model, json.loads((trained_run / "results.json").read_text()), details)
    snippet = re.search(r"```python\n(.*?)\n```", str(card), flags=re.S).group(1)
    namespace: dict = {}
    exec(compile(snippet, "model card", "exec"), namespace)
    assert isinstance(namespace["processor"], moezoo.TabularProcessor)
    loaded = namespace["model"].state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(loaded[name], value), name


def test_a_models_deviations_from_its_paper_follow_the_modalitys_limitations():
    model = moezoo.create_model("mmoe", input_size=6)
    plain = build_model_card(model, None, CardDetails(model_id="org/plain", dataset=CENSUS)).text
    limits = plain.split("## Limitations\n\n", 1)[1].split("\n\n##", 1)[0]
    noted = build_model_card(model, None, CardDetails(model_id="org/noted", dataset=CENSUS, deviations="One gate, not two.")).text
    assert noted.split("## Limitations\n\n", 1)[1].startswith(limits + "\n\nOne gate, not two.\n")


def test_a_card_without_results_says_so_and_invents_no_number(tmp_path):
    model = moezoo.create_model("mmoe", input_size=6)
    card = build_model_card(model, None, CardDetails(model_id="org/untested", dataset=CENSUS))
    assert "No evaluation results were recorded" in card.text
    assert "model-index" not in card.data.to_dict()
    card.save(tmp_path / "README.md")
    assert ModelCard.load(tmp_path / "README.md").data.eval_results is None


def test_task_parameter_counts_follow_each_tasks_path():
    # CGC, 2 shared experts + 1 per task, tanh units (none is ever exactly inactive): task a uses the two
    # shared experts and its own (3 x (4*6 + 4)), its gate over those three (3 x (6 + 1)), its tower
    # row (3*4 + 3) and its output layer (3 + 1).
    model = moezoo.create_model(
        "cgc", tasks=[{"name": "a"}, {"name": "b"}], input_size=6, num_shared_experts=2, num_task_experts=1,
        expert_hidden_sizes=[4], tower_hidden_sizes=[3], expert_activation="tanh", tower_activation="tanh",
    )
    counts = task_parameter_counts(model, {"inputs_embeds": torch.randn(64, 6)})
    expected = 3 * (4 * 6 + 4) + 3 * (6 + 1) + (3 * 4 + 3) + (3 + 1)
    assert counts == {"a": expected, "b": expected}


def test_gate_weight_figure(tmp_path):
    model = moezoo.create_model("ple", tasks=[{"name": "a"}, {"name": "b"}], input_size=6)
    batches = [{"inputs_embeds": torch.randn(16, 6)} for _ in range(3)]
    weights = measure_gate_weights(model, batches)
    with torch.no_grad():
        probs = [model(**batch, output_router_probs=True).router_probs for batch in batches]
    for level in (0, 1):
        torch.testing.assert_close(weights[level].float(), torch.cat([p[level] for p in probs]).mean(0), atol=1e-6, rtol=0)
    path = plot_gate_weights(model, weights, tmp_path / "routing.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="No batch reached the model's gates"):
        measure_gate_weights(model, [])


def test_the_learning_curve_shows_each_tasks_validation_metric_and_the_balancing(trained_run, tmp_path):
    import matplotlib.image

    from moezoo.hub.figures import plot_training_history

    results = json.loads((trained_run / "results.json").read_text())
    assert [record["epoch"] for record in results["history"]] == [1] and "eval/income/auc" in results["history"][0]
    history = [
        {"epoch": epoch, "train_loss": 0.5 / epoch, "eval/income/auc": 0.8 + 0.05 * epoch, "eval/marital/auc": 0.9,
         "train/task_weight/income": 1.0 + 0.1 * epoch, "train/task_weight/marital": 1.0 - 0.1 * epoch,
         "train/gradient_cosine/income|marital": -0.1 * epoch, "train/gradient_conflict_rate": 0.2 * epoch}
        for epoch in (1, 2, 3)
    ]
    plain = plot_training_history([{key: value for key, value in record.items() if not key.startswith("train/")}
                                   for record in history], ["income", "marital"], tmp_path / "plain.png")
    balanced = plot_training_history(history, ["income", "marital"], tmp_path / "balanced.png")
    # Three panels (validation, weights, cosines) against one.
    assert matplotlib.image.imread(balanced).shape[1] > 2.5 * matplotlib.image.imread(plain).shape[1]
    with pytest.raises(ValueError, match="holds no validation metrics"):
        plot_training_history([{"epoch": 1, "train_loss": 0.3}], ["income"], tmp_path / "none.png")

    model = moezoo.MMoEModel.from_pretrained(trained_run / "best")
    details = CardDetails(model_id="run", dataset=CENSUS, training_figure="learning_curve.png")
    text = build_model_card(model, results, details).text
    assert "### Learning curve" in text and "](learning_curve.png)" in text
    assert "### Learning curve" not in build_model_card(model, results, CardDetails(model_id="run", dataset=CENSUS)).text


def test_the_baseline_verdict_counts_a_difference_below_the_tables_precision_as_level():
    """Task-vector experts compute their single-task baseline exactly but for float rounding: level, not behind."""
    from moezoo.hub.cards import baselines_table

    test = {"cola/mcc": 0.21734800, "sst2/accuracy": 0.90, "stsb/pearson": 0.86420090}
    baseline = {"cola/mcc": 0.21734802, "sst2/accuracy": 0.91, "stsb/pearson": 0.80}
    table = baselines_table({"test": test, "baselines": {"single-task": {"description": "one per task", "test": baseline}}})
    assert "| cola | mcc | 0.2173 | 0.2173 |" in table
    assert table.endswith("- Against the single-task baseline: behind on `sst2`; level on `cola`; ahead on `stsb`.")
