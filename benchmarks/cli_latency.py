#!/usr/bin/env python
"""How long the installed ``moezoo`` command takes to answer what needs no model: its help, the zoo listing,
and a misspelt flag (each a new process, as a user runs it; the command's entry point is the torch-free
``moezoo_cli``). Beside them, the time ``import moezoo`` takes, which every other command pays.

    python benchmarks/cli_latency.py [--runs 7]

Results go to benchmarks/results/cli_latency.{json,md}: the median wall time of ``--runs`` runs each.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time

from recipe_runs import RESULTS

COMMANDS = {
    "moezoo --help": ["--help"],
    "moezoo list": ["list"],
    "moezoo evaluate mmoe-census-income --bacth_size 8 (misspelt)": ["evaluate", "mmoe-census-income", "--bacth_size", "8"],
    "moezoo train --num_processes two (not a number)": ["train", "--num_processes", "two", "mmoe-census-income"],
}


def median_seconds(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    executable = shutil.which("moezoo")
    if executable is None:
        sys.exit("The moezoo command is not installed: pip install -e . first.")
    rows = {label: median_seconds([executable, *argv], args.runs) for label, argv in COMMANDS.items()}
    rows["python -c 'import moezoo' (what every other command pays)"] = median_seconds(
        [sys.executable, "-c", "import moezoo"], args.runs
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cli_latency.json").write_text(json.dumps({"runs": args.runs, "median_seconds": rows}, indent=2) + "\n")
    lines = [
        f"Wall time of a new process, median of {args.runs} runs, on this machine.", "",
        "| command | seconds |", "|---|---|", *(f"| `{label}` | {seconds:.2f} |" for label, seconds in rows.items()),
    ]
    (RESULTS / "cli_latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
