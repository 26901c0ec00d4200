"""The zoo's index: its entries by name, where their folders are, and what each folder holds, readable
without importing torch (see the package's docstring). `moezoo.zoo` loads the entries."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .suggestions import closest_names

ZOO_DIR_ENV = "MOEZOO_ZOO_DIR"
_CHECKOUT_ZOO = Path(__file__).resolve().parents[1] / "model_cards"
#: The registered architectures (`moezoo.list_models`) and adapter methods (`moezoo.adapters.ADAPTER_METHODS`),
#: by name; a test keeps them equal to what `moezoo` registers.
ARCHITECTURES = ("cgc", "dselect_k", "dselect_k_static", "home", "m3vit", "mmoe", "omoe", "ple", "shared_bottom")
ADAPTER_METHODS = ("lora", "align_lora", "multi_head_lora", "mhr", "frozen")
#: The metric a task is judged by, the first of these it has: GLUE's own (Matthews correlation, F1, Pearson),
#: AUC, accuracy, mIoU (dense tasks).
#: Each higher-is-better, so that a larger value is the better model.
HEADLINE_METRICS = ("mcc", "f1", "pearson", "auc", "accuracy", "miou")


def headline_metric(task: str, metrics: Mapping[str, Any]) -> str | None:
    """The metric task ``task`` is judged by: the first of `HEADLINE_METRICS` that ``metrics`` (``task/metric``
    names) holds for it."""
    return next((name for name in HEADLINE_METRICS if f"{task}/{name}" in metrics), None)


@dataclass(frozen=True)
class Baseline:
    """A model a zoo entry is compared against, trained at the same budget by a benchmark: the rows of a
    benchmark's results file whose fields match ``match``, read as ``test_{task}_{metric}`` values.

    Attributes:
        label: Its name in cards and listings, e.g. ``"single-task LoRA"``.
        description: What it is and how it was trained, for the card.
        results_file: The benchmark's results file, relative to the repository (``benchmarks/results/...``).
        match: Field values the rows must have (several rows are merged: one run per task, say).
    """

    label: str
    description: str
    results_file: str
    match: tuple[tuple[str, Any], ...]

    def rows(self, repository: Path) -> list[dict[str, Any]]:
        """The matching rows of the results file in ``repository`` (empty when it has none)."""
        path = repository / self.results_file
        if not path.is_file():
            return []
        return [row for row in json.loads(path.read_text()) if all(row.get(key) == value for key, value in self.match)]

    def test_metrics(self, repository: Path, names: Sequence[str]) -> dict[str, float]:
        """The baseline's test value of each ``task/metric`` name it reports, from its rows."""
        merged = {key: value for row in self.rows(repository) for key, value in row.items()}
        found = {}
        for name in names:
            task, metric = name.split("/", 1)
            if f"test_{task}_{metric}" in merged:
                found[name] = merged[f"test_{task}_{metric}"]
        return found


#: The recipe of an entry merged from trained models (`moezoo merge` with the entry's YAML).
MERGE_RECIPE = "moezoo merge"
GLUE_RECIPE = "recipes/train_glue.py"


