"""Saved single-task checkpoints merged into one saved multi-task model: what ``moezoo merge`` runs.

The sources (checkpoint folders, zoo entries or Hub ids) are LoRA-adapted transformers of one base, each with
its own tasks. They are merged by a method of `moezoo.merging.MERGING_METHODS` (`merge_lora_models`) or made
the experts of one task-routed model (``task_vector_experts``, `moezoo.merging.task_vector_experts`); the result
is saved with the sources' tokenizer. When every source has the ``results.json`` of its run, on the same data
set, the merged model is evaluated on the tasks' validation and test splits (the first source's data settings,
every source's tasks), its ``results.json`` written and its card generated; with ``scalings`` the method's
scaling is chosen on the validation splits' ``mean_score``. The experts' token routers, which route inputs that
come without a task id, can be trained on the tasks' training splits (``router_steps``); the experts model is
then also scored without task ids (``test_without_task_ids``).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..suggestions import closest_names
from .methods import MERGING_METHODS, check_method_options

#: The method that keeps every source as an expert of one task-routed model instead of merging them.
EXPERTS_METHOD = "task_vector_experts"
METHODS = (*MERGING_METHODS, EXPERTS_METHOD)
ROUTER_BATCH_SIZE = 32


@dataclass
class MergeArguments:
    """What ``moezoo merge`` merges, how, and where it writes the result (a YAML under ``recipes/configs/``
    and flags, as the recipes read theirs)."""

    sources: list[str] = field(
        default_factory=list,
        metadata={"help": "the single-task models: checkpoint folders, zoo entries or Hub ids of LoRA fine-tunes "
                          "of one base"},
    )
    method: str = field(
        default="task_arithmetic",
        metadata={"help": f"how to merge them: one of {list(METHODS)} (the last keeps every source as an expert)"},
    )
    options: str | None = field(
        default=None, metadata={"help": "the method's options as a JSON object, e.g. '{\"density\": 0.2}'"}
    )
    scalings: list[float] | None = field(
        default=None,
        metadata={"help": "candidate scalings λ, the best chosen on the sources' validation splits (mean_score)"},
    )
    router_steps: int = field(
        default=0,
        metadata={"help": f"{EXPERTS_METHOD} only: steps (batches of 32 from the tasks' training splits, mixed) that "
                          "train its token routers for inputs without a task id"},
    )
    router_learning_rate: float = field(default=1e-3, metadata={"help": "the token routers' AdamW learning rate"})
    output_dir: str | None = field(default=None, metadata={"help": "the folder to write the merged model to"})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "replace a non-empty output_dir"})
    evaluate: bool = field(
        default=True,
        metadata={"help": "score the merged model on its tasks' validation and test splits and write its card "
                          "(needs every source's results.json)"},
    )

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("Name the models to merge: --sources FOLDER_OR_ENTRY [...].")
        if self.method not in METHODS:
            raise ValueError(
                f"Unknown merging method {self.method!r}{closest_names(self.method, METHODS)}; choose one of {list(METHODS)}."
            )
        if self.output_dir is None:
            raise ValueError("Name the folder to write the merged model to: --output_dir.")
        if self.router_steps < 0 or self.router_learning_rate <= 0:
            raise ValueError(f"router_steps must be >= 0 and router_learning_rate > 0, got {self.router_steps} and "
                             f"{self.router_learning_rate}.")
        if self.method == EXPERTS_METHOD:
            if self.option_values() or self.scalings:
                raise ValueError(f"{EXPERTS_METHOD} keeps every source as it is: it takes no options and no scalings.")
            return
        if self.router_steps:
            raise ValueError(f"router_steps trains the token routers of {EXPERTS_METHOD}; {self.method!r} has none.")
        check_method_options(self.method, self.option_values())
        if self.scalings is not None and "scaling" in self.option_values():
            raise ValueError("Give either the scaling option or candidate scalings to choose from, not both.")

    def option_values(self) -> dict[str, Any]:
        """``options`` as a dict (a `ValueError` naming the flag when it is not a JSON object)."""
        from ..training.arguments import parse_json_object

        return parse_json_object("options", self.options)


def _names_its_tasks(results: dict[str, Any] | None) -> bool:
    """Whether a source's run results are there and name the tasks it trained."""
    return results is not None and bool(results.get("arguments", {}).get("tasks"))


def merged_run_arguments(results: Sequence[dict[str, Any] | None], task_names: Sequence[str]) -> dict[str, Any] | None:
    """The settings of a run over every source's tasks (the first source's data settings, the tasks in the
    merged model's order), or ``None`` when a source has no results or names no tasks."""
    if not all(map(_names_its_tasks, results)):
        return None
    datasets = {result["arguments"].get("dataset") for result in results}
    if len(datasets) > 1:
        raise ValueError(f"The sources were trained on different data sets ({sorted(map(str, datasets))}): a merged model "
                         "is scored on one.")
    return {**results[0]["arguments"], "tasks": list(task_names)}


def is_task_vector_experts(model: Any) -> bool:
    """Whether ``model`` holds single-task fine-tunes kept whole as the experts of one adapter (`EXPERTS_METHOD`)."""
    merge = getattr(getattr(model, "config", None), "merge", None)
    return (merge or {}).get("method") == EXPERTS_METHOD


