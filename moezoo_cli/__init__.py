"""The ``moezoo`` command's entry point, free of torch, transformers and PEFT.

Importing `moezoo` registers every architecture with transformers' Auto classes, which imports torch,
transformers and PEFT: several seconds on a small machine. The command's parser, its zoo listing and the
zoo's index live here instead, so that ``moezoo --help``, ``moezoo list`` and a misspelt flag answer at
once; every other command hands its parsed arguments to `moezoo.cli`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .parser import build_parser, parse_command_line

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``moezoo`` command; returns its exit status."""
    args = parse_command_line(argv)
    if args.command == "list":
        from .listing import list_command

        return list_command(args)
    from moezoo.cli import run_command

    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