@dataclass(frozen=True)
class ZooEntry:
    """One pretrained model of the zoo.

    Attributes:
        name: The entry's name, also its folder under ``model_cards/``.
        hub_id: Its Hub repository.
        architecture: A name from `moezoo.list_models`, or an adapter method of `moezoo.adapters.ADAPTER_METHODS`
            (its config's ``architecture_name``).
        dataset: The data set it was trained on (a name of `moezoo.training.datasets.DATASETS`).
        recipe: The recipe script that trains it, or `MERGE_RECIPE` for a model merged from trained ones.
        config: The recipe's YAML.
        arguments: Flags after the YAML.
        baselines: The models it is compared against at the same budget (`Baseline`).
        fine_tune_config: The YAML of ``recipes/train_glue.py`` that continues training a merged entry (a merge
            has no training recipe of its own to continue).
        deviations: How the entry deliberately differs from its paper, for its card's limitations.
    """

    name: str
    hub_id: str
    architecture: str
    dataset: str
    recipe: str
    config: str
    arguments: tuple[str, ...] = ()
    baselines: tuple[Baseline, ...] = ()
    fine_tune_config: str | None = None
    deviations: str | None = None

    def __post_init__(self) -> None:
        if (self.recipe == MERGE_RECIPE) != (self.fine_tune_config is not None):
            raise ValueError(f"Zoo entry {self.name!r}: a merged entry (recipe {MERGE_RECIPE!r}), and only one, names the "
                             "fine_tune_config that continues training it.")

    @property
    def command(self) -> str:
        """The command that regenerates the entry's folder."""
        return f"python recipes/build_zoo.py {self.name}"

    @property
    def training_command(self) -> str:
        """The recipe command that trains (or merges) the entry's model."""
        program = [MERGE_RECIPE] if self.recipe == MERGE_RECIPE else ["python", self.recipe]
        return " ".join([*program, self.config, *self.arguments])

    @property
    def fine_tune_command(self) -> str:
        """An ``accelerate launch`` command that continues training from the published entry."""
        recipe = [GLUE_RECIPE, self.fine_tune_config] if self.fine_tune_config else [self.recipe, self.config, *self.arguments]
        return " ".join(["accelerate launch", *recipe, "--model_name_or_path", self.hub_id, "--output_dir", "my-run"])


def _single_task_baseline(network: str, script: str, results_file: str, *match: tuple[str, Any]) -> Baseline:
    """The single-task baseline of a benchmark's ``single_task`` rows (seed 0): ``network``, one per task."""
    return Baseline(
        "single-task",
        f"{network}, one per task, each trained on its task alone with the same data, epochs and settings "
        f"({script} --models single_task, seed 0)",
        results_file, (("model", "single_task"), ("seed", 0), *match),
    )


_CENSUS_GROUP_1 = "benchmarks/results/census_income_group1.json"
_CENSUS_GROUP_1_BASELINES = (
    _single_task_baseline(
        "a Shared-Bottom network of its default config that reads the multi-task inputs (the other task's "
        "columns withheld)", "benchmarks/census_quality.py", _CENSUS_GROUP_1,
    ),
    Baseline(
        "Shared-Bottom",
        "one Shared-Bottom network of its default config for both tasks, with the same data, epochs and settings "
        "(benchmarks/census_quality.py, seed 0)",
        _CENSUS_GROUP_1, (("model", "shared_bottom"), ("seed", 0)),
    ),
)

_CENSUS_HOME_BASELINES = (
    _single_task_baseline(
        "a Shared-Bottom network of the benchmark's equal-budget width that reads the multi-task inputs (the other "
        "tasks' columns withheld)", "benchmarks/census_home.py", "benchmarks/results/census_income_home.json",
    ),
)


def _multi_mnist_baselines(dataset: str) -> tuple[Baseline, ...]:
    """The single-task and Shared-Bottom rows of ``benchmarks/multi_mnist_quality.py`` on ``dataset``."""
    results = "benchmarks/results/multi_mnist.json"
    return (
        _single_task_baseline(
            "a Shared-Bottom network of the benchmark's default config", "benchmarks/multi_mnist_quality.py", results,
            ("dataset", dataset),
        ),
        Baseline(
            "Shared-Bottom",
            "one Shared-Bottom network for both tasks, with the same data, epochs and settings "
            "(benchmarks/multi_mnist_quality.py, seed 0)",
            results, (("model", "shared_bottom"), ("seed", 0), ("dataset", dataset)),
        ),
    )


_GLUE_BASELINES = (
    Baseline(
        "single-task LoRA",
        "one LoRA of rank 8 in the same linear maps (and a head) per task, each trained on its task alone for the steps "
        "the multi-task run's mixing gives that task, so that the five together cost one multi-task run "
        "(benchmarks/glue_adapters.py --methods single_task_lora, seed 42)",
        "benchmarks/results/glue_adapters.json", (("method", "single_task_lora"), ("seed", 42)),
    ),
    Baseline(
        "multi-task LoRA",
        "one LoRA of rank 8 in the same linear maps shared by the five tasks, a head per task, trained on the same "
        "temperature-mixed batches for the same steps (benchmarks/glue_adapters.py --methods lora, seed 42)",
        "benchmarks/results/glue_adapters.json", (("method", "lora"), ("seed", 42)),
    ),
)

