"""Error messages that suggest what the user probably meant."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest_names(name: str, known: Iterable[str], count: int = 3) -> str:
    """``" (did you mean 'a' or 'b'?)"`` for the known names closest to ``name``, or ``""`` when none is close.

    Case is ignored in the comparison (``PCGrad`` finds ``pcgrad``); the suggestions keep the known spelling.
    """
    spelled_as: dict[str, str] = {}
    for known_name in known:
        spelled_as.setdefault(str(known_name).lower(), known_name)
    matches = difflib.get_close_matches(str(name).lower(), list(spelled_as), n=count, cutoff=0.6)
    if not matches:
        return ""
    return f" (did you mean {' or '.join(repr(spelled_as[match]) for match in matches)}?)"
