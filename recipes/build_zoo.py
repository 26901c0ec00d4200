#!/usr/bin/env python
"""Regenerate a zoo entry's folder, ``model_cards/<entry>/``, from scratch.

    python recipes/build_zoo.py mmoe-census-income [--overwrite]

Trains the entry with its recipe, YAML and fixed seed (`moezoo.zoo.ZOO`), then writes the folder as a
Hub model repository: the best checkpoint (config.json, model.safetensors, preprocessor_config.json),
results.json, the gate-weight figure and the model card, both measured on the test split. The folder
is assembled aside and replaces an existing one only with --overwrite, once it is complete.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from transformers import AutoModel

from moezoo.hub import CardDetails, DatasetDescription, build_model_card, measure_gate_weights, plot_gate_weights, task_parameter_counts
from moezoo.training.checkpoints import replace_folder
from moezoo.zoo import ZOO, get_entry, zoo_dir

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes"))
from train_tabular import DataArguments, load_and_fit_processor  # noqa: E402
from train_tabular import main as train_tabular  # noqa: E402

DATASETS = {
    "census_income": DatasetDescription(
        name="Census-Income (KDD)",
        slug="census-income-kdd",
        task_type="tabular-classification",
        description=(
            "UCI's Census-Income (KDD) survey extract on the MMoE paper's protocol: 199,523 training rows; the "
            "99,762 test rows split 1:1 into validation and test with a fixed seed. Tasks: income above 50K, "
            "never married, college degree; the columns they are read from are not inputs."
        ),
        license="cc-by-4.0",
    ),
}
FIGURE = "routing.png"
CHECKPOINT_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
PROBE_EXAMPLES = 4096


def test_batches(results: dict, folder: Path) -> list[dict]:
    """The entry's test split, encoded by its processor, in batches of 8,192."""
    arguments = results["arguments"]
    data_args = DataArguments(tasks=arguments["tasks"], data_dir=arguments.get("data_dir"))
    raw, processor = load_and_fit_processor(data_args, seed=arguments["seed"], checkpoint=str(folder))
    encoded = dict(processor(raw["test"].to_pandas(), require_labels=True))
    size = len(encoded["labels"])
    return [{name: value[start : start + 8192] for name, value in encoded.items()} for start in range(0, size, 8192)]


def comparison(entry_name: str, dataset: str, own_results: dict) -> str:
    """Markdown table of this entry and the other zoo entries on the same data set that are built."""
    rows = []
    for other in ZOO.values():
        if other.dataset != dataset:
            continue
        path = (zoo_dir() or REPO / "model_cards") / other.name / "results.json"
        results = own_results if other.name == entry_name else (json.loads(path.read_text()) if path.is_file() else None)
        if results is None:
            continue
        tasks = results["arguments"]["tasks"]
        rows.append(
            f"| {other.name}{' (this model)' if other.name == entry_name else ''} | {', '.join(tasks)} | "
            + ", ".join(f"{results['test'][f'{task}/auc']:.4f}" for task in tasks)
            + " |"
        )
    header = ["| entry | tasks | test AUC per task |", "|---|---|---|"]
    return "Zoo entries on the same data (test AUC):\n\n" + "\n".join(header + rows)


def build(entry_name: str, overwrite: bool) -> Path:
    entry = get_entry(entry_name)
    target = (zoo_dir() or REPO / "model_cards") / entry.name
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to regenerate it.")
    with tempfile.TemporaryDirectory() as training_dir:
        train_tabular([str(REPO / entry.config), *entry.arguments, "--output_dir", training_dir])
        results = json.loads(Path(training_dir, "results.json").read_text())
        best = Path(training_dir) / "best"

        def write(folder: Path) -> None:
            folder.mkdir(parents=True)
            for name in CHECKPOINT_FILES:
                if (best / name).is_file():
                    shutil.copy2(best / name, folder / name)
            (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")
            model = AutoModel.from_pretrained(folder)
            batches = test_batches(results, folder)
            plot_gate_weights(model, measure_gate_weights(model, batches), folder / FIGURE)
            probe = {name: value[:PROBE_EXAMPLES] for name, value in batches[0].items()}
            details = CardDetails(
                model_id=entry.hub_id, dataset=DATASETS[entry.dataset], command=entry.command,
                comparison=comparison(entry.name, entry.dataset, results), figure=FIGURE,
                task_parameters=task_parameter_counts(model, probe), with_processor=True,
            )
            build_model_card(model, results, details).save(folder / "README.md")

        replace_folder(target, write)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("entries", nargs="+", help=f"zoo entries: {sorted(ZOO)}")
    parser.add_argument("--overwrite", action="store_true", help="replace an entry's existing folder")
    args = parser.parse_args(argv)
    for name in args.entries:
        get_entry(name)  # every name is checked before anything is trained
    for name in args.entries:
        print(f"built {build(name, args.overwrite)}")


if __name__ == "__main__":
    main()