_M3VIT_RESULTS = "benchmarks/results/m3vit_multi_mnist.json"
_M3VIT_BASELINES = (
    Baseline(
        "single-task ViT",
        "the recipe's ViT with dense MLPs, one per task, each trained on its task alone with the same canvases, epochs "
        "and settings (benchmarks/m3vit_quality.py --variants single_<task>)",
        _M3VIT_RESULTS, (("model", "single_task"),),
    ),
    Baseline(
        "dense multi-task ViT",
        "the recipe's ViT with dense MLPs in every block and a head per task, every task trained on every canvas, "
        "with the same canvases, epochs and settings (benchmarks/m3vit_quality.py --variants dense_vit)",
        _M3VIT_RESULTS, (("model", "dense_vit"),),
    ),
)


def _census_entry(name: str, architecture: str, config: str, *arguments: str) -> ZooEntry:
    baselines = _CENSUS_HOME_BASELINES if config.endswith("home.yaml") else _CENSUS_GROUP_1_BASELINES
    return ZooEntry(
        name, f"moezoo/{name}", architecture, "census_income", "recipes/train_tabular.py", config, tuple(arguments),
        baselines,
    )


ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in (
        _census_entry("mmoe-census-income", "mmoe", "recipes/configs/census_income_mmoe.yaml"),
        _census_entry("ple-census-income", "ple", "recipes/configs/census_income_mmoe.yaml", "--model_name", "ple"),
        _census_entry(
            "dselect-k-census-income", "dselect_k", "recipes/configs/census_income_mmoe.yaml", "--model_name", "dselect_k"
        ),
        _census_entry("home-census-income", "home", "recipes/configs/census_income_home.yaml"),
        ZooEntry(
            "dselect-k-multi-mnist", "moezoo/dselect-k-multi-mnist", "dselect_k", "mnist",
            "recipes/train_image.py", "recipes/configs/multi_mnist_dselect_k.yaml",
            baselines=_multi_mnist_baselines("mnist"),
        ),
        ZooEntry(
            "mmoe-multi-fashion-mnist", "moezoo/mmoe-multi-fashion-mnist", "mmoe", "fashion-mnist",
            "recipes/train_image.py", "recipes/configs/multi_mnist_dselect_k.yaml",
            ("--dataset", "fashion-mnist", "--model_name", "mmoe"), _multi_mnist_baselines("fashion-mnist"),
        ),
        ZooEntry(
            "m3vit-multi-mnist", "moezoo/m3vit-multi-mnist", "m3vit", "mnist",
            "recipes/train_vit.py", "recipes/configs/multi_mnist_m3vit.yaml", baselines=_M3VIT_BASELINES,
            deviations=(
                "**Differs from the paper on purpose.** Only the last of the 6 blocks is an MoE layer (the paper makes "
                "every other block one), its experts are half the dense MLP's width (4 per token: a task's pathway is "
                "an MLP twice as wide as the dense one), and every canvas trains every task: the first 5 blocks and the "
                "last block's attention run once per canvas and only the last MLP once per task, so a training step "
                "costs about 2x the dense ViT's instead of 4x. With the paper's placement and one task's pathway drawn "
                "per canvas (a step at the dense ViT's cost) each task saw a quarter of the canvases and the model "
                "trailed the dense multi-task ViT on every task (benchmarks/m3vit_quality.py, variant "
                "m3vit_one_task_per_canvas); with experts of width 64 (a pathway as wide as the dense MLP) it trailed "
                "the dense ViT on three tasks (variant m3vit_expert_width_64). It stays behind the dense ViT on "
                "top_left, at the single-task ViT's accuracy: the dense ViT gains there from sharing its last block "
                "with the dense tasks, whose per-pixel labels carry each item's class."
            ),
        ),
        *(
            ZooEntry(
                f"{name}-glue", f"moezoo/{name}-glue", method, "glue", GLUE_RECIPE,
                f"recipes/configs/glue_{method}.yaml", baselines=_GLUE_BASELINES,
            )
            for name, method in (("multi-head-lora", "multi_head_lora"), ("mhr", "mhr"), ("align-lora", "align_lora"))
        ),
        ZooEntry(
            "task-vector-experts-glue", "moezoo/task-vector-experts-glue", "multi_head_lora", "glue", MERGE_RECIPE,
            "recipes/configs/glue_merge_experts.yaml", baselines=_GLUE_BASELINES,
            fine_tune_config="recipes/configs/glue_task_vector_experts.yaml",
        ),
    )
}


