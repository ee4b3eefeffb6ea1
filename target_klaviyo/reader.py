"""Singer lines in: the SDK's reader, run inside the guard that ends the run on any failure.

The SDK offers no hook for "the run stopped early": ``Target.listen`` is final and
an exception raised while reading goes straight up to the CLI. Every line passes
through the message reader, a documented extension point
(``message_reader_class``), so that is where the run's guard wraps the reading.
"""

from __future__ import annotations

import contextlib
import typing as t
from collections.abc import Callable
from contextlib import AbstractContextManager

from singer_sdk.io_base import SingerReader


class GuardedSingerReader(SingerReader):
    def __init__(self) -> None:
        super().__init__()
        self.guard: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext

    def process_lines(
        self, file_input: t.IO[str] | None, callbacks: dict[str, Callable[[dict], None]]
    ) -> t.Counter[str]:
        with self.guard():
            return super().process_lines(file_input, callbacks)
