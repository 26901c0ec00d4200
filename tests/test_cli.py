"""The `moezoo` command: its output, and one-line errors with a non-zero exit for a user's mistakes."""

import importlib.metadata
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import moezoo
from moezoo.cli import main
from moezoo.data import load_census_income
from moezoo.training.launch import launch_command
from moezoo.zoo import ZOO, entry_folder

ENTRY = "mmoe-census-income"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def census_entry():
    folder = entry_folder(ENTRY)
    if folder is None:
        pytest.skip(f"the {ENTRY} zoo entry is not built in this checkout")
    return folder


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_command_is_installed():
    scripts = {entry.name: entry.value for entry in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts.get("moezoo") == "moezoo_cli:main"


def test_list_shows_architectures_and_every_entry(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0 and "Architectures: cgc, dselect_k, dselect_k_static, home, m3vit, mmoe" in out
    assert "Adapter methods (on a pretrained transformer): lora, align_lora, multi_head_lora, mhr, frozen" in out
    assert all(name in out for name in ZOO)
    code, out, _ = run(capsys, "list", "--json")
    listed = json.loads(out)
    assert {entry["name"] for entry in listed["zoo"]} == set(ZOO) and "home" in listed["architectures"]
    assert "mhr" in listed["adapter_methods"]


def test_list_shows_each_tasks_headline_metric_beside_the_entrys_baseline(capsys, monkeypatch, tmp_path, census_entry):
    zoo = tmp_path / "zoo"
    shutil.copytree(census_entry, zoo / "mmoe-census-income")
    results = json.loads((census_entry / "results.json").read_text())
    results["baselines"] = {"single-task MLP": {"description": "one per task", "test": {"income/auc": 0.9411, "marital/auc": 0.9922}}}
    (zoo / "mmoe-census-income" / "results.json").write_text(json.dumps(results))
    monkeypatch.setenv("MOEZOO_ZOO_DIR", str(zoo))
    code, out, _ = run(capsys, "list")
    row = next(line for line in out.splitlines() if line.startswith("mmoe-census-income"))
    test = results["test"]
    assert f"income auc {test['income/auc']:.4f} (0.9411), marital auc {test['marital/auc']:.4f} (0.9922)" in row
    assert "In brackets: the entry's baseline at the same budget (single-task MLP" in out
    listed = json.loads(run(capsys, "list", "--json")[1])["zoo"]
    entry = next(item for item in listed if item["name"] == "mmoe-census-income")
    assert entry["baseline"] == {"label": "single-task MLP", "metrics": {"income/auc": 0.9411, "marital/auc": 0.9922}}


def test_evaluate_reproduces_the_entrys_results(capsys, census_entry, data_dir):
    code, out, err = run(capsys, "evaluate", ENTRY, "--json")
    assert code == 0 and "evaluating" in err  # a progress bar over the batches
    metrics = json.loads(out)
    expected = json.loads((census_entry / "results.json").read_text())["test"]
    for name in ("income/auc", "marital/auc", "income/accuracy"):
        assert round(metrics[name], 4) == round(expected[name], 4)
    code, out, _ = run(capsys, "evaluate", ENTRY)
    assert code == 0 and f"{expected['marital/auc']:.4f}" in out and out.splitlines()[0].split() == ["task", "metric", "test"]


def test_predict_scores_a_csv_of_raw_rows(capsys, census_entry, data_dir, tmp_path):
    rows = load_census_income(data_dir)["test"].select(range(20)).to_pandas().drop(columns=["income", "marital"])
    rows.to_csv(tmp_path / "rows.csv", index=False)
    code, out, _ = run(capsys, "predict", ENTRY, str(tmp_path / "rows.csv"), "--output", str(tmp_path / "out.csv"))
    assert code == 0 and "Wrote 20 rows" in out
    predictions = pd.read_csv(tmp_path / "out.csv")
    assert list(predictions.columns) == ["income", "marital"] and len(predictions) == 20
    assert ((predictions >= 0) & (predictions <= 1)).all().all()
    code, _, err = run(capsys, "predict", ENTRY, str(tmp_path / "rows.csv"), "--output", str(tmp_path / "out.csv"))
    assert code == 1 and "out.csv exists; pass --overwrite" in err

    rows.drop(columns=["age"]).to_csv(tmp_path / "no_age.csv", index=False)
    code, _, err = run(capsys, "predict", ENTRY, str(tmp_path / "no_age.csv"))
    assert code == 1 and "['age'] are missing" in err and len(err.strip().splitlines()) == 1
    rows.assign(wage_per_hour=[0] * 3 + ["abc"] + [0] * 16).to_csv(tmp_path / "bad_value.csv", index=False)
    code, _, err = run(capsys, "predict", ENTRY, str(tmp_path / "bad_value.csv"))
    assert code == 1 and "'wage_per_hour'" in err and "position 3" in err
    rows.assign(wage_per_hour=[0] * 7 + ["n/a"] + [0] * 12).to_csv(tmp_path / "missing_value.csv", index=False)
    code, _, err = run(capsys, "predict", ENTRY, str(tmp_path / "missing_value.csv"))
    assert code == 1 and "['wage_per_hour'] hold NaN or inf in 1 row(s) (first at position(s) [7])" in err


def test_card_writes_a_folders_card_and_refuses_to_overwrite(capsys, census_entry, tmp_path):
    folder = tmp_path / "entry"
    shutil.copytree(census_entry, folder)
    (folder / "README.md").unlink()
    code, out, _ = run(capsys, "card", str(folder))
    assert code == 0 and (folder / "README.md").is_file() and (folder / "routing.png").is_file()
    assert "roc_auc" in (folder / "README.md").read_text()
    code, _, err = run(capsys, "card", str(folder))
    assert code == 1 and "README.md exists; pass --overwrite" in err
    (folder / "results.json").unlink()
    code, _, _ = run(capsys, "card", str(folder), "--overwrite")
    assert code == 0 and "No evaluation results were recorded" in (folder / "README.md").read_text()


def test_mistakes_are_one_line_and_a_non_zero_exit(capsys, tmp_path):
    code, _, err = run(capsys, "evaluate", "mmoe-census-inc")
    assert code == 1 and err.startswith("moezoo evaluate: error: 'mmoe-census-inc' is no folder and no zoo entry")
    assert "did you mean 'mmoe-census-income'" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "card", str(tmp_path))
    assert code == 1 and "is not a checkpoint folder (no config.json)" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", ENTRY, "--split", "dev"])
    assert exit_info.value.code == 2 and "invalid choice: 'dev'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", ENTRY, "--batch_size", "0"], "argument --batch_size: must be at least 1, got 0"),
        (["evaluate", ENTRY, "--batch_size", "-3"], "argument --batch_size: must be at least 1, got -3"),
        (["evaluate", ENTRY, "--batch_size", "1.5"], "argument --batch_size: invalid int value: '1.5'"),
        (["train", "--num_processes", "0", ENTRY], "argument --num_processes: must be at least 1, got 0"),
        (["train", "--num_processes", "two", ENTRY], "argument --num_processes: invalid int value: 'two'"),
    ],
)
def test_every_subcommand_refuses_invalid_numbers(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.strip().splitlines()[-1] == f"moezoo {argv[0]}: error: {message}"


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["list", "--json"], ["evaluate", ENTRY, "--bogus"]])
def test_help_list_and_a_misspelt_flag_answer_without_importing_torch(argv):
    # The installed command's entry point: answering these must not pay for torch, transformers or PEFT.
    probe = (
        "import sys, moezoo_cli\n"
        "try:\n    moezoo_cli.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(name for name in ('torch', 'transformers', 'peft', 'moezoo') if name in sys.modules)\n"
        "print('imported:', heavy, file=sys.stderr)\n"
    )
    completed = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, cwd=REPO)
    assert completed.stderr.strip().splitlines()[-1] == "imported: []", completed.stderr[-2000:]


