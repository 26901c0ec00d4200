"""Pushes models to the Hub named by $HF_ENDPOINT and pulls them back, as another machine would.

    HF_ENDPOINT=http://127.0.0.1:PORT python push_and_pull.py REPORT.json SCRATCH_DIR ZOO_ENTRY...

1. Every registered architecture, built small: ``model.push_to_hub``, then ``AutoModel.from_pretrained``
   of the repository against a local save of the model; a tabular processor through its own
   ``push_to_hub`` and back.
2. The zoo entries named through ``moezoo push``, then ``moezoo.from_pretrained`` / ``processor_from_pretrained``
   of the Hub id and ``snapshot_download`` of the repository (an adapter entry: adapter files, heads and
   tokenizer; its base model is read locally).
3. ``moezoo push`` of a folder without weights, and of an entry with a token the Hub refuses.
4. A commit whose ``parentCommit`` is no longer the branch's head.

The client keeps huggingface_hub's defaults (Xet storage when ``hf_xet`` is installed): the endpoint has
no Xet, so every upload goes through `moezoo.hub.push.upload_falling_back_to_lfs`.

Writes what it saw (predictions compared bitwise, file contents, exit statuses) to REPORT.json.
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from huggingface_hub import CommitOperationAdd, HfApi, snapshot_download
from huggingface_hub.errors import HfHubHTTPError
from transformers import AutoFeatureExtractor, AutoModel

import moezoo
from moezoo.data import load_census_income
from moezoo.cli import main as moezoo_command
from moezoo.hub.folder import find_results_file
from moezoo.hub.push import upload_falling_back_to_lfs
from moezoo.zoo import entry_folder

ORG = "test-org"
TASKS = [{"name": "click", "kind": "binary"}, {"name": "rating", "kind": "regression"}]


def toy_processor() -> moezoo.TabularProcessor:
    rng = np.random.default_rng(0)
    rows = pd.DataFrame(
        {
            "age": rng.integers(18, 80, 64).astype(float),
            "job": rng.choice(["a", "b", "c"], 64),
            "click": rng.integers(0, 2, 64),
            "rating": rng.normal(size=64),
        }
    )
    return moezoo.TabularProcessor.fit(rows, ["age"], ["job"], label_columns=["click", "rating"], embedding_dim=3)


def logits_of(model, inputs: dict) -> dict[str, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        return model(**inputs).logits


def same_logits(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[task], second[task]) for task in first)


def push_every_architecture(scratch: Path) -> dict[str, bool]:
    processor = toy_processor()
    tabular = dict(processor(pd.DataFrame({"age": [20.0, 35.0, 61.0], "job": ["a", "c", "z"]})))
    pixels = {"pixel_values": torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(0))}
    equal = {}
    for name in moezoo.list_models():
        torch.manual_seed(0)
        if name == "m3vit":  # a ViT: images, not table rows
            settings = dict(image_size=12, hidden_size=16, num_attention_heads=2, intermediate_size=32, num_experts=4)
            model, inputs = moezoo.create_model(name, tasks=TASKS, **settings), pixels
        else:
            model, inputs = moezoo.create_model(name, tasks=TASKS, features=processor.feature_schema.to_dict()), tabular
        upload_falling_back_to_lfs(lambda: model.push_to_hub(f"{ORG}/{name}"))
        # Compared with the same model loaded from a local save, as another machine would load it: a
        # loaded tensor's memory alignment can change which CPU kernel runs, and so the last bit of a
        # float, against the model built in memory.
        model.save_pretrained(scratch / name)
        local = logits_of(AutoModel.from_pretrained(scratch / name), inputs)
        equal[name] = same_logits(local, logits_of(AutoModel.from_pretrained(f"{ORG}/{name}"), inputs))
    upload_falling_back_to_lfs(lambda: processor.push_to_hub(f"{ORG}/mmoe"))
    pulled = AutoFeatureExtractor.from_pretrained(f"{ORG}/mmoe")
    equal["processor"] = pulled.to_dict() == processor.to_dict()
    return equal


def digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and ".cache" not in path.parts
    }


def push_zoo_entry(name: str) -> dict:
    folder = entry_folder(name)
    repo_id = f"{ORG}/{name}"
    status = moezoo_command(["push", name, repo_id])
    local = digests(folder)
    local["results.json"] = hashlib.sha256(find_results_file(folder).read_bytes()).hexdigest()
    remote = digests(Path(snapshot_download(repo_id)))
    report = {"status": status, "local_files": local, "remote_files": remote}

    local_model, pulled_model = moezoo.from_pretrained(folder), moezoo.from_pretrained(repo_id)
    if (folder / "preprocessor_config.json").is_file():
        rows = load_census_income()["test"].select(range(256)).to_pandas()
        local_scores = moezoo.inference.predict_rows(local_model, moezoo.processor_from_pretrained(folder), rows)
        pulled_scores = moezoo.inference.predict_rows(pulled_model, moezoo.processor_from_pretrained(repo_id), rows)
        report["predictions_equal"] = local_scores.equals(pulled_scores)
    elif local_model.config.model_type == "adapted_transformer":  # an adapter repository: tokens through its tokenizer
        tokenizer = moezoo.processor_from_pretrained(repo_id)
        tokens = dict(tokenizer(["a gripping, funny film", "the plot is a mess"], ["it works", "nothing works"],
                                padding=True, return_tensors="pt"))
        tokens["task_ids"] = torch.tensor([1, 2])
        report["predictions_equal"] = same_logits(logits_of(local_model, tokens), logits_of(pulled_model, tokens))
    else:
        generator = torch.Generator().manual_seed(0)
        size = local_model.config.image_encoder["image_size"]
        pixels = torch.rand(8, 1, size, size, generator=generator)
        report["predictions_equal"] = same_logits(
            logits_of(local_model, {"pixel_values": pixels}), logits_of(pulled_model, {"pixel_values": pixels})
        )
    return report


def push_without_weights(scratch: Path) -> int:
    folder = scratch / "no_weights"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text((entry_folder("mmoe-census-income") / "config.json").read_text())
    (folder / "README.md").write_text("# A card without a model\n")
    return moezoo_command(["push", str(folder), f"{ORG}/no-weights"])


def push_with_a_refused_token() -> int:
    return moezoo_command(["push", "mmoe-census-income", f"{ORG}/refused", "--token", "hf_not_the_hub_token"])


def commit_on_a_stale_parent() -> str:
    """A commit that names the repository's first commit as its parent after a second one landed."""
    api, repo_id = HfApi(), f"{ORG}/stale-parent"
    api.create_repo(repo_id)
    first = api.create_commit(repo_id, [CommitOperationAdd("a.txt", b"first")], commit_message="first").oid
    api.create_commit(repo_id, [CommitOperationAdd("a.txt", b"second")], commit_message="second")
    try:
        api.create_commit(repo_id, [CommitOperationAdd("a.txt", b"stale")], commit_message="stale", parent_commit=first)
        status = "accepted"
    except HfHubHTTPError as error:
        status = str(error.response.status_code)
    return f"{status}, the file holds {Path(api.hf_hub_download(repo_id, 'a.txt')).read_text()!r}"


if __name__ == "__main__":
    report_path, scratch = Path(sys.argv[1]), Path(sys.argv[2])
    report = {
        "architectures": push_every_architecture(scratch / "saved"),
        "entries": {name: push_zoo_entry(name) for name in sys.argv[3:]},
        "no_weights_status": push_without_weights(scratch),
        "refused_token_status": push_with_a_refused_token(),
        "stale_parent": commit_on_a_stale_parent(),
    }
    report_path.write_text(json.dumps(report, indent=2))
