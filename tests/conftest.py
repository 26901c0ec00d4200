import os
import tempfile

# No test touches the network: huggingface_hub reads this when it is first imported, and moezoo's data
# loaders download nothing under it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Data sets downloaded by a test (from a loopback server) go to a cache of the session's own.
os.environ["MOEZOO_CACHE"] = tempfile.mkdtemp(prefix="moezoo-test-cache-")

import numpy as np
import pandas as pd
import pytest
import torch

import moezoo
from moezoo.data import default_data_dir

#: Most xdist workers a run starts: each holds its own copy of torch and of the data it loads.
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config):
    """``--numprocesses=auto`` (the default, pyproject.toml): one worker per core, at most `MAX_WORKERS`."""
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


def pytest_collection_modifyitems(config, items):
    # The slow tests first (a stable sort keeps the rest in order): the workers start on them, so that the
    # run does not wait for one that started last.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_configure(config):
    # Each worker gets its share of the cores, so that the workers' torch threads do not fight over them;
    # subprocesses a test starts (recipes, `accelerate launch`) inherit it through OMP_NUM_THREADS.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def data_dir():
    path = default_data_dir()
    if path is None or not (path / "census-income").is_dir():
        pytest.fail("../shared/data/census-income is required by the test suite (see README).")
    return path


@pytest.fixture(scope="session")
def tiny_bert_folder(tmp_path_factory):
    """A tiny randomly initialised BERT (vocabulary 50, width 16, 2 layers) saved as a base model folder."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(folder)
    return folder


@pytest.fixture
def toy_rows():
    """Small raw tabular rows with two numeric, two categorical features and two binary labels."""
    rng = np.random.default_rng(0)
    n = 64
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, n).astype(float),
            "hours": rng.normal(40, 5, n),
            "sex": rng.choice(["F", "M"], n),
            "job": rng.choice(["a", "b", "c", "d"], n),
            "y1": rng.integers(0, 2, n),
            "y2": rng.integers(0, 2, n),
        }
    )


@pytest.fixture
def toy_processor(toy_rows):
    return moezoo.TabularProcessor.fit(
        toy_rows, ["age", "hours"], ["sex", "job"], label_columns=["y1", "y2"], embedding_dim={"sex": 2, "job": 3}
    )


@pytest.fixture
def make_toy_model(toy_processor):
    """Build a registered architecture on the toy rows' schema, with tasks y1 and y2."""

    def make(name, **overrides):
        config = {
            "tasks": [{"name": "y1", "kind": "binary"}, {"name": "y2", "kind": "binary"}],
            "features": toy_processor.feature_schema.to_dict(),
            **overrides,
        }
        return moezoo.create_model(name, **config)

    return make


GLUE_WORDS = "the a is of and to in it that was movie film good bad not man woman plane playing".split()


@pytest.fixture(scope="session")
def tiny_glue_base(tmp_path_factory):
    """A tiny BERT with a tiny WordPiece vocabulary, saved as a base model folder (for the GLUE recipe)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *GLUE_WORDS, *"abcdefghijklmnopqrstuvwxyz"]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab.read_text().split()), hidden_size=16, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=32)).save_pretrained(folder)
    return folder
