#!/usr/bin/env python
"""Regenerate a zoo entry's folder, ``model_cards/<entry>/``, from scratch.

    python recipes/build_zoo.py mmoe-census-income [--overwrite]
    python recipes/build_zoo.py mmoe-census-income --card_only
    python recipes/build_zoo.py --readme

Trains the entry with its recipe, YAML and fixed seed (`moezoo.zoo.ZOO`), then writes the folder as a
Hub model repository: the best checkpoint (config.json, model.safetensors, preprocessor_config.json; an
adapter entry's adapter files, heads.safetensors and tokenizer), results.json with the test scores of the
baselines it is compared against (`moezoo_cli.catalog.Baseline`, from benchmarks/results), the routing
figure and the model card, both measured on the test split. The folder is assembled aside and replaces an
existing one only with --overwrite, once it is complete. ``--card_only`` keeps the entry's trained model,
scores its validation and test splits again and rewrites its results, baselines, figure and card. ``--readme`` rewrites the README's zoo table from the entries'
results.json (after any other work asked for).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from transformers import AutoModel

from moezoo.cli import run_reporting_errors
from moezoo.hub.folder import write_card
from moezoo.merging.checkpoints import MergeArguments, merge_checkpoints, score_splits
from moezoo.training.checkpoints import replace_folder
from moezoo.training.arguments import parse_config_and_args
from moezoo.zoo import ZOO, get_entry, zoo_dir
from moezoo_cli.catalog import MERGE_RECIPE, headline_metric
from moezoo_cli.listing import readme_with_zoo_table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes"))
import train_glue  # noqa: E402
import train_image  # noqa: E402
import train_tabular  # noqa: E402
import train_vit  # noqa: E402


def merge(argv: list[str]) -> None:
    """``moezoo merge`` with ``argv`` (a YAML and flags): a merged entry's recipe."""
    (arguments,) = parse_config_and_args([MergeArguments], argv)
    try:
        merge_checkpoints(arguments)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error} The merge's sources are trained first: see the top of {argv[0]}.") from error


RECIPES = {
    "recipes/train_tabular.py": train_tabular.main,
    "recipes/train_image.py": train_image.main,
    "recipes/train_vit.py": train_vit.main,
    "recipes/train_glue.py": train_glue.main,
    MERGE_RECIPE: merge,
}


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
            metric = headline_metric(task, test)
            cells.append(f"{task} {metric} {test[f'{task}/{metric}']:.4f}")
        rows.append(f"| {other.name}{' (this model)' if other.name == entry_name else ''} | {', '.join(cells)} |")
    return "Zoo entries on the same data (test split):\n\n" + "\n".join(["| entry | test metric per task |", "|---|---|", *rows])


def entry_target(entry_name: str, overwrite: bool) -> Path:
    """The folder entry ``entry_name`` is built into; an error if it exists and ``overwrite`` is not set."""
    target = (zoo_dir() or REPO / "model_cards") / get_entry(entry_name).name
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to regenerate it.")
    return target


def with_baselines(entry_name: str, results: dict) -> dict:
    """``results`` with the test scores of the entry's baselines on its tasks and metrics (those measured so far)."""
    entry = get_entry(entry_name)
    names = [name for name in results.get("test", {}) if "/" in name]
    baselines = {}
    for baseline in entry.baselines:
        scores = baseline.test_metrics(REPO, names)
        if scores:
            baselines[baseline.label] = {"description": baseline.description, "source": baseline.results_file, "test": scores}
    return {**{key: value for key, value in results.items() if key != "baselines"}, **({"baselines": baselines} if baselines else {})}


def write_entry(entry_name: str, folder: Path, results: dict) -> None:
    """The entry's results.json (with its baselines) and card, into ``folder`` that holds its checkpoint."""
    entry = get_entry(entry_name)
    results = with_baselines(entry_name, results)
    (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_card(
        folder, entry.hub_id, entry.command, comparison(entry.name, entry.dataset, results), overwrite=True,
        fine_tune_command=entry.fine_tune_command, deviations=entry.deviations,
    )


def build(entry_name: str, overwrite: bool) -> Path:
    entry = get_entry(entry_name)
    target = entry_target(entry_name, overwrite)
    with tempfile.TemporaryDirectory() as training_dir:
        RECIPES[entry.recipe]([str(REPO / entry.config), *entry.arguments, "--output_dir", training_dir])
        results = json.loads(Path(training_dir, "results.json").read_text())
        # The run's output folder was a temporary folder of the building machine, not part of the entry.
        results["arguments"].pop("output_dir", None)
        # A training run's best checkpoint is its best/; a merge writes its model into the output folder itself.
        best = Path(training_dir) / "best" if entry.recipe != MERGE_RECIPE else Path(training_dir)

        def write(folder: Path) -> None:
            # config, weights (or an adapter's adapter/ and heads), processor or tokenizer
            shutil.copytree(best, folder, ignore=shutil.ignore_patterns(".*", "results.json", "README.md", "routing.png"))
            write_entry(entry_name, folder, results)

        replace_folder(target, write)
    return target


def rewrite_card(entry_name: str) -> Path:
    """Rewrite a built entry's scores, baselines, figure and card around its trained model (assembled aside, then
    swapped in). Its validation and test splits are scored again, so that its results follow the metrics as moezoo
    defines them now."""
    source = (zoo_dir() or REPO / "model_cards") / get_entry(entry_name).name
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"{source} holds no built entry: build it first (without --card_only).")
    results = json.loads((source / "results.json").read_text())
    model = AutoModel.from_pretrained(source)
    results.update(score_splits(model, results["arguments"], source))

    def write(folder: Path) -> None:
        shutil.copytree(source, folder, ignore=shutil.ignore_patterns(".*", "README.md", "routing.png"))
        write_entry(entry_name, folder, results)

    replace_folder(source, write)
    return source


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("entries", nargs="*", help=f"zoo entries: {sorted(ZOO)}")
    parser.add_argument("--overwrite", action="store_true", help="replace an entry's existing folder")
    parser.add_argument("--card_only", action="store_true", help="keep the trained model; rewrite baselines, figure, card")
    parser.add_argument("--readme", action="store_true", help="rewrite the README's zoo table from the entries' results")
    args = parser.parse_args(argv)
    if not args.entries and not args.readme:
        parser.error("name the entries to build, or pass --readme")
    if args.card_only:
        for name in args.entries:
            get_entry(name)
        for name in args.entries:
            print(f"rewrote the card of {rewrite_card(name)}")
    else:
        for name in args.entries:
            entry_target(name, args.overwrite)  # every name and folder is checked before anything is trained
        for name in args.entries:
            print(f"built {build(name, args.overwrite)}")
    if args.readme:
        readme = REPO / "README.md"
        readme.write_text(readme_with_zoo_table(readme.read_text()))
        print(f"rewrote the zoo table of {readme}")


if __name__ == "__main__":
    sys.exit(run_reporting_errors(main, "build_zoo.py"))
