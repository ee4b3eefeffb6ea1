"""The command line's own work around the SDK: reading ``--config`` files, and sparing the tap a broken pipe.

Both happen outside any run: a config file is read before the target exists, and
the pipe is drained after a failed run has ended.
"""

from __future__ import annotations

import json
import os
import select
import stat
import time
import typing as t
from pathlib import Path

from target_klaviyo.errors import RunError

DRAIN_SECONDS = 5.0


def drain_pipe(stream: t.IO[str], seconds: float) -> None:
    """Read and discard what the tap still writes, for at most ``seconds``, before a failed run exits.

    A target that exits while the tap is writing leaves the tap a broken pipe: under
    ``meltano run`` a wrong key's one-sentence error was followed by some 150 lines of the
    tap's ``BrokenPipeError`` tracebacks. A tap that finishes within the time ends
    cleanly, and the sentence stays the last word; nothing read here is used. Only a
    pipe is drained: a file or a terminal has no writer to spare.
    """
    try:
        descriptor = stream.fileno()
        if not stat.S_ISFIFO(os.fstat(descriptor).st_mode):
            return
    except (OSError, ValueError, AttributeError):
        return
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([descriptor], [], [], left)
        if not ready:
            return
        try:
            if not os.read(descriptor, 1 << 16):
                return  # the tap closed its end
        except OSError:
            return


def read_config_file(path: str) -> dict[str, t.Any]:
    """A ``--config`` file as JSON settings, or one sentence on why it is not (never its content)."""
    where = f"--config {path!r}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunError(f"{where}: there is no such file.") from None
    except IsADirectoryError:
        raise RunError(f"{where} is a folder; name the JSON config file.") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
        raise RunError(f"{where} cannot be read ({reason}).") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise RunError(
            f"{where} is not JSON: {error.msg} at line {error.lineno}, column {error.colno}."
        ) from None
    except RecursionError:
        raise RunError(f"{where} is not a config: it is nested too deeply.") from None
    if not isinstance(config, dict):
        raise RunError(f"{where} holds JSON that is not an object of settings.")
    return config
