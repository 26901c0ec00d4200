"""Helpers shared by the small dataclass specs that models keep in their configs as dicts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def reject_unknown_fields(what: str, given: Mapping, known: Iterable[str]) -> None:
    """Raise a ValueError naming the keys of ``given`` that are not ``known`` fields of a ``what``."""
    known = sorted(known)
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(f"Unknown {what} field(s) {unknown}; known fields: {known}.")
