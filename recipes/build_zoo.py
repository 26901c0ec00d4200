#!/usr/bin/env python
"""Regenerate a zoo entry's folder, ``model_cards/<entry>/``, from scratch.

    python recipes/build_zoo.py mmoe-census-income [--overwrite]

Trains the entry with its recipe, YAML and fixed seed (`moezoo.zoo.ZOO`), then writes the folder as a
Hub model repository: the best checkpoint (config.json, model.safetensors, preprocessor_config.json; an
adapter entry's adapter files, heads.safetensors and tokenizer), results.json, the gate-weight figure and the model card, both measured on the test split. The folder
is assembled aside and replaces an existing one only with --overwrite, once it is complete.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from moezoo.cli import run_reporting_errors
from moezoo.hub.folder import write_card
from moezoo.training.checkpoints import replace_folder
from moezoo.zoo import ZOO, get_entry, zoo_dir

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes"))
import train_glue  # noqa: E402
import train_image  # noqa: E402
import train_tabular  # noqa: E402
import train_vit  # noqa: E402

RECIPES = {
    "recipes/train_tabular.py": train_tabular.main,
    "recipes/train_image.py": train_image.main,
    "recipes/train_vit.py": train_vit.main,
    "recipes/train_glue.py": train_glue.main,
}
#: The metric a task is compared by, the first of these it has: GLUE's own (Matthews correlation, F1,
#: Pearson), AUC, accuracy, mIoU (dense tasks).
HEADLINE_METRICS = ("mcc", "f1", "pearson", "auc", "accuracy", "miou")


def comparison(entry_name: str, dataset: str, own_results: dict) -> str:
    """Markdown table of this entry and the other zoo entries on the same data set that are built: each
    task's headline test metric (AUC for binary tasks, accuracy for multiclass ones)."""
    rows = []
    for other in ZOO.values():
        if other.dataset != dataset:
            continue
        path = (zoo_dir() or REPO / "model_cards") / other.name / "results.json"
        results = own_results if other.name == entry_name else (json.loads(path.read_text()) if path.is_file() else None)
        if results is None:
            continue
        test = results["test"]
        cells = []
        for task in sorted({name.split("/")[0] for name in test if "/" in name}):
            metric = next(name for name in HEADLINE_METRICS if f"{task}/{name}" in test)
            cells.append(f"{task} {metric} {test[f'{task}/{metric}']:.4f}")
        rows.append(f"| {other.name}{' (this model)' if other.name == entry_name else ''} | {', '.join(cells)} |")
    return "Zoo entries on the same data (test split):\n\n" + "\n".join(["| entry | test metric per task |", "|---|---|", *rows])


def entry_target(entry_name: str, overwrite: bool) -> Path:
    """The folder entry ``entry_name`` is built into; an error if it exists and ``overwrite`` is not set."""
    target = (zoo_dir() or REPO / "model_cards") / get_entry(entry_name).name
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to regenerate it.")
    return target


def build(entry_name: str, overwrite: bool) -> Path:
    entry = get_entry(entry_name)
    target = entry_target(entry_name, overwrite)
    with tempfile.TemporaryDirectory() as training_dir:
        RECIPES[entry.recipe]([str(REPO / entry.config), *entry.arguments, "--output_dir", training_dir])
        results = json.loads(Path(training_dir, "results.json").read_text())
        # The run's output folder was a temporary folder of the building machine, not part of the entry.
        results["arguments"].pop("output_dir", None)
        best = Path(training_dir) / "best"

        def write(folder: Path) -> None:
            # config, weights (or an adapter's adapter/ and heads), processor or tokenizer
            shutil.copytree(best, folder, ignore=shutil.ignore_patterns(".*"))
            (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")
            write_card(folder, entry.hub_id, entry.command, comparison(entry.name, entry.dataset, results))

        replace_folder(target, write)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("entries", nargs="+", help=f"zoo entries: {sorted(ZOO)}")
    parser.add_argument("--overwrite", action="store_true", help="replace an entry's existing folder")
    args = parser.parse_args(argv)
    for name in args.entries:
        entry_target(name, args.overwrite)  # every name and folder is checked before anything is trained
    for name in args.entries:
        print(f"built {build(name, args.overwrite)}")


if __name__ == "__main__":
    sys.exit(run_reporting_errors(main, "build_zoo.py"))