def test_the_commands_index_names_what_moezoo_registers():
    from moezoo.adapters import ADAPTER_METHODS
    from moezoo_cli import catalog

    assert list(catalog.ARCHITECTURES) == moezoo.list_models()
    assert list(catalog.ADAPTER_METHODS) == list(ADAPTER_METHODS)


def test_a_damaged_entry_is_named_by_its_cause_and_the_others_are_still_listed(capsys, monkeypatch, tmp_path, census_entry):
    zoo = tmp_path / "zoo"
    for name in ("mmoe-census-income", "ple-census-income", "home-census-income"):
        shutil.copytree(census_entry.parent / name, zoo / name)
    (zoo / "ple-census-income" / "results.json").write_text('{"test": {"mean_auc": 0.9')
    (zoo / "home-census-income" / "config.json").unlink()
    monkeypatch.setenv("MOEZOO_ZOO_DIR", str(zoo))
    code, out, _ = run(capsys, "list")
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in ZOO}
    assert code == 0
    assert f"damaged: {zoo / 'ple-census-income' / 'results.json'} is not valid JSON" in rows["ple-census-income"]
    assert f"damaged: {zoo / 'home-census-income'} has no config.json" in rows["home-census-income"]
    assert str(zoo / "mmoe-census-income") in rows["mmoe-census-income"] and "income auc 0.9" in rows["mmoe-census-income"]
    code, _, err = run(capsys, "evaluate", "home-census-income")
    assert code == 1 and f"Zoo entry 'home-census-income' is damaged: {zoo / 'home-census-income'} has no config.json" in err
    assert "Rebuild it with `python recipes/build_zoo.py home-census-income`" in err


