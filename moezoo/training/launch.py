"""What ``moezoo train`` runs: a recipe (a YAML config, a recipe script, or a zoo entry) as a command,
under ``accelerate launch`` when it asks for several processes."""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from ..zoo import ZOO, get_entry
from .arguments import load_yaml_config
from .datasets import DATASETS

CHECKOUT = Path(__file__).resolve().parents[2]
#: Architectures with a recipe of their own, whatever the data set.
MODEL_RECIPE_SCRIPTS = {"m3vit": "train_vit.py"}
#: The recipe of a config that adapts a pretrained transformer (one that sets ``adapter_method``).
ADAPTER_RECIPE_SCRIPT = "train_glue.py"


def recipe_arguments(recipe: str, flags: Sequence[str] = ()) -> list[str]:
    """The recipe script and its arguments for ``recipe``:

    - a recipe script (``recipes/train_tabular.py``): itself, then ``flags`` (its YAML among them);
    - a YAML config: the script of its ``model_name`` when that architecture has its own recipe (M³ViT's),
      the GLUE adapter recipe when it sets ``adapter_method``, or else the script that trains on its ``dataset`` (``--model_name`` / ``--dataset`` in ``flags`` win),
      then the YAML, then ``flags``;
    - a zoo entry's name: the entry's recipe, YAML and arguments, then ``flags``.

    Paths are relative to the working directory, or else to the moezoo checkout (where ``recipes/`` is).

    Raises:
        FileNotFoundError: a script or YAML that does not exist.
        ValueError: a YAML whose data set no recipe trains on.
        KeyError: a name that is no file and no zoo entry.
    """
    if recipe.endswith(".py"):
        return [str(_find(recipe)), *flags]
    if recipe.endswith((".yaml", ".yml")):
        config = _find(recipe)
        values = load_yaml_config(config)
        model_name = _flag_value(flags, "--model_name") or values.get("model_name")
        if model_name in MODEL_RECIPE_SCRIPTS:
            return [str(_find(f"recipes/{MODEL_RECIPE_SCRIPTS[model_name]}")), str(config), *flags]
        if "adapter_method" in values or _flag_value(flags, "--adapter_method"):
            return [str(_find(f"recipes/{ADAPTER_RECIPE_SCRIPT}")), str(config), *flags]
        dataset = _flag_value(flags, "--dataset") or values.get("dataset")
        if dataset not in DATASETS:
            raise ValueError(
                f"{config} names data set {dataset!r}; the recipes train on {sorted(DATASETS)}. "
                "Name the recipe script instead: moezoo train recipes/<script>.py <config>.yaml"
            )
        return [str(_find(f"recipes/{DATASETS[dataset].recipes[0]}")), str(config), *flags]
    if recipe in ZOO or not Path(recipe).exists():
        entry = get_entry(recipe)
        return [str(_find(entry.recipe)), str(_find(entry.config)), *entry.arguments, *flags]
    raise ValueError(f"{recipe} is neither a recipe script (.py), a YAML config (.yaml) nor a zoo entry.")


def launch_command(recipe: str, flags: Sequence[str] = (), num_processes: int = 1) -> list[str]:
    """The command line that runs ``recipe`` (see `recipe_arguments`): ``python <script> ...`` for one
    process, ``accelerate launch --multi_gpu --num_processes N <script> ...`` for several (with
    ``ACCELERATE_USE_CPU=1`` in the environment when there is no GPU; see `launch_environment`)."""
    if num_processes < 1:
        raise ValueError(f"--num_processes must be at least 1, got {num_processes}.")
    arguments = recipe_arguments(recipe, flags)
    if num_processes == 1:
        return [sys.executable, *arguments]
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        # A free port rather than the fixed default, so that runs launched side by side (or one just after
        # another, while the previous one's port is still held) do not collide.
        "--main_process_port", str(free_port()), *arguments,
    ]


def free_port() -> int:
    """A TCP port of this machine that nothing listens on now (the system's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_environment(num_processes: int) -> dict[str, str]:
    """Environment variables a launch of ``num_processes`` needs: several processes on a machine without
    a GPU share the CPU through ``ACCELERATE_USE_CPU=1`` (``accelerate launch --cpu`` would run only one)."""
    if num_processes > 1 and not torch.cuda.is_available():
        return {"ACCELERATE_USE_CPU": "1"}
    return {}


def _find(path: str) -> Path:
    for candidate in (Path(path), CHECKOUT / path):
        if candidate.is_file():
            return candidate.resolve()
    raise FileNotFoundError(
        f"{path} is not in the working directory nor in the moezoo checkout ({CHECKOUT}); the recipes ship with a "
        "checkout of moezoo."
    )


def _flag_value(flags: Sequence[str], name: str) -> str | None:
    for index, flag in enumerate(flags):
        if flag == name and index + 1 < len(flags):
            return flags[index + 1]
        if flag.startswith(f"{name}="):
            return flag.split("=", 1)[1]
    return None
