"""Error messages that suggest what the user probably meant."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest_names(name: str, known: Iterable[str], count: int = 3) -> str:
    """``" (did you mean 'a' or 'b'?)"`` for the known names closest to ``name``, or ``""`` when none is close."""
    matches = difflib.get_close_matches(name, list(known), n=count, cutoff=0.6)
    if not matches:
        return ""
    return f" (did you mean {' or '.join(repr(match) for match in matches)}?)"
