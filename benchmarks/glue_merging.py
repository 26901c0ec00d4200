#!/usr/bin/env python
"""Single-task LoRAs of all-MiniLM-L6-v2 on GLUE-5 merged into one model by each merging method, scored on GLUE's
dev set, normalised by the single-task models, beside the multi-task adapters trained jointly.

    python benchmarks/glue_adapters.py --methods single_task_lora --seeds 42 --keep_checkpoints outputs/glue_runs
    python benchmarks/glue_merging.py [--sources_dir outputs/glue_runs] [--methods ...]

The sources are the five single-task LoRA runs of benchmarks/glue_adapters.py (rank 8 in every linear map,
each task trained alone for its share of the multi-task budget), kept by ``--keep_checkpoints``. Each method runs
as ``moezoo merge`` in its own process (so that its peak memory is its own), its scaling chosen on the tasks'
validation splits among ``--scalings`` where the method has one; ``task_vector_experts`` keeps every source as an
expert (given its task id each task is its source) and is also scored without task ids, after its token routers
trained for ``--router_steps`` steps. Normalised score: the merged model's GLUE metric of a task over the
single-task LoRA's, averaged over the tasks. Results go to benchmarks/results/glue_merging.{json,md}, saved after
every method; a method already measured with these settings (scaling candidates, router steps) is skipped unless
``--remeasure`` is given; the experts' row is read from the zoo entry task-vector-experts-glue when it was built
from these sources with as many router steps. ``--exactness`` measures instead how exactly the merges that
should give their sources back do so on these real sources (benchmarks/results/glue_merging_exactness.{json,md}).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from glue_adapters import GLUE_SCORES, SINGLE_TASK, ZOO_SEED
from glue_adapters import METHODS as ADAPTER_METHODS
from glue_adapters import RESULTS_FILE as ADAPTER_RESULTS
from recipe_runs import REPO, RESULTS, merge_runs
from transformers import AutoTokenizer

from moezoo.adapters import AdaptedTransformerModel
from moezoo.data.glue import GLUE_TASKS, encode_glue_split, glue_subsets
from moezoo.merging import (
    lora_model_from_updates,
    lora_task_vector,
    merge_lora_models,
    merge_task_vectors,
    task_vector_experts,
)

#: Each method and its options (the papers' defaults: TIES and DARE keep 20 % / 10 % of the entries).
METHODS: dict[str, dict[str, Any]] = {
    "task_arithmetic": {},
    "ties": {"density": 0.2},
    "dare_linear": {"density": 0.1},
    "dare_ties": {"density": 0.1},
    "iso_c": {},
    "iso_cts": {},
    "task_vector_experts": {},
}
RESULTS_FILE = RESULTS / "glue_merging.json"
EXPERTS = "task_vector_experts"
#: The zoo entry that is the experts' merge of the same sources (its YAML: recipes/configs/glue_merge_experts.yaml).
EXPERTS_ENTRY = "task-vector-experts-glue"
#: Dev examples per task the exactness check compares logits on.
EXACTNESS_EXAMPLES = 64


def single_task_scores(sources: dict[str, Path]) -> dict[str, float]:
    """Each task's GLUE metric on the dev set, from its single-task run's results.json."""
    scores = {}
    for task, folder in sources.items():
        test = json.loads((folder.parent / "results.json").read_text())["test"]
        scores[task] = test[f"{task}/{GLUE_SCORES[task]}"]
    return scores


def measure(
    method: str, sources: dict[str, Path], scalings: list[float], router_steps: int, remeasure: bool
) -> dict[str, Any]:
    """One ``moezoo merge`` of the sources by ``method``, in its own process: its results.json. The experts'
    merge is read from the zoo entry when that entry was built from these sources with as many router steps
    (unless ``remeasure``)."""
    entry = REPO / "model_cards" / EXPERTS_ENTRY / "results.json"
    if method == EXPERTS and entry.is_file() and not remeasure:
        results = json.loads(entry.read_text())
        built_from = [str(REPO / source) for source in results["merge"]["sources"]]
        if built_from == [str(folder) for folder in sources.values()] and results["merge"]["options"].get(
                "router_steps") == router_steps:
            return results
    with tempfile.TemporaryDirectory() as output:
        command = [sys.executable, "-m", "moezoo.cli", "merge", "--sources", *map(str, sources.values()),
                   "--method", method, "--output_dir", output]
        if method == EXPERTS:
            command += ["--router_steps", str(router_steps)]
        else:
            command += ["--options", json.dumps(METHODS[method]), "--scalings", *map(str, scalings)]
        subprocess.run(command, check=True, cwd=REPO)
        return json.loads((Path(output) / "results.json").read_text())


def exactness(sources: dict[str, Path]) -> dict[str, float]:
    """The largest |logit difference| from the sources, on each task's first `EXACTNESS_EXAMPLES` dev examples,
    of the merges that should give them back: each source merged alone by task arithmetic at weight 1, five
    copies of each source at task arithmetic's default weight 1/5, and the task-vector experts given each task's id."""
    models = {task: AdaptedTransformerModel.from_pretrained(folder).eval() for task, folder in sources.items()}
    tokenizer = AutoTokenizer.from_pretrained(next(iter(sources.values())))
    test = glue_subsets(splits=("test",))["test"]
    experts = task_vector_experts(list(models.values())).eval()
    largest: dict[str, float] = {}
    for index, (task, model) in enumerate(models.items()):
        own = test.filter(lambda row: row["task_ids"] == index).select(range(EXACTNESS_EXAMPLES))
        encoded = encode_glue_split(own, tokenizer, len(GLUE_TASKS), 128)
        inputs = {name: value for name, value in encoded.items() if name != "labels"}
        as_source = {**inputs, "task_ids": torch.zeros_like(inputs["task_ids"])}  # a source knows its task as task 0
        as_expert = {**inputs, "task_ids": torch.full_like(inputs["task_ids"], index)}
        with torch.no_grad():
            expected = model(**as_source).logits[task]
            merges = {
                "alone_at_weight_1": (merge_lora_models([model], "task_arithmetic", {"scaling": 1.0}), as_source),
                # Copies of one source share its task names, which a merged model refuses: merged as vectors.
                "five_copies_at_one_fifth": (lora_model_from_updates(
                    model, merge_task_vectors([lora_task_vector(model)] * 5, "task_arithmetic"),
                    model.config.tasks, model.heads,
                ), as_source),
                "experts_given_task_ids": (experts, as_expert),
            }
            for name, (merged, merged_inputs) in merges.items():
                difference = (merged.eval()(**merged_inputs).logits[task] - expected).abs().max().item()
                largest[name] = max(largest.get(name, 0.0), difference)
    return largest


def write_exactness(largest: dict[str, float]) -> None:
    (RESULTS / "glue_merging_exactness.json").write_text(json.dumps(largest, indent=2) + "\n")
    lines = [
        "### Merges that give their sources back, on the GLUE-5 single-task LoRAs",
        "",
        f"Largest |logit difference| from the source over each task's first {EXACTNESS_EXAMPLES} dev examples "
        "(float32, CPU).",
        "",
        "| merge | largest difference |",
        "|---|---|",
        *(f"| {name.replace('_', ' ')} | {value:.2e} |" for name, value in largest.items()),
    ]
    (RESULTS / "glue_merging_exactness.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def measured_with(run: dict[str, Any], scalings: list[float], router_steps: int) -> bool:
    """Whether a row was measured with these settings: the experts with as many router steps, a method with a
    scaling with these candidates."""
    if run["method"] == EXPERTS:
        return run["options"].get("router_steps") == router_steps
    return [candidate["scaling"] for candidate in run.get("scaling_scores") or []] == scalings


def row(method: str, results: dict[str, Any], single: dict[str, float]) -> dict[str, Any]:
    """The method's row: each task's dev score, normalised mean, merge cost (and for the experts, without ids)."""
    entry: dict[str, Any] = {
        "method": method, "options": results["merge"]["options"], "merge_seconds": results["environment"]["merge_seconds"],
        "peak_memory_mb": results["environment"]["peak_memory_mb"],
        "scaling_scores": results["merge"].get("scaling_scores"),
    }
    for split in ("test", "test_without_task_ids"):
        if split not in results:
            continue
        scores = {task: results[split][f"{task}/{GLUE_SCORES[task]}"] for task in GLUE_TASKS}
        prefix = "" if split == "test" else "without_ids_"
        entry.update({f"{prefix}test_{task}": value for task, value in scores.items()})
        entry[f"{prefix}normalised"] = statistics.mean(scores[task] / single[task] for task in GLUE_TASKS)
    return entry


def jointly_trained_scores() -> dict[str, dict[str, float]]:
    """Each multi-task adapter of benchmarks/glue_adapters.py trained jointly on the five tasks at the seed the
    sources have: its dev score per task, from that benchmark's results or, where it has no row, its zoo entry."""
    rows = json.loads(ADAPTER_RESULTS.read_text()) if ADAPTER_RESULTS.is_file() else []
    scores = {}
    for method, (_, _, entry) in ADAPTER_METHODS.items():
        if method == SINGLE_TASK:
            continue
        row = next((row for row in rows if row["method"] == method and row["seed"] == ZOO_SEED), None)
        entry_results = REPO / "model_cards" / entry / "results.json" if entry else None
        if row is not None:
            scores[method] = {task: row[f"test_{task}_{GLUE_SCORES[task]}"] for task in GLUE_TASKS}
        elif entry_results is not None and entry_results.is_file():
            test = json.loads(entry_results.read_text())["test"]
            scores[method] = {task: test[f"{task}/{GLUE_SCORES[task]}"] for task in GLUE_TASKS}
    return scores


