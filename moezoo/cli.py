"""The ``moezoo`` command.

    moezoo list                                  architectures and zoo entries
    moezoo evaluate <checkpoint or entry>        per-task metrics on a split of the run's data
    moezoo predict <checkpoint or entry> rows.csv  one prediction column per task, as CSV
    moezoo card <checkpoint>                     the model card (and gate figure) of a checkpoint folder
    moezoo push <checkpoint or entry> <repo_id>  publish a checkpoint folder to the Hub
    moezoo merge [config.yaml] --sources A B ... --method M --output_dir DIR
                                                 merge single-task LoRA fine-tunes into one model
    moezoo train [--num_processes N] <recipe or entry> [flags]
                                                 run a recipe (a YAML, a recipe script, or a zoo entry)

A mistake (an unknown entry, a missing file, a CSV without a feature column) is reported on one line,
with a non-zero exit status; ``MOEZOO_DEBUG=1`` shows the traceback instead.

The installed ``moezoo`` command starts in `moezoo_cli` (its parser and ``list``, without torch) and runs
the other commands here; ``python -m moezoo.cli`` runs them all here.
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

from moezoo_cli.listing import list_command, table
from moezoo_cli.parser import parse_command_line

from . import zoo
from .models.modeling_utils import PROCESSOR_FILE
from .inference import predict_rows

DEBUG_ENV = "MOEZOO_DEBUG"
# huggingface_hub's HTTP errors derive from the base error of the HTTP client it uses (which has changed
# between its versions); that base also covers failed connections, e.g. to an unreachable endpoint.
HUB_CONNECTION_ERROR = HfHubHTTPError.__mro__[1]
#: What a user's mistake or a failed download / upload raises: reported in one line, not a traceback.
REPORTED_ERRORS = (ValueError, KeyError, OSError, StrictDataclassError, HUB_CONNECTION_ERROR)


def evaluate_command(args: argparse.Namespace) -> None:
    from .hub.folder import find_results
    from .training.datasets import evaluate_run_split

    folder = zoo.local_folder(args.model)
    model = zoo.from_pretrained(folder)
    results = find_results(folder)
    if results is None:
        raise FileNotFoundError(
            f"No results.json in {folder} or its parent: evaluate reads the run's data settings from it."
        )
    metrics = evaluate_run_split(model, results["arguments"], folder, args.split, args.batch_size, show_progress=True)
    if args.json:
        print(json.dumps(metrics, indent=2))
        return
    rows = [(*name.split("/", 1), f"{value:.4f}") for name, value in metrics.items() if "/" in name and not name.endswith("/loss")]
    print(table(("task", "metric", args.split), rows))


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


def merge_command(args: argparse.Namespace) -> None:
    from .merging.checkpoints import MergeArguments, merge_checkpoints
    from .training.arguments import parse_config_and_args

    if {"-h", "--help"} & set(args.merge_flags):
        transformers.HfArgumentParser(MergeArguments, prog="moezoo merge").print_help()
        return
    (arguments,) = parse_config_and_args([MergeArguments], args.merge_flags)
    # Merging a large model takes a while: its bar over the layers is wanted here.
    transformers.utils.logging.enable_progress_bar()
    folder = merge_checkpoints(arguments)
    print(f"Wrote the merged model ({arguments.method} of {len(arguments.sources)} sources) to {folder}.")


def train_command(args: argparse.Namespace) -> int:
    from .training.launch import launch_command, launch_environment

    if not args.recipe_flags:
        raise ValueError("Name a recipe: a YAML config, a recipe script or a zoo entry (see `moezoo train --help`).")
    recipe, *flags = args.recipe_flags
    command = launch_command(recipe, flags, args.num_processes)
    environment = {**os.environ, **launch_environment(args.num_processes)}
    if args.num_processes == 1:
        return subprocess.run(command, env=environment).returncode
    from .training.launch_output import run_launcher

    status, cause, log = run_launcher(command, environment)
    if status != 0:
        # The cause first and alone; every rank's copy of it and the launcher's report are in the log.
        print(cause or f"moezoo train: error: the recipe failed on {args.num_processes} processes (exit status {status}).",
              file=sys.stderr)
        print(f"(the launcher's full output: {log})", file=sys.stderr)
    return status


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


#: The function behind each command.
HANDLERS: dict[str, Callable[[argparse.Namespace], object]] = {
    "list": list_command,
    "evaluate": evaluate_command,
    "predict": predict_command,
    "card": card_command,
    "push": push_command,
    "merge": merge_command,
    "train": train_command,
}


def run_command(args: argparse.Namespace) -> int:
    """Run the command ``args`` were parsed for (`moezoo_cli.build_parser`), reporting mistakes in one line."""
    # A command prints its result and nothing else: no bars for loading a few megabytes of weights.
    transformers.utils.logging.disable_progress_bar()
    return run_reporting_errors(lambda: HANDLERS[args.command](args), f"moezoo {args.command}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(parse_command_line(argv))


if __name__ == "__main__":
    sys.exit(main())
