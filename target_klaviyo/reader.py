"""Singer lines in: the SDK's reader, run inside the guard that ends the run on any failure.

The SDK offers no hook for "the run stopped early": ``Target.listen`` is final and
an exception raised while reading goes straight up to the CLI. Every line passes
through the message reader, a documented extension point
(``message_reader_class``), so that is where the run's guard wraps the reading.
Waiting for the next line is where a stop signal may interrupt the run.
"""

from __future__ import annotations

import contextlib
import typing as t
from collections.abc import Callable
from contextlib import AbstractContextManager

from singer_sdk.io_base import SingerReader

from target_klaviyo.stop import StopSignal


class GuardedSingerReader(SingerReader):
    def __init__(self) -> None:
        super().__init__()
        self.guard: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext
        self.stop = StopSignal()

    def process_lines(
        self, file_input: t.IO[str] | None, callbacks: dict[str, Callable[[dict], None]]
    ) -> t.Counter[str]:
        with self.guard():
            return super().process_lines(self._interruptible(file_input or self.default_input), callbacks)

    def _interruptible(self, lines: t.IO[str]) -> t.Iterator[str]:
        stop = self.stop
        iterator = iter(lines)
        while True:
            stop.enter_wait()
            try:
                line = next(iterator, None)
            finally:
                stop.leave_wait()
            if line is None:
                return
            yield line
