"""The GLUE recipe trains a multi-task adapter on the five-task mix and reloads its best checkpoint."""

import sys
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

from moezoo.adapters import AdaptedTransformerModel

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes"))
from train_glue import main as train_glue  # noqa: E402

WORDS = "the a is of and to in it that was movie film good bad not man woman plane playing".split()


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """A tiny BERT with a tiny WordPiece vocabulary, saved as a base model folder."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz"]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab.read_text().split()), hidden_size=16, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=32)).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("method", ["multi_head_lora", "align_lora"])
def test_the_recipe_trains_every_task_and_reloads_its_best_checkpoint(method, tiny_base, tmp_path, data_dir):
    argv = [
        str(REPO / "recipes" / "configs" / "glue_multi_head_lora.yaml"), "--base_model", str(tiny_base),
        "--adapter_method", method, "--max_train_samples_per_task", "24", "--max_eval_samples_per_task", "16",
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


def test_bad_flags_are_named(tiny_base, tmp_path):
    with pytest.raises(ValueError, match=r"Unknown GLUE task 'sst'.*'sst2'"):
        train_glue(["--tasks", "sst", "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match=r"Unknown adapter_method 'hydra'"):
        train_glue(["--adapter_method", "hydra", "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="adapter is not valid JSON"):
        train_glue(["--adapter", "{r: 8}", "--output_dir", str(tmp_path)])
