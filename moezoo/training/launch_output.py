"""What a multi-process launch prints when a recipe fails: the recipe's one-line error first and alone,
instead of that line buried among every rank's copy of it and the launcher's report of the failed ranks."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

#: The line a recipe prints for a mistake (`moezoo.cli.run_reporting_errors`): ``train_tabular.py: error: ...``.
RECIPE_ERROR = re.compile(rb"^(?P<recipe>[\w.-]+\.py): error: (?P<message>.*)$", re.MULTILINE)


def run_launcher(command: Sequence[str], environment: Mapping[str, str]) -> tuple[int, str | None, Path | None]:
    """Run ``command`` (an ``accelerate launch``), passing its standard error through as it comes until a
    recipe reports an error; from then on its output (every rank's copy, the launcher's report) goes to a
    log file only.

    Returns:
        The exit status, the recipe's error line (``None`` when none was printed) and the log file of the
        launcher's whole standard error (``None`` when the run succeeded).
    """
    log = tempfile.NamedTemporaryFile(prefix="moezoo-launch-", suffix=".log", delete=False)
    process = subprocess.Popen(list(command), env=dict(environment), stderr=subprocess.PIPE)
    pending, cause = b"", None
    with log:
        while chunk := process.stderr.read1(65536):
            log.write(chunk)
            if cause is not None:
                continue
            pending += chunk
            match = RECIPE_ERROR.search(pending)
            if match is None:
                # Pass through what cannot be the start of an error line yet (progress bars update in place).
                cut = pending.rfind(b"\n") + 1
                sys.stderr.buffer.write(pending[:cut])
                sys.stderr.buffer.flush()
                pending = pending[cut:]
                continue
            sys.stderr.buffer.write(pending[: match.start()])
            sys.stderr.buffer.flush()
            cause = match.group(0).decode(errors="replace")
    status = process.wait()
    if status == 0:
        if pending:
            sys.stderr.buffer.write(pending)
        Path(log.name).unlink()
        return status, cause, None
    return status, cause, Path(log.name)
