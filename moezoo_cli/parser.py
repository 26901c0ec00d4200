"""The ``moezoo`` command's arguments."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

TRAIN_EPILOG = """\
RECIPE is a YAML config (the recipe script is chosen by its `dataset`), a recipe script followed by its
YAML, or a zoo entry (its own recipe, YAML and arguments). Everything after RECIPE goes to the recipe:
`moezoo train RECIPE --help` lists its flags.

examples:
  moezoo train recipes/configs/census_income_mmoe.yaml --output_dir outputs/mmoe
  moezoo train ple-census-income --num_train_epochs 2
  moezoo train --num_processes 2 recipes/configs/census_income_home.yaml
"""


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (argparse names the flag in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_command_line(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``moezoo``'s arguments parsed by `build_parser`; ``merge``'s own flags go to it unparsed (``merge_flags``),
    since argparse's remainder cannot begin with a flag."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["merge"]:
        return argparse.Namespace(command="merge", merge_flags=argv[1:])
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``moezoo``: one subcommand each for list, evaluate, predict, card, push, merge and train (the
    chosen one in ``args.command``)."""
    parser = argparse.ArgumentParser(
        prog="moezoo", description="Multi-task Mixture-of-Experts models: the zoo, evaluation, prediction, cards.",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="architectures and zoo entries", allow_abbrev=False)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")

    evaluation = commands.add_parser(
        "evaluate", help="per-task metrics of a checkpoint or zoo entry on its run's data", allow_abbrev=False
    )
    evaluation.add_argument("model", help="a checkpoint folder (beside or inside its run's results.json) or a zoo entry")
    evaluation.add_argument("--split", default="test", choices=["train", "validation", "test"], help="default: test")
    evaluation.add_argument(
        "--batch_size", type=positive_int, default=None,
        help="examples per forward pass (default: the run's evaluation batch)",
    )
    evaluation.add_argument("--json", action="store_true", help="print JSON instead of a table")

    prediction = commands.add_parser("predict", help="score a CSV of raw rows (one column per task)", allow_abbrev=False)
    prediction.add_argument("model", help="a tabular checkpoint folder (with its processor) or zoo entry")
    prediction.add_argument("rows", help="CSV file of raw rows with the model's feature columns")
    prediction.add_argument("--output", help="CSV file to write (default: standard output)")
    prediction.add_argument("--overwrite", action="store_true", help="replace an existing --output file")

    card = commands.add_parser("card", help="write a checkpoint folder's model card and gate figure", allow_abbrev=False)
    card.add_argument("checkpoint", help="a checkpoint folder; its run's results.json is read from it or its parent")
    card.add_argument("--model_id", help="the name the card gives the model (default: the folder's name)")
    card.add_argument("--overwrite", action="store_true", help="replace an existing README.md")

    push = commands.add_parser(
        "push", help="publish a checkpoint folder (card, results, figure, model, processor) to the Hub",
        description="Push a checkpoint folder to a Hub repository (created if needed) in one commit, every file as "
        "it is in the folder, with the run's results.json.",
        allow_abbrev=False,
    )
    push.add_argument("checkpoint", help="a checkpoint folder with weights and a card (see `moezoo card`), or a zoo entry")
    push.add_argument("repo_id", help="the Hub repository, org/name")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--token", help="a Hub token (default: the one `hf auth login` saved, or $HF_TOKEN)")
    push.add_argument("--revision", help="the branch to push to (default: main)")

    commands.add_parser(
        "merge", help="merge single-task LoRA fine-tunes of one base into one multi-task model",
        usage="moezoo merge [CONFIG.yaml] --sources A B ... --method METHOD --output_dir DIR [flags ...]",
        description="`moezoo merge --help` lists the flags (moezoo.merging.checkpoints.MergeArguments).",
        add_help=False, allow_abbrev=False,
    ).add_argument("merge_flags", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    train = commands.add_parser(
        "train", help="run a recipe (a YAML config, a recipe script or a zoo entry), on one or several processes",
        usage="moezoo train [-h] [--num_processes N] RECIPE [recipe flags ...]",
        epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
    )
    train.add_argument(
        "--num_processes", type=positive_int, default=1, metavar="N",
        help="processes to train on; more than 1 runs the recipe under `accelerate launch --multi_gpu` (on the CPU "
        "when there is no GPU). Default: 1",
    )
    train.add_argument("recipe_flags", nargs=argparse.REMAINDER, metavar="RECIPE [recipe flags ...]", help=argparse.SUPPRESS)
    return parser
