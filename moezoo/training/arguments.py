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

from ..suggestions import closest_names


def parse_config_and_args(dataclass_types: Sequence[type], argv: Sequence[str] | None = None) -> tuple[Any, ...]:
    """Fill ``dataclass_types`` from an optional YAML file, then from command-line flags.

    The YAML file is the first argument if it ends in ``.yaml`` / ``.yml`` (or follows ``--config``);
    its keys are the dataclasses' field names, and flags given after it override them. A mapping in
    the YAML for a string field (such as ``model_config``) is passed on as JSON, and the same flag on
    the command line overrides its keys one by one (``--model_config '{"num_shared_experts": 4}'``
    keeps the YAML's other ``model_config`` keys).

    Raises:
        ValueError: the YAML file or the command line names an argument no dataclass has (the message
            suggests the closest known names), or a dataclass rejects a value.
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

    # No abbreviations: a misspelt flag that happens to prefix a real one is an error, not that flag.
    parser = HfArgumentParser(dataclass_types, allow_abbrev=False)
    known = {field.name for cls in dataclass_types for field in dataclasses.fields(cls)}
    yaml_mappings: dict[str, dict] = {}
    if config_path is not None:
        values = yaml.safe_load(Path(config_path).read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{config_path} must hold a mapping of argument names to values.")
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"{config_path} sets unknown argument(s) "
                + ", ".join(f"{name!r}{closest_names(name, known)}" for name in unknown)
                + "."
            )
        yaml_mappings = {key: value for key, value in values.items() if isinstance(value, dict)}
        parser.set_defaults(**{key: json.dumps(value) if isinstance(value, dict) else value for key, value in values.items()})
    *parsed, remaining = parser.parse_args_into_dataclasses(args=args, look_for_args_file=False, return_remaining_strings=True)
    if remaining:
        flags = [flag for flag in remaining if flag.startswith("--")] or remaining
        options = [f"--{name}" for name in sorted(known)]
        raise ValueError(
            "Unknown argument(s) " + ", ".join(f"{flag!r}{closest_names(flag.split('=')[0], options)}" for flag in flags)
            + "; --help lists the known ones."
        )
    # A mapping in the YAML (such as model_config) is overridden key by key by the same flag's JSON.
    for name, yaml_value in yaml_mappings.items():
        for arguments in parsed:
            given = getattr(arguments, name, None)
            flag = f"--{name}"
            if given is None or not any(arg == flag or arg.startswith(f"{flag}=") for arg in args):
                continue
            setattr(arguments, name, json.dumps({**yaml_value, **parse_json_object(name, given)}))
    return tuple(parsed)


def require_positive(**values: int | None) -> None:
    """Raise a `ValueError` naming the first of ``values`` that is set (not ``None``) but below 1."""
    for name, value in values.items():
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}.")


def parse_json_object(name: str, text: str | None) -> dict[str, Any]:
    """A flag's JSON object (such as ``--model_config``) as a dict, empty when unset; a `ValueError` that
    names the flag when it is not valid JSON or not an object."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{name} is not valid JSON ({error}): {text!r}.") from error
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object, got {text!r}.")
    return value
