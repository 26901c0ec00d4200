"""Recipe arguments from a YAML file, overridden on the command line."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser


def parse_config_and_args(dataclass_types: Sequence[type], argv: Sequence[str] | None = None) -> tuple[Any, ...]:
    """Fill ``dataclass_types`` from an optional YAML file, then from command-line flags.

    The YAML file is the first argument if it ends in ``.yaml`` / ``.yml`` (or follows ``--config``);
    its keys are the dataclasses' field names, and flags given after it override them. A mapping in
    the YAML for a string field (such as ``model_config``) is passed on as JSON.

    Raises:
        ValueError: the YAML file names a field no dataclass has.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    config_path = None
    if "--config" in args:
        index = args.index("--config")
        if index + 1 >= len(args):
            raise ValueError("--config needs a YAML file path.")
        config_path = args[index + 1]
        del args[index : index + 2]
    elif args and args[0].endswith((".yaml", ".yml")):
        config_path = args.pop(0)

    parser = HfArgumentParser(dataclass_types)
    if config_path is not None:
        values = yaml.safe_load(Path(config_path).read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{config_path} must hold a mapping of argument names to values.")
        known = {field.name for cls in dataclass_types for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{config_path} sets unknown argument(s) {unknown}.")
        parser.set_defaults(**{key: json.dumps(value) if isinstance(value, dict) else value for key, value in values.items()})
    return parser.parse_args_into_dataclasses(args=args, look_for_args_file=False)