def score_splits(model: Any, run_arguments: dict[str, Any], folder: Path) -> dict[str, dict[str, float]]:
    """A model's scores on its tasks' ``validation`` and ``test`` splits (read as ``run_arguments`` say, with the
    processor in ``folder``), as its results.json holds them; for task-vector experts also
    ``test_without_task_ids``: what inputs that come without a task id get from the token routers' mix, each
    example scored on its own task."""
    from ..training.datasets import evaluate_run_split

    scores = {split: evaluate_run_split(model, run_arguments, folder, split, show_progress=True)
              for split in ("validation", "test")}
    if is_task_vector_experts(model):
        with model.routing.by_tokens():
            scores["test_without_task_ids"] = evaluate_run_split(model, run_arguments, folder, "test")
    return scores


def merge_checkpoints(arguments: MergeArguments) -> Path:
    """Merge ``arguments.sources`` as the module's docstring says and save the result; returns its folder.

    Raises:
        FileExistsError: ``output_dir`` holds files and ``overwrite_output_dir`` is not set.
        ValueError: a source that is not a LoRA-adapted transformer, sources with different vocabularies, sources
            that cannot be merged exactly (see `merge_lora_models`), or ``scalings`` or ``router_steps`` without the
            sources' results to read the data from.
    """
    from transformers import AutoTokenizer

    from .. import zoo
    from ..adapters import AdaptedTransformerModel
    from ..hub.folder import find_results, write_card
    from ..training.data import TensorDataset, make_dataloader
    from ..training.datasets import evaluate_run_split, run_split
    from ..training.checkpoints import replace_folder
    from ..training.recipe import machine_environment, peak_memory_mb
    from .experts import task_vector_experts, train_token_routers
    from .lora import merge_lora_models

    output = Path(arguments.output_dir)
    if output.is_dir() and any(output.iterdir()) and not arguments.overwrite_output_dir:
        raise FileExistsError(f"{output} is not empty; pass --overwrite_output_dir to replace what is there.")
    options = arguments.option_values()
    folders = [zoo.local_folder(source) for source in arguments.sources]
    models = [zoo.from_pretrained(folder) for folder in folders]
    for source, model in zip(arguments.sources, models):
        if not isinstance(model, AdaptedTransformerModel):
            raise ValueError(
                f"{source} is a {type(model).__name__}, not a LoRA-adapted transformer: `moezoo merge` merges LoRA "
                "fine-tunes; full fine-tunes merge in Python (moezoo.merging.full_task_vector, merge_task_vectors, "
                "apply_task_vector)."
            )
    tokenizers = [AutoTokenizer.from_pretrained(folder) for folder in folders]
    for source, tokenizer in zip(arguments.sources[1:], tokenizers[1:]):
        if tokenizer.get_vocab() != tokenizers[0].get_vocab():
            raise ValueError(f"{source} reads text with another vocabulary than {arguments.sources[0]}: its token ids mean "
                             "other words, so one merged model cannot serve both.")
    results = [find_results(folder) for folder in folders]
    task_names = [task["name"] for model in models for task in model.config.tasks]
    run_arguments = merged_run_arguments(results, task_names)

    def validation_score(candidate: AdaptedTransformerModel) -> float:
        return evaluate_run_split(candidate, run_arguments, folders[0], "validation")["mean_score"]

    if (arguments.scalings or arguments.router_steps) and run_arguments is None:
        missing = next(source for source, result in zip(arguments.sources, results) if not _names_its_tasks(result))
        raise ValueError(f"Choosing the scaling or training the routers reads the tasks' data from each source's "
                         f"results.json; {missing} has none (or names no tasks).")
    started = time.perf_counter()
    if arguments.method == EXPERTS_METHOD:
        merged = task_vector_experts(models, arguments.sources)
        if arguments.router_steps:
            training = make_dataloader(TensorDataset(run_split(run_arguments, folders[0], "train")), ROUTER_BATCH_SIZE,
                                       shuffle=True, seed=0)
            steps = itertools.islice(itertools.chain.from_iterable(itertools.repeat(training)), arguments.router_steps)
            losses = train_token_routers(merged, steps, arguments.router_learning_rate)
            merged.config.merge["options"] = {"router_steps": arguments.router_steps,
                                              "router_learning_rate": arguments.router_learning_rate}
            merged.config.merge["router_losses"] = {"first": losses[0], "last": losses[-1]}
    else:
        merged = merge_lora_models(
            models, arguments.method, options, arguments.sources, arguments.scalings,
            validation_score if arguments.scalings else None,
        )
    seconds = time.perf_counter() - started
    # What the sources cost to train, when each one's run recorded it: the merged model's cost, all told.
    source_seconds = [(result or {}).get("environment", {}).get("train_seconds") for result in results]
    summary: dict[str, Any] = {
        "completed": True, "model_type": merged.config.model_type, "num_parameters": merged.num_parameters(),
        "merge": merged.config.merge, **({"arguments": run_arguments} if run_arguments is not None else {}),
        "environment": {
            **machine_environment(merged.device), "merge_seconds": round(seconds, 1), "peak_memory_mb": peak_memory_mb(),
            **({"sources_train_seconds": round(sum(source_seconds), 1)} if None not in source_seconds else {}),
        },
    }
    evaluated = arguments.evaluate and run_arguments is not None

    def write(folder: Path) -> None:
        merged.save_pretrained(folder)
        tokenizers[0].save_pretrained(folder)
        if evaluated:
            summary.update(score_splits(merged, run_arguments, folder))
        (folder / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
        if evaluated:
            write_card(folder, model_id=output.name, overwrite=True)

    # Assembled aside: an earlier result at output_dir is replaced only by a complete new one.
    replace_folder(output, write)
    return output
