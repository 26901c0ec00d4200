"""The GLUE recipe trains a multi-task adapter on the five-task mix and reloads its best checkpoint."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from moezoo.adapters import AdaptedTransformerModel
from moezoo.cli import main as moezoo_command
from moezoo.hub.folder import write_card
from moezoo.training import list_checkpoints

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes"))
from train_glue import main as train_glue  # noqa: E402

@pytest.mark.parametrize("method", ["multi_head_lora", "align_lora"])
def test_the_recipe_trains_every_task_and_reloads_its_best_checkpoint(method, tiny_glue_base, tmp_path, data_dir, capsys):
    argv = [
        str(REPO / "recipes" / "configs" / "glue_multi_head_lora.yaml"), "--base_model", str(tiny_glue_base),
        "--adapter_method", method, "--max_train_samples_per_task", "24", "--max_validation_samples_per_task", "16",
        "--max_seq_length", "24", "--num_train_epochs", "1", "--output_dir", str(tmp_path),
    ]
    if method == "align_lora":
        # Flags override the YAML's adapter key by key: null drops its multi-head settings.
        argv += ["--adapter", '{"r": 4, "num_heads": null, "router": null}']
    result = train_glue(argv)
    test = result.summary["test"]
    for metric in ("cola/mcc", "sst2/accuracy", "mrpc/f1", "rte/accuracy", "stsb/pearson"):
        assert metric in test, metric
    best = AdaptedTransformerModel.from_pretrained(tmp_path / "best")
    assert best.config.adapter_method == method and best.task_names == ["cola", "sst2", "mrpc", "rte", "stsb"]
    assert (tmp_path / "best" / "tokenizer_config.json").is_file()
    assert not (tmp_path / "best" / "model.safetensors").exists()  # adapter-style: no base weights
    assert result.summary["num_parameters"] == best.num_parameters()

    # `moezoo evaluate` rebuilds the run's test split from its results.json and the saved tokenizer.
    capsys.readouterr()  # the training's own output
    assert moezoo_command(["evaluate", str(tmp_path / "best"), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    for name, value in test.items():
        assert evaluated[name] == pytest.approx(value, abs=1e-5), name

    # The card: the base model in the metadata, GLUE's metrics in the model-index, the adapter's figure.
    write_card(tmp_path / "best")
    card = ModelCard.load(tmp_path / "best" / "README.md")
    assert card.data.base_model == str(tiny_glue_base) and card.data.base_model_relation == "adapter"
    assert card.data.language == "en" and method in card.data.tags and "peft" in card.data.tags
    assert card.data.license == "other" and card.data.license_link == "https://huggingface.co/datasets/nyu-mll/glue"
    scores = {(result.task_name, result.metric_type): result.metric_value for result in card.data.eval_results}
    assert {result.dataset_split for result in card.data.eval_results} == {"validation"}  # GLUE's dev set, on the Hub
    assert scores[("cola", "matthews_correlation")] == round(test["cola/mcc"], 6)
    assert scores[("stsb", "pearsonr")] == round(test["stsb/pearson"], 6)
    assert f"**Adapter:** `{method}`" in card.text and "AutoTokenizer.from_pretrained" in card.text
    assert (tmp_path / "best" / "routing.png").is_file() and "](routing.png)" in card.text
    if method == "align_lora":  # which loss form it trained with, and how the other differs
        assert "with weight 0.2 in the `authors` form, as the authors' code computes it" in card.text
        assert "(the `pooled` form is moezoo's variant" in card.text


def test_training_continues_from_a_checkpoint_and_resumes_exactly(tiny_glue_base, tmp_path, data_dir):
    argv = [
        str(REPO / "recipes" / "configs" / "glue_mhr.yaml"), "--base_model", str(tiny_glue_base),
        "--max_train_samples_per_task", "24", "--max_validation_samples_per_task", "16", "--max_seq_length", "24",
        "--num_train_epochs", "2", "--per_device_train_batch_size", "16", "--checkpointing_steps", "4",
    ]
    reference = tmp_path / "reference"
    train_glue([*argv, "--output_dir", str(reference)])
    steps = [path.name for path in list_checkpoints(reference)]
    assert steps == ["step_00000012", "step_00000016"]  # the last two are kept

    # A run cut after step 12 (mid-way through epoch 2), resumed from there, ends bitwise where the
    # uninterrupted one did.
    resumed = tmp_path / "resumed"
    shutil.copytree(reference, resumed)
    shutil.rmtree(resumed / "checkpoints" / steps[1])
    train_glue([*argv, "--output_dir", str(resumed), "--resume_from_checkpoint", str(resumed / "checkpoints" / steps[0])])
    final_reference = load_file(reference / "checkpoints" / steps[-1] / "model.safetensors")
    final_resumed = load_file(resumed / "checkpoints" / steps[-1] / "model.safetensors")
    assert final_reference.keys() == final_resumed.keys()
    for name in final_reference:
        assert torch.equal(final_reference[name], final_resumed[name]), name

    # Fine-tuning from the saved model starts from its adapter and heads; other settings are named.
    continued = train_glue([*argv, "--output_dir", str(tmp_path / "continued"), "--model_name_or_path", str(reference / "best"),
                            "--num_train_epochs", "1"])
    assert continued.summary["arguments"]["model_name_or_path"] == str(reference / "best")
    with pytest.raises(ValueError, match=r"differs from the run's settings \(adapter_method: 'mhr' in the checkpoint, 'lora' here"):
        train_glue([*argv, "--output_dir", str(tmp_path / "other"), "--model_name_or_path", str(reference / "best"),
                    "--adapter_method", "lora", "--adapter", '{"n_skills": null, "n_splits": null}'])
    with pytest.raises(ValueError, match=r"tasks"):
        train_glue([*argv, "--output_dir", str(tmp_path / "fewer"), "--model_name_or_path", str(reference / "best"),
                    "--tasks", "sst2", "rte"])


def test_bad_flags_are_named(tiny_glue_base, tmp_path):
    with pytest.raises(ValueError, match=r"Unknown GLUE task 'sst'.*'sst2'"):
        train_glue(["--tasks", "sst", "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match=r"Unknown adapter_method 'hydra'"):
        train_glue(["--adapter_method", "hydra", "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="adapter is not valid JSON"):
        train_glue(["--adapter", "{r: 8}", "--output_dir", str(tmp_path)])