def test_train_finds_the_recipe_of_a_yaml_an_entry_or_a_script():
    tabular, image = str(REPO / "recipes" / "train_tabular.py"), str(REPO / "recipes" / "train_image.py")
    mmoe_yaml = str(REPO / "recipes" / "configs" / "census_income_mmoe.yaml")
    assert launch_command("recipes/configs/census_income_mmoe.yaml", ["--seed", "1"])[1:] == [tabular, mmoe_yaml, "--seed", "1"]
    assert launch_command("mmoe-multi-fashion-mnist")[1:] == [
        image, str(REPO / "recipes" / "configs" / "multi_mnist_dselect_k.yaml"), "--dataset", "fashion-mnist",
        "--model_name", "mmoe",
    ]
    assert launch_command("recipes/train_tabular.py", [mmoe_yaml])[1:] == [tabular, mmoe_yaml]
    # An architecture with its own recipe (M3ViT's) is trained by it, whatever the data set.
    vit, vit_yaml = str(REPO / "recipes" / "train_vit.py"), str(REPO / "recipes" / "configs" / "multi_mnist_m3vit.yaml")
    assert launch_command("recipes/configs/multi_mnist_m3vit.yaml")[1:] == [vit, vit_yaml]
    assert launch_command("m3vit-multi-mnist")[1:] == [vit, vit_yaml]
    glue, mhr_yaml = str(REPO / "recipes" / "train_glue.py"), str(REPO / "recipes" / "configs" / "glue_mhr.yaml")
    assert launch_command("recipes/configs/glue_mhr.yaml")[1:] == [glue, mhr_yaml]  # an adapter config
    assert launch_command("mhr-glue")[1:] == [glue, mhr_yaml]
    command = launch_command("ple-census-income", ["--num_train_epochs", "1"], num_processes=2)
    assert command[1:7] == ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines"]
    assert command[-5:] == [mmoe_yaml, "--model_name", "ple", "--num_train_epochs", "1"]
    port = int(command[command.index("--main_process_port") + 1])  # a free one, not the default every run shares
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))


def test_train_errors_name_the_problem(capfd, tmp_path):
    code, _, err = run(capfd, "train", "ple-census-incme")
    assert code == 1 and "No zoo entry 'ple-census-incme' (did you mean 'ple-census-income'" in err
    config = tmp_path / "other.yaml"
    config.write_text("dataset: cifar\n")
    code, _, err = run(capfd, "train", str(config))
    assert code == 1 and "names data set 'cifar'; the recipes train on ['census_income', 'fashion-mnist', 'glue', 'mnist']" in err
    # The recipe's own mistakes come back the same way, from its process.
    code = main(["train", "recipes/configs/census_income_mmoe.yaml", "--num_train_epoch", "3"])
    err = capfd.readouterr().err
    assert code == 1 and err.startswith("train_tabular.py: error: Unknown argument(s) '--num_train_epoch'")
    assert len(err.strip().splitlines()) == 1


def test_train_runs_a_recipe(capfd, tmp_path, data_dir):
    code = main([
        "train", "mmoe-census-income", "--output_dir", str(tmp_path), "--data_dir", str(data_dir),
        "--max_train_samples", "2000", "--max_eval_samples", "1000", "--num_train_epochs", "1",
    ])
    assert code == 0, capfd.readouterr().err[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["completed"] is True and results["arguments"]["model_name"] == "mmoe"
    assert 0.5 < results["test"]["income/auc"] <= 1
