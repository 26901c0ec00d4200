"""The zoo's index: its entries by name, where their folders are, and what each folder holds, readable
without importing torch (see the package's docstring). `moezoo.zoo` loads the entries."""

from __future__ import annotations

import json
import os
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


@dataclass(frozen=True)
class ZooEntry:
    """One pretrained model of the zoo.

    Attributes:
        name: The entry's name, also its folder under ``model_cards/``.
        hub_id: Its Hub repository.
        architecture: A name from `moezoo.list_models`, or an adapter method of `moezoo.adapters.ADAPTER_METHODS`
            (its config's ``architecture_name``).
        dataset: The data set it was trained on (a name of `moezoo.training.datasets.DATASETS`).
        recipe: The recipe script that trains it.
        config: The recipe's YAML.
        arguments: Flags after the YAML.
    """

    name: str
    hub_id: str
    architecture: str
    dataset: str
    recipe: str
    config: str
    arguments: tuple[str, ...] = ()

    @property
    def command(self) -> str:
        """The command that regenerates the entry's folder."""
        return f"python recipes/build_zoo.py {self.name}"

    @property
    def training_command(self) -> str:
        """The recipe command that trains the entry's model."""
        return " ".join(["python", self.recipe, self.config, *self.arguments])


def _census_entry(name: str, architecture: str, config: str, *arguments: str) -> ZooEntry:
    return ZooEntry(
        name, f"moezoo/{name}", architecture, "census_income", "recipes/train_tabular.py", config, tuple(arguments)
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
        ),
        ZooEntry(
            "mmoe-multi-fashion-mnist", "moezoo/mmoe-multi-fashion-mnist", "mmoe", "fashion-mnist",
            "recipes/train_image.py", "recipes/configs/multi_mnist_dselect_k.yaml",
            ("--dataset", "fashion-mnist", "--model_name", "mmoe"),
        ),
        ZooEntry(
            "m3vit-multi-mnist", "moezoo/m3vit-multi-mnist", "m3vit", "mnist",
            "recipes/train_vit.py", "recipes/configs/multi_mnist_m3vit.yaml",
        ),
        *(
            ZooEntry(f"{name}-glue", f"moezoo/{name}-glue", method, "glue", "recipes/train_glue.py", f"recipes/configs/glue_{method}.yaml")
            for name, method in (("multi-head-lora", "multi_head_lora"), ("mhr", "mhr"), ("align-lora", "align_lora"))
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


def list_pretrained() -> list[dict[str, Any]]:
    """Every zoo entry: name, Hub id, architecture, data set, command, local folder (``None`` when not
    here), its headline test metrics (from the folder's ``results.json``, when present), and what is wrong
    with its folder (``damage``, ``None`` when nothing is): one damaged entry does not hide the others."""
    listed = []
    for entry in ZOO.values():
        folder, damage = entry_folder(entry.name), entry_damage(entry.name)
        metrics = {}
        if folder is not None and damage is None:
            test = (read_results(folder) or {}).get("test", {})
            metrics = {name: value for name, value in test.items() if name.startswith("mean_")}
        listed.append(
            {
                "name": entry.name, "hub_id": entry.hub_id, "architecture": entry.architecture,
                "dataset": entry.dataset, "command": entry.command, "folder": str(folder) if folder else None,
                "metrics": metrics, "damage": damage,
            }
        )
    return listed
