"""Publishing: push to and pull from a Hub endpoint on 127.0.0.1 through the real `huggingface_hub`
client with its defaults (in a subprocess, so that ``HF_ENDPOINT`` is set before the client is imported),
and the errors that leave the Hub untouched.

Not covered here (see `local_hub` for what the endpoint checks): uploads through Xet storage itself (the
endpoint has none, as a self-hosted Hub may not: the client's Xet attempt and the LFS fallback are what
is tested), private repositories, pull requests, the multipart LFS transfer.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from local_hub import TOKEN, LocalHub
from moezoo.cli import main
from moezoo.zoo import entry_folder

REPO = Path(__file__).resolve().parents[1]
PUSHED_ENTRIES = ("mmoe-census-income", "dselect-k-multi-mnist", "multi-head-lora-glue")


@pytest.fixture(scope="module")
def pushed(tmp_path_factory, data_dir):
    if any(entry_folder(name) is None for name in PUSHED_ENTRIES):
        pytest.skip(f"the zoo entries {PUSHED_ENTRIES} are not built in this checkout")
    scratch = tmp_path_factory.mktemp("push")
    environment = {name: value for name, value in os.environ.items() if name not in ("HF_HUB_OFFLINE", "MOEZOO_DEBUG")}
    with LocalHub() as hub:
        environment.update(
            HF_ENDPOINT=hub.endpoint,
            HF_HOME=str(scratch / "hf_home"),  # an empty cache: everything pulled comes from the endpoint
            HF_TOKEN=TOKEN,
            PYTHONPATH=str(REPO),
        )
        completed = subprocess.run(
            [sys.executable, str(REPO / "tests" / "scripts" / "push_and_pull.py"), str(scratch / "report.json"),
             str(scratch / "work"), *PUSHED_ENTRIES],
            env=environment, capture_output=True, text=True, timeout=600,
        )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads((scratch / "report.json").read_text()), hub.state, completed.stderr


def test_the_client_made_only_calls_the_endpoint_answers(pushed):
    _, state, _ = pushed
    # The client first asks for Xet storage (huggingface_hub's default), which this endpoint does not offer.
    assert {request for request in state.unhandled if "/xet-write-token/" not in request} == set()
    assert any(request.startswith("PUT /lfs-upload/") for request in state.requests)  # weights went through LFS
    assert any(request.startswith("GET /lfs-files/") for request in state.requests)  # and came back redirected
    assert state.leaked_tokens == []  # the client sent no token to the storage host


def test_push_falls_back_to_lfs_where_the_endpoint_has_no_xet_and_says_so_in_one_line(pushed):
    _, state, stderr = pushed
    fallback_lines = [line for line in stderr.splitlines() if "offers no Xet storage" in line]
    assert fallback_lines and set(fallback_lines) == {
        f"The Hub at {fallback_lines[0].split()[3]} offers no Xet storage; uploading through LFS instead."
    }
    assert fallback_lines[0].split()[3].startswith("http://127.0.0.1:")
    pushes = [request for request in state.requests if "/xet-write-token/" in request]
    assert len(fallback_lines) == len(pushes)  # one line per upload that tried Xet


def test_a_refused_token_is_one_line_and_commits_nothing(pushed):
    report, state, stderr = pushed
    assert report["refused_token_status"] == 1
    assert "test-org/refused" not in state.repositories
    assert any(request.startswith("POST /api/repos/create") for request in state.refused)
    assert "moezoo push: error: " in stderr and "401" in stderr


def test_the_endpoint_refuses_a_commit_on_a_stale_parent(pushed):
    report, _, _ = pushed
    assert report["stale_parent"] == "412, the file holds 'second'"


def test_every_architecture_and_the_processor_round_trip_through_push_to_hub(pushed):
    report, state, _ = pushed
    assert report["architectures"] == {name: True for name in report["architectures"]}
    assert {"mmoe", "ple", "dselect_k", "home", "m3vit", "processor"} <= set(report["architectures"])
    for name in report["architectures"]:
        if name != "processor":
            assert {"config.json", "model.safetensors", "README.md"} <= set(state.repositories[f"test-org/{name}"].files)


@pytest.mark.parametrize("name", PUSHED_ENTRIES)
def test_a_pushed_zoo_entry_holds_the_folder_byte_for_byte_and_predicts_identically(pushed, name):
    entry = pushed[0]["entries"][name]
    assert entry["status"] == 0
    weights = {"adapter/adapter_model.safetensors", "heads.safetensors", "tokenizer.json"} if name.endswith("-glue") else {"model.safetensors"}
    assert {"README.md", "config.json", "results.json", "routing.png", *weights} <= set(entry["local_files"])
    assert entry["remote_files"] == entry["local_files"]  # the card too: the model's push_to_hub kept it
    assert entry["predictions_equal"] is True


def test_pushing_a_folder_without_weights_fails_before_any_request(pushed):
    report, state, _ = pushed
    assert report["no_weights_status"] == 1
    assert "test-org/no-weights" not in state.repositories
    assert not any("no-weights" in request for request in state.requests)


def test_push_errors_name_the_problem(capsys, tmp_path):
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    assert main(["push", str(folder), "org/name"]) == 1
    assert "is not a checkpoint folder (no config.json)" in capsys.readouterr().err
    source = entry_folder("mmoe-census-income")
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_bytes((source / name).read_bytes())
    assert main(["push", str(folder), "org/name"]) == 1
    assert f"has no model card (README.md); write it with `moezoo card {folder}` first" in capsys.readouterr().err
    assert main(["push", "not-an-entry", "org/name"]) == 1
    assert "no folder and no zoo entry" in capsys.readouterr().err


def test_a_push_that_cannot_reach_the_hub_is_one_line(capsys, tmp_path):
    entry = str(entry_folder("mmoe-census-income"))
    assert main(["push", entry, "org/name"]) == 1  # HF_HUB_OFFLINE=1 in the test session
    err = capsys.readouterr().err
    assert err.startswith("moezoo push: error: Cannot reach") and "offline mode is enabled" in err
    with LocalHub() as hub:
        closed_endpoint = hub.endpoint  # nothing listens there once the block ends
    environment = {name: value for name, value in os.environ.items() if name not in ("HF_HUB_OFFLINE", "MOEZOO_DEBUG")}
    environment.update(HF_ENDPOINT=closed_endpoint, HF_HOME=str(tmp_path), HF_TOKEN=TOKEN)
    completed = subprocess.run(
        [sys.executable, "-m", "moezoo.cli", "push", entry, "org/name"], env=environment, capture_output=True, text=True
    )
    assert completed.returncode == 1
    assert completed.stderr.strip().splitlines() == [
        f"moezoo push: error: cannot reach the Hub at {closed_endpoint}: [Errno 111] Connection refused"
    ]
