"""Helpers shared by the small dataclass specs that models keep in their configs as dicts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any, ClassVar


def reject_unknown_fields(what: str, given: Mapping, known: Iterable[str]) -> None:
    """Raise a ValueError naming the keys of ``given`` that are not ``known`` fields of a ``what``."""
    known = sorted(known)
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(f"Unknown {what} field(s) {unknown}; known fields: {known}.")


class DictSpec:
    """Mixin for a dataclass stored in a config as a plain dict: `to_dict` and a checked `from_dict`.

    Subclasses name themselves in error messages through ``spec_name``.
    """

    spec_name: ClassVar[str] = "spec"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, spec: Mapping | DictSpec):
        if isinstance(spec, cls):
            return spec
        reject_unknown_fields(cls.spec_name, spec, cls.__dataclass_fields__)
        return cls(**spec)