def zoo_dir() -> Path | None:
    """Where the zoo's folders are: ``$MOEZOO_ZOO_DIR``, or ``model_cards/`` of a moezoo checkout."""
    if os.environ.get(ZOO_DIR_ENV):
        return Path(os.environ[ZOO_DIR_ENV])
    return _CHECKOUT_ZOO if _CHECKOUT_ZOO.is_dir() else None


def entry_folder(name: str) -> Path | None:
    """The local folder of entry ``name``, if it is there (with its config)."""
    root = zoo_dir()
    folder = root / name if root is not None else None
    return folder if folder is not None and (folder / "config.json").is_file() else None


def entry_damage(name: str) -> str | None:
    """What is wrong with entry ``name``'s local folder, in words, or ``None`` when it is whole or absent:
    a folder without ``config.json``, or a ``results.json`` that is not a JSON object."""
    root = zoo_dir()
    folder = root / name if root is not None else None
    if folder is None or not folder.exists():
        return None
    if not (folder / "config.json").is_file():
        return f"{folder} has no config.json"
    try:
        read_results(folder)
    except ValueError as error:
        return str(error)
    return None


def read_results(folder: Path) -> dict[str, Any] | None:
    """A folder's ``results.json``, or ``None`` when it has none.

    Raises:
        ValueError: the file is not a JSON object (its path and the parser's reason).
    """
    path = folder / "results.json"
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from error
    if not isinstance(results, dict):
        raise ValueError(f"{path} holds a {type(results).__name__}, not a JSON object")
    return results


def get_entry(name: str) -> ZooEntry:
    """The zoo entry ``name``; a `KeyError` with the closest names otherwise."""
    if name not in ZOO:
        raise KeyError(f"No zoo entry {name!r}{closest_names(name, ZOO)}; the zoo has {sorted(ZOO)}.")
    return ZOO[name]


def headline_metrics(test: Mapping[str, Any]) -> dict[str, float]:
    """Each task's headline test metric (`headline_metric`), as ``{"task/metric": value}``."""
    tasks = sorted({name.split("/")[0] for name in test if "/" in name})
    chosen = {task: headline_metric(task, test) for task in tasks}
    return {f"{task}/{metric}": test[f"{task}/{metric}"] for task, metric in chosen.items() if metric is not None}


def list_pretrained() -> list[dict[str, Any]]:
    """Every zoo entry: name, Hub id, architecture, data set, command, local folder (``None`` when not
    here), each task's headline test metric (``metrics``, from the folder's ``results.json``, when present),
    the same metrics of the first baseline it was compared against (``baseline``: its label and metrics, or
    ``None``), and what is wrong with its folder (``damage``, ``None`` when nothing is): one damaged entry does
    not hide the others."""
    listed = []
    for entry in ZOO.values():
        folder, damage = entry_folder(entry.name), entry_damage(entry.name)
        metrics, baseline = {}, None
        if folder is not None and damage is None:
            results = read_results(folder) or {}
            metrics = headline_metrics(results.get("test", {}))
            label, measured = next(iter((results.get("baselines") or {}).items()), (None, None))
            if label is not None:
                baseline = {"label": label, "metrics": {name: measured["test"][name] for name in metrics if name in measured["test"]}}
        listed.append(
            {
                "name": entry.name, "hub_id": entry.hub_id, "architecture": entry.architecture,
                "dataset": entry.dataset, "command": entry.command, "folder": str(folder) if folder else None,
                "metrics": metrics, "baseline": baseline, "damage": damage,
            }
        )
    return listed
