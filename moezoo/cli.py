"""The ``moezoo`` command.

    moezoo list                                  architectures and zoo entries
    moezoo evaluate <checkpoint or entry>        per-task metrics on a split of the run's data
    moezoo predict <checkpoint or entry> rows.csv  one prediction column per task, as CSV
    moezoo card <checkpoint>                     the model card (and gate figure) of a checkpoint folder
    moezoo push <checkpoint or entry> <repo_id>  publish a checkpoint folder to the Hub
    moezoo train [--num_processes N] <recipe or entry> [flags]
                                                 run a recipe (a YAML, a recipe script, or a zoo entry)

A mistake (an unknown entry, a missing file, a CSV without a feature column) is reported on one line,
with a non-zero exit status; ``MOEZOO_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import huggingface_hub
import pandas as pd
import transformers
from huggingface_hub.errors import HfHubHTTPError, StrictDataclassError

from . import registry, zoo
from .adapters import ADAPTER_METHODS
from .models.modeling_utils import PROCESSOR_FILE
from .inference import predict_rows

DEBUG_ENV = "MOEZOO_DEBUG"
# huggingface_hub's HTTP errors derive from the base error of the HTTP client it uses (which has changed
# between its versions); that base also covers failed connections, e.g. to an unreachable endpoint.
HUB_CONNECTION_ERROR = HfHubHTTPError.__mro__[1]
#: What a user's mistake or a failed download / upload raises: reported in one line, not a traceback.
REPORTED_ERRORS = (ValueError, KeyError, OSError, StrictDataclassError, HUB_CONNECTION_ERROR)


def list_command(args: argparse.Namespace) -> None:
    entries = zoo.list_pretrained()
    if args.json:
        print(json.dumps({"architectures": registry.list_models(), "adapter_methods": list(ADAPTER_METHODS), "zoo": entries}, indent=2))
        return
    print("Architectures: " + ", ".join(registry.list_models()))
    print("Adapter methods (on a pretrained transformer): " + ", ".join(ADAPTER_METHODS))
    print("\nZoo entries:")
    rows = [
        (
            entry["name"], entry["architecture"], entry["dataset"],
            ", ".join(f"{name} {value:.4f}" for name, value in entry["metrics"].items()) or "-",
            entry["folder"] or entry["hub_id"],
        )
        for entry in entries
    ]
    print(_table(("name", "architecture", "data", "test metrics", "where"), rows))


def evaluate_command(args: argparse.Namespace) -> None:
    from accelerate import Accelerator

    from .hub.folder import find_results
    from .training import TensorDataset, evaluate, prepare_eval_loader
    from .training.splits import run_eval_batch_size, run_split

    folder = zoo.local_folder(args.model)
    model = zoo.from_pretrained(folder)
    results = find_results(folder)
    if results is None:
        raise FileNotFoundError(
            f"No results.json in {folder} or its parent: evaluate reads the run's data settings from it."
        )
    accelerator = Accelerator()
    data = TensorDataset(run_split(results["arguments"], folder, args.split))
    batch_size = args.batch_size or run_eval_batch_size(results["arguments"])
    metrics = evaluate(model, prepare_eval_loader(model, data, accelerator, batch_size), accelerator)
    if args.json:
        print(json.dumps(metrics, indent=2))
        return
    rows = [(*name.split("/", 1), f"{value:.4f}") for name, value in metrics.items() if "/" in name and not name.endswith("/loss")]
    print(_table(("task", "metric", args.split), rows))


def predict_command(args: argparse.Namespace) -> None:
    folder = zoo.local_folder(args.model)
    if not (folder / PROCESSOR_FILE).is_file():
        raise FileNotFoundError(f"{folder} has no processor ({PROCESSOR_FILE}): predict scores raw tabular rows.")
    model = zoo.from_pretrained(folder)
    processor = zoo.processor_from_pretrained(folder)
    # Categorical columns fitted on text are read as text: a CSV reader would turn '07' into 7.
    text_columns = [name for name in processor.categorical_features if processor.value_kinds.get(name) == "string"]
    rows = pd.read_csv(args.rows, skipinitialspace=True, dtype={name: str for name in text_columns})
    predictions = predict_rows(model, processor, rows)
    if args.output is None:
        predictions.to_csv(sys.stdout, index=False)
        return
    if Path(args.output).exists() and not args.overwrite:
        raise FileExistsError(f"{args.output} exists; pass --overwrite to replace it.")
    predictions.to_csv(args.output, index=False)
    print(f"Wrote {len(predictions)} rows of predictions to {args.output}.")


def card_command(args: argparse.Namespace) -> None:
    from .hub.folder import write_card

    folder = Path(args.checkpoint)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} is not a checkpoint folder (no config.json).")
    path = write_card(folder, model_id=args.model_id, overwrite=args.overwrite)
    print(f"Wrote {path}.")


def push_command(args: argparse.Namespace) -> None:
    from .hub.push import push_checkpoint

    folder = Path(zoo.resolve(args.checkpoint))
    if not folder.is_dir():
        raise FileNotFoundError(f"{args.checkpoint} is not a local folder: push publishes a folder on this machine.")
    url = push_checkpoint(folder, args.repo_id, private=args.private or None, token=args.token, revision=args.revision)
    print(f"Pushed {folder} to {args.repo_id}: {url}")


def train_command(args: argparse.Namespace) -> int:
    from .training.launch import launch_command, launch_environment

    if not args.recipe_flags:
        raise ValueError("Name a recipe: a YAML config, a recipe script or a zoo entry (see `moezoo train --help`).")
    recipe, *flags = args.recipe_flags
    command = launch_command(recipe, flags, args.num_processes)
    environment = {**os.environ, **launch_environment(args.num_processes)}
    return subprocess.run(command, env=environment).returncode


TRAIN_EPILOG = """\
RECIPE is a YAML config (the recipe script is chosen by its `dataset`), a recipe script followed by its
YAML, or a zoo entry (its own recipe, YAML and arguments). Everything after RECIPE goes to the recipe:
`moezoo train RECIPE --help` lists its flags.