def write_report(runs: list[dict[str, Any]], single: dict[str, float]) -> None:
    lines = [
        "### Merging single-task LoRAs on GLUE-5 (all-MiniLM-L6-v2)",
        "",
        "GLUE dev set, in %: Matthews correlation (CoLA), accuracy (SST-2, RTE), F1 (MRPC), Pearson (STS-B); "
        "`normalised`: each task's score over its single-task LoRA's, averaged. Scaling chosen on the validation "
        "hold-out (mean_score). Merge: wall seconds of the merge itself (scoring the scaling candidates included) "
        "and the process's peak resident memory, on this 2-core CPU.",
        "",
        "| method | options | CoLA | SST-2 | MRPC | RTE | STS-B | normalised | merge s | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
        "| single-task LoRAs (the sources) | | " + " | ".join(f"{100 * single[task]:.1f}" for task in GLUE_TASKS)
        + " | 1.000 | | |",
    ]
    for method, scores in jointly_trained_scores().items():
        normalised = statistics.mean(scores[task] / single[task] for task in GLUE_TASKS)
        lines.append(f"| {method}, trained jointly (glue_adapters.py) | | "
                     + " | ".join(f"{100 * scores[task]:.1f}" for task in GLUE_TASKS) + f" | {normalised:.3f} | | |")
    for run in runs:
        for prefix, label in (("", run["method"]), ("without_ids_", f"{run['method']}, without task ids")):
            if f"{prefix}normalised" not in run:
                continue
            cells = [f"{100 * run[f'{prefix}test_{task}']:.1f}" for task in GLUE_TASKS]
            options = ", ".join(f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
                                for name, value in run["options"].items())
            lines.append(f"| {label} | {options} | " + " | ".join(cells) + f" | {run[f'{prefix}normalised']:.3f} | "
                         f"{run['merge_seconds']:.0f} | {run['peak_memory_mb']:,.0f} |")
    (RESULTS / "glue_merging.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--sources_dir", type=Path, default=REPO / "outputs" / "glue_runs",
                        help="where glue_adapters.py --keep_checkpoints kept the single-task runs")
    parser.add_argument("--seed", type=int, default=42, help="the single-task runs' seed")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--scalings", nargs="+", type=float, default=[0.25, 0.5, 1.0, 1.5, 2.0])
    parser.add_argument("--router_steps", type=int, default=300,
                        help=f"the experts' token-router steps (300: the zoo entry {EXPERTS_ENTRY}'s)")
    parser.add_argument("--remeasure", action="store_true")
    parser.add_argument("--exactness", action="store_true",
                        help="measure how exactly the merges that should give the sources back do so, and stop")
    args = parser.parse_args()

    sources = {task: args.sources_dir / f"single_task_lora_{task}_seed{args.seed}" / "best" for task in GLUE_TASKS}
    missing = [str(folder) for folder in sources.values() if not folder.is_dir()]
    if missing:
        raise SystemExit(f"Missing single-task runs {missing}: run `python benchmarks/glue_adapters.py --methods "
                         f"single_task_lora --seeds {args.seed} --keep_checkpoints {args.sources_dir}` first.")
    if args.exactness:
        write_exactness(exactness(sources))
        return
    single = single_task_scores(sources)
    runs = json.loads(RESULTS_FILE.read_text()) if RESULTS_FILE.is_file() else []
    done = {run["method"] for run in runs if measured_with(run, args.scalings, args.router_steps)}
    for method in args.methods:
        if method in done and not args.remeasure:
            print(f"{method}: measured earlier with these settings, skipped", flush=True)
            continue
        results = measure(method, sources, args.scalings, args.router_steps, args.remeasure)
        runs = merge_runs(RESULTS_FILE, [row(method, results, single)], key=("method",))
        write_report(runs, single)


if __name__ == "__main__":
    main()
