"""A folder that is not there is called missing on every surface that reads a model, not a malformed Hub id."""

import sys
from pathlib import Path

import pytest

import moezoo
from moezoo.adapters import AdaptedTransformerModel
from moezoo.adapters.base_models import load_pretrained
from moezoo.cli import main
from moezoo.locations import looks_like_local_path, require_folder_or_repo_id

REPO = Path(__file__).resolve().parents[1]


def test_local_paths_and_hub_ids_are_told_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    for path in ("./run", "/abs/run", "~/run", "outputs/run", "a/b/c", "../x/y"):
        assert looks_like_local_path(path), path
    for hub_id in ("org/name", "moezoo/mmoe-census-income", "gpt2"):
        assert not looks_like_local_path(hub_id), hub_id
    require_folder_or_repo_id("org/name")  # a Hub id: left to the Hub
    with pytest.raises(FileNotFoundError, match="The checkpoint 'bad id!' is no folder here and no Hub repository id"):
        require_folder_or_repo_id("bad id!")
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="weights.bin is a file"):
        require_folder_or_repo_id("weights.bin")


def test_every_surface_calls_a_missing_folder_missing(tmp_path, capsys):
    from transformers import AutoTokenizer

    missing = str(tmp_path / "runs" / "best")
    surfaces = {
        "moezoo.from_pretrained": lambda: moezoo.from_pretrained(missing),
        "MMoEModel.from_pretrained": lambda: moezoo.MMoEModel.from_pretrained(missing),
        "AdaptedTransformerModel.from_pretrained": lambda: AdaptedTransformerModel.from_pretrained(missing),
        "processor_from_pretrained": lambda: moezoo.processor_from_pretrained(missing),
        "M3ViTModel.from_dense": lambda: moezoo.M3ViTModel.from_dense(missing),
        "an adapter's base model": lambda: AdaptedTransformerModel.from_base(missing, [{"name": "a"}], "lora"),
        "--base_model (a tokenizer)": lambda: load_pretrained(AutoTokenizer, missing),
    }
    for surface, load in surfaces.items():
        with pytest.raises(FileNotFoundError, match=rf"folder {missing} does not exist"):
            load()
    assert main(["evaluate", missing]) == 1
    assert capsys.readouterr().err.strip() == f"moezoo evaluate: error: The checkpoint folder {missing} does not exist."


def test_the_recipes_call_a_missing_checkpoint_missing(tmp_path, data_dir):
    sys.path.insert(0, str(REPO / "recipes"))
    from train_tabular import main as train_tabular

    missing = str(tmp_path / "nowhere" / "best")
    with pytest.raises(FileNotFoundError, match=rf"folder {missing} does not exist"):
        train_tabular([str(REPO / "recipes" / "configs" / "census_income_mmoe.yaml"), "--output_dir", str(tmp_path / "out"),
                       "--data_dir", str(data_dir), "--max_train_samples", "200", "--model_name_or_path", missing])
