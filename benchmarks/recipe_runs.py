"""Helpers shared by the benchmarks that run a recipe over models and seeds: one run in a throwaway
output folder, a single-task baseline's runs as one row, results merged into a JSON file, mean ± std tables."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def run_recipe(
    main: Callable[[list[str]], Any],
    argv: Sequence[str],
    inspect_checkpoint: Callable[[Path], dict[str, Any]] | None = None,
    keep_in: Path | None = None,
) -> tuple[dict[str, Any], float]:
    """Run a recipe's ``main`` with its output in a temporary folder (or in ``keep_in``, kept); its summary
    and wall seconds.

    ``inspect_checkpoint``, given the best checkpoint's folder before it is deleted, returns more
    fields for the summary.
    """
    with tempfile.TemporaryDirectory() as temporary:
        output_dir = str(keep_in) if keep_in is not None else temporary
        start = time.perf_counter()
        summary = main([*argv, "--output_dir", output_dir]).summary
        seconds = time.perf_counter() - start
        if inspect_checkpoint is not None:
            summary = {**summary, **inspect_checkpoint(Path(output_dir) / "best")}
        return summary, seconds


def single_task_row(
    main: Callable[[list[str]], Any], tasks: Sequence[str], arguments_for: Callable[[str, list[str]], list[str]]
) -> dict[str, Any]:
    """A single-task baseline as one row: one run of ``main`` per task, with the flags
    ``arguments_for(task, other_tasks)``; the row holds every test metric of each task's own run
    (``test_{task}_{metric}``), each run's best epoch, and the runs' parameters and seconds summed."""
    row: dict[str, Any] = {"parameters": 0, "best_epoch": {}, "seconds": 0.0}
    for task in tasks:
        summary, seconds = run_recipe(main, arguments_for(task, [other for other in tasks if other != task]))
        row["parameters"] += summary["num_parameters"]
        row["best_epoch"][task] = summary["best_epoch"]
        row["seconds"] += seconds
        for name, value in summary["test"].items():
            if name.startswith(f"{task}/"):
                row[f"test_{task}_{name.split('/', 1)[1]}"] = value
    return row


def write_results(stem: str, summary: Any, report: str) -> None:
    """``benchmarks/results/{stem}.json`` (the measurements) and ``{stem}.md`` (their report), and the report printed."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(summary, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(report)
    print(report)


def merge_runs(
    results_file: Path,
    runs: list[dict[str, Any]],
    key: Sequence[str],
    keep: Callable[[dict[str, Any]], bool] | None = None,
) -> list[dict[str, Any]]:
    """Write ``runs`` to ``results_file``, replacing earlier runs with the same ``key`` fields and keeping
    the others (those ``keep`` accepts, when given), so that parts of a benchmark can be measured
    separately, also by two processes at once. Returns all runs."""
    measured = {tuple(run[name] for name in key) for run in runs}
    results_file.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(results_file):
        earlier = json.loads(results_file.read_text()) if results_file.exists() else []
        merged = [
            run for run in earlier if tuple(run[name] for name in key) not in measured and (keep is None or keep(run))
        ] + runs
        # Written aside and renamed, so that a run killed mid-write leaves the earlier results whole.
        written = results_file.with_name(results_file.name + ".tmp")
        written.write_text(json.dumps(merged, indent=2) + "\n")
        os.replace(written, results_file)
    return merged


@contextlib.contextmanager
def _exclusive(results_file: Path) -> Iterator[None]:
    """Hold an exclusive lock beside ``results_file`` (POSIX; elsewhere no lock: run one benchmark at a time)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(results_file.with_name(results_file.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def mean_std(values: Sequence[float], digits: int = 4) -> str:
    """``"mean ± std"`` (sample standard deviation), or the value alone when there is one."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def mean_std_table(
    runs: Sequence[dict[str, Any]],
    row_key: str,
    row_order: Sequence[str],
    columns: Mapping[str, str],
    scale: float = 1.0,
    digits: int = 4,
) -> list[str]:
    """Markdown table lines: one row per ``row_key`` value (in ``row_order``), its parameter count, the
    seeds measured and, per column title, the mean ± std of that run field times ``scale``."""
    lines = [
        "| " + " | ".join([row_key, "parameters", "seeds", *columns]) + " |",
        "|" + "---|" * (3 + len(columns)),
    ]
    for name in row_order:
        rows = [run for run in runs if run[row_key] == name]
        if not rows:
            continue
        cells = [mean_std([run[field] * scale for run in rows], digits) for field in columns.values()]
        seeds = ", ".join(str(run["seed"]) for run in sorted(rows, key=lambda run: run["seed"]))
        lines.append("| " + " | ".join([name, f"{rows[0]['parameters']:,}", seeds, *cells]) + " |")
    return lines
