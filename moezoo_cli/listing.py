"""``moezoo list``: the architectures, the adapter methods and the zoo's entries, read without torch."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from .catalog import ADAPTER_METHODS, ARCHITECTURES, list_pretrained


def list_command(args: argparse.Namespace) -> int:
    """Print the listing as a table, or as JSON with ``--json``. A damaged entry is listed with what is
    wrong with it; the others are listed as usual."""
    entries = list_pretrained()
    if args.json:
        print(json.dumps({"architectures": list(ARCHITECTURES), "adapter_methods": list(ADAPTER_METHODS), "zoo": entries}, indent=2))
        return 0
    print("Architectures: " + ", ".join(ARCHITECTURES))
    print("Adapter methods (on a pretrained transformer): " + ", ".join(ADAPTER_METHODS))
    print("\nZoo entries:")
    rows = []
    for entry in entries:
        baseline = (entry["baseline"] or {}).get("metrics", {})
        metrics = ", ".join(
            f"{name.replace('/', ' ')} {value:.4f}" + (f" ({baseline[name]:.4f})" if name in baseline else "")
            for name, value in entry["metrics"].items()
        ) or "-"
        where = entry["folder"] or entry["hub_id"]
        if entry["damage"] is not None:
            metrics, where = "-", f"damaged: {entry['damage']}"
        rows.append((entry["name"], entry["architecture"], entry["dataset"], metrics, where))
    print(table(("name", "architecture", "data", "test metric per task (baseline)", "where"), rows))
    labels = sorted({entry["baseline"]["label"] for entry in entries if entry["baseline"]})
    if labels:
        print(f"\nIn brackets: the entry's baseline at the same budget ({', '.join(labels)}; its card says how it was trained).")
    return 0


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns under a header and a rule of dashes."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * width for width in widths), *lines[1:]])