examples:
  moezoo train recipes/configs/census_income_mmoe.yaml --output_dir outputs/mmoe
  moezoo train ple-census-income --num_train_epochs 2
  moezoo train --num_processes 2 recipes/configs/census_income_home.yaml
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moezoo", description="Multi-task Mixture-of-Experts models: the zoo, evaluation, prediction, cards.",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="architectures and zoo entries", allow_abbrev=False)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=list_command)

    evaluation = commands.add_parser(
        "evaluate", help="per-task metrics of a checkpoint or zoo entry on its run's data", allow_abbrev=False
    )
    evaluation.add_argument("model", help="a checkpoint folder (beside or inside its run's results.json) or a zoo entry")
    evaluation.add_argument("--split", default="test", choices=["train", "validation", "test"], help="default: test")
    evaluation.add_argument(
        "--batch_size", type=int, default=None, help="examples per forward pass (default: the run's evaluation batch)"
    )
    evaluation.add_argument("--json", action="store_true", help="print JSON instead of a table")
    evaluation.set_defaults(handler=evaluate_command)

    prediction = commands.add_parser("predict", help="score a CSV of raw rows (one column per task)", allow_abbrev=False)
    prediction.add_argument("model", help="a tabular checkpoint folder (with its processor) or zoo entry")
    prediction.add_argument("rows", help="CSV file of raw rows with the model's feature columns")
    prediction.add_argument("--output", help="CSV file to write (default: standard output)")
    prediction.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    prediction.set_defaults(handler=predict_command)

    card = commands.add_parser("card", help="write a checkpoint folder's model card and gate figure", allow_abbrev=False)
    card.add_argument("checkpoint", help="a checkpoint folder; its run's results.json is read from it or its parent")
    card.add_argument("--model_id", help="the name the card gives the model (default: the folder's name)")
    card.add_argument("--overwrite", action="store_true", help="replace an existing README.md")
    card.set_defaults(handler=card_command)

    push = commands.add_parser(
        "push", help="publish a checkpoint folder (card, results, figure, model, processor) to the Hub",
        description="Push a checkpoint folder to a Hub repository (created if needed): its README.md, results.json "
        "and routing figure, then the model and its processor through their push_to_hub.",
        allow_abbrev=False,
    )
    push.add_argument("checkpoint", help="a checkpoint folder with weights and a card (see `moezoo card`), or a zoo entry")
    push.add_argument("repo_id", help="the Hub repository, org/name")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--token", help="a Hub token (default: the one `hf auth login` saved, or $HF_TOKEN)")
    push.add_argument("--revision", help="the branch to push to (default: main)")
    push.set_defaults(handler=push_command)

    train = commands.add_parser(
        "train", help="run a recipe (a YAML config, a recipe script or a zoo entry), on one or several processes",
        usage="moezoo train [-h] [--num_processes N] RECIPE [recipe flags ...]",
        epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
    )
    train.add_argument(
        "--num_processes", type=int, default=1, metavar="N",
        help="processes to train on; more than 1 runs the recipe under `accelerate launch --multi_gpu` (on the CPU "
        "when there is no GPU). Default: 1",
    )
    train.add_argument("recipe_flags", nargs=argparse.REMAINDER, metavar="RECIPE [recipe flags ...]", help=argparse.SUPPRESS)
    train.set_defaults(handler=train_command)
    return parser


def run_reporting_errors(run: Callable[[], object], name: str) -> int:
    """Run ``run`` and return its exit status (what it returns if that is an int, else 0). A user's mistake
    or a failed connection (`REPORTED_ERRORS`) is one line on standard error, ``<name>: error: ...``, and
    status 1 (``MOEZOO_DEBUG=1`` re-raises it)."""
    try:
        status = run()
        return status if isinstance(status, int) else 0
    except REPORTED_ERRORS as error:
        if os.environ.get(DEBUG_ENV):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        if isinstance(error, HUB_CONNECTION_ERROR) and not isinstance(error, HfHubHTTPError):
            message = f"cannot reach the Hub at {huggingface_hub.constants.ENDPOINT}: {message}"
        print(f"{name}: error: {' '.join(str(message).split())}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A command prints its result and nothing else: no bars for loading a few megabytes of weights.
    transformers.utils.logging.disable_progress_bar()
    return run_reporting_errors(lambda: args.handler(args), f"moezoo {args.command}")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * width for width in widths), *lines[1:]])


if __name__ == "__main__":
    sys.exit(main())
