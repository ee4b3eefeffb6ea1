"""SIGTERM and SIGINT: where the run may be interrupted, and what was asked.

A signal handler runs on the main thread between any two bytecodes. Raising from
it anywhere would leave half-done bookkeeping (a job Klaviyo accepted but the
run never recorded, a count without its STATE). So the handler only raises while
the main thread is *waiting*: for the next input line, for room among the jobs in
flight, for Klaviyo's answer or a retry. Everywhere else it records the signal,
and the next wait raises :class:`RunInterrupted` as it begins. Once the run is
ending, signals are only recorded: the end is bounded by the grace time already.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class RunInterrupted(BaseException):
    """SIGTERM or SIGINT: stop reading. A BaseException, so no ``except Exception`` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"Received {signal.Signals(signum).name}.")
        self.signum = signum


class StopSignal:
    def __init__(self) -> None:
        self.signum: int | None = None
        self.ending = False
        self._waiting = 0

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def request(self, signum: int) -> None:
        """Called by the signal handler: raises only if the main thread is waiting."""
        self.signum = signum
        if self._waiting and not self.ending:
            raise RunInterrupted(signum)

    def check(self) -> None:
        """Raise if a signal came while the main thread was busy (and the run is not ending)."""
        if self.signum is not None and not self.ending:
            raise RunInterrupted(self.signum)

    def enter_wait(self) -> None:
        """The cheap form of :meth:`waiting`, for the main thread's per-line read."""
        self.check()
        self._waiting += 1

    def leave_wait(self) -> None:
        self._waiting -= 1

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a wait of the main thread: a signal may end it. No effect on other threads."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self.check()
        self._waiting += 1
        try:
            yield
        finally:
            self._waiting -= 1
