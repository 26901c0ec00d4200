"""What a merged model's config records of its merge (``config.merge``): method, options, sources, and the Hub
repositories the sources are, so that its card can list it under them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def source_repository(source: str) -> str | None:
    """The Hub repository a source names (a zoo entry's, or a Hub id as given), or ``None`` for a local folder."""
    from ..zoo import ZOO

    if source in ZOO:
        return ZOO[source].hub_id
    return None if Path(source).is_dir() else source


def merge_record(method: str, options: Mapping[str, Any], source_names: Sequence[str] | None) -> dict[str, Any]:
    """``config.merge`` of a model merged by ``method`` with ``options`` from the sources named ``source_names``
    (folders, zoo entries or Hub ids; ``None`` when they are not named): ``repositories`` holds each source's Hub
    repository, ``None`` for a local folder, as they are when the merge is made."""
    names = list(source_names) if source_names is not None else None
    return {
        "method": method, "options": dict(options), "sources": names,
        "repositories": [source_repository(name) for name in names] if names is not None else None,
    }
