"""Recipe arguments from a YAML file, overridden on the command line."""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
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
    parser = _RaisingArgumentParser(dataclass_types, allow_abbrev=False)
    known = {field.name for cls in dataclass_types for field in dataclasses.fields(cls)}
    yaml_mappings: dict[str, dict] = {}
    yaml_flags: list[str] = []
    if config_path is not None:
        values = load_yaml_config(config_path)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"{config_path} sets unknown argument(s) "
                + ", ".join(f"{name!r}{closest_names(name, known)}" for name in unknown)
                + "."
            )
        yaml_mappings = {key: value for key, value in values.items() if isinstance(value, dict)}
        yaml_flags = yaml_values_as_flags(config_path, values, list_fields(dataclass_types))
        # A null can be given in a YAML but not as a flag: it sets the default.
        parser.set_defaults(**{key: None for key, value in values.items() if value is None})
    # The YAML's values go through the same parser as flags (types, choices), flags given after them win.
    try:
        *parsed, remaining = parser.parse_args_into_dataclasses(
            args=[*yaml_flags, *args], look_for_args_file=False, return_remaining_strings=True
        )
    except FlagValueError as error:
        flag = str(error).split(":")[0].removeprefix("argument ").split("/")[0]
        from_yaml = flag in yaml_flags and not any(arg == flag or arg.startswith(f"{flag}=") for arg in args)
        raise ValueError(f"{error}{f' (set in {config_path})' if from_yaml else ''}.") from None
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


class FlagValueError(ValueError):
    """A flag's value the parser rejects (outside its choices, of the wrong type), with argparse's message."""


class _RaisingArgumentParser(HfArgumentParser):
    """An `HfArgumentParser` whose mistakes raise `FlagValueError`, for the recipes to report in one line,
    instead of exiting."""

    def error(self, message: str) -> typing.NoReturn:
        raise FlagValueError(message)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (lines {seen[key]} and {line})", key_node.start_mark
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """A recipe's YAML file as a mapping of argument names to values.

    Raises:
        FileNotFoundError: there is no such file.
        ValueError: the file is not valid YAML (one line: the line, column and problem), gives a key twice,
            or does not hold a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file {path} does not exist.")
    try:
        values = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "somewhere"
        problem = " ".join(str(part) for part in (error.context, error.problem) if part)
        raise ValueError(f"{path} is not valid YAML: {where}: {problem}.") from None
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {' '.join(str(error).split())}.") from None
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping of argument names to values, not a {type(values).__name__}.")
    return values


def list_fields(dataclass_types: Sequence[type]) -> set[str]:
    """The fields of ``dataclass_types`` that hold lists (``list[...]``, optional or not)."""
    names = set()
    for cls in dataclass_types:
        for name, annotation in typing.get_type_hints(cls).items():
            optional = typing.get_origin(annotation) in (typing.Union, types.UnionType)
            if any(typing.get_origin(kind) is list for kind in (typing.get_args(annotation) if optional else (annotation,))):
                names.add(name)
    return names


def yaml_values_as_flags(path: str | Path, values: dict[str, Any], lists: set[str]) -> list[str]:
    """``values`` from a YAML as the command-line flags that set them (a mapping as JSON, a list as several
    values, ``true`` / ``false`` as written), so that the parser checks them as it checks flags; nulls are
    left to the caller.

    Raises:
        ValueError: a list field is given a single value, or a scalar field a list.
    """
    flags = []
    for name, value in values.items():
        if value is None:
            continue
        if (name in lists) != isinstance(value, list):
            expected = f"a list ({name}: [{value}])" if name in lists else "a single value"
            raise ValueError(f"{name} in {path} must be {expected}, got {value!r}.")
        if isinstance(value, list):
            flags += [f"--{name}", *(json.dumps(item) if isinstance(item, (dict, list)) else str(item) for item in value)]
        else:
            flags += [f"--{name}", json.dumps(value) if isinstance(value, dict) else str(value)]
    return flags


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
