"""When a tap's STATE may be passed on: as soon as every record before it is final.

Records between two STATE messages form an *epoch*. Each record that is still on
its way to Klaviyo (held for a batch, or in an import job that has not finished)
keeps its epoch open; a record becomes final when Klaviyo has imported it, when it
is rejected with a reason, or when a later record of the same person replaces it.
A STATE is emitted once its epoch and every earlier one are closed, in input
order, and never earlier: a run killed at any moment can be resumed from the last
STATE it wrote without losing a record.

The reading thread opens records and adds STATE; the thread that settles import
jobs closes them. Both go through one lock, which also keeps STATE lines in order
on stdout (a line can still be cut if the process is killed while the reader of
stdout is not reading).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from singer_sdk.singerlib.json import serialize_json

from target_klaviyo.errors import RunError

logger = logging.getLogger(
    "target_klaviyo.state"
)  # the name its lines had before the modules moved into rooms: users' log filters keep working
_NOTHING = object()  # no STATE yet; ``None`` is a value a tap may send


@dataclass
class _Epoch:
    open_records: int = 0
    opened_any: bool = False
    state: Any = None
    has_state: bool = False


class StateLedger:
    """Holds each tap STATE until the records before it are final, then writes it.

    ``emit=False`` (dry run) accounts the same way but writes nothing, so that a
    run that sent nothing never advances the tap's bookmark. ``out`` defaults to
    whatever ``sys.stdout`` is when a STATE is written.
    """

    def __init__(self, out: TextIO | None = None, *, emit: bool = True) -> None:
        self._out = out
        self._emit = emit
        self._lock = threading.Lock()
        self._epochs: deque[_Epoch] = deque([_Epoch()])
        self._first = 0  # the id of self._epochs[0]
        self._last_value: Any = _NOTHING
        self._closed = False
        self._holding = False  # the run is ending: the last STATE waits for the summary line
        self._held: list[_Epoch] = []

    @property
    def current(self) -> int:
        """The id of the epoch that records arriving now belong to."""
        return self._first + len(self._epochs) - 1

    def open_record(self) -> int:
        """A record is on its way to Klaviyo; returns its epoch."""
        with self._lock:
            epoch = self._epochs[-1]
            epoch.open_records += 1
            epoch.opened_any = True
            return self.current

    def close(self, epochs: Iterable[int]) -> None:
        """These records (one epoch id each) are final; write whatever STATE that frees."""
        counts = Counter(epochs)
        with self._lock:
            for epoch_id, count in counts.items():
                epoch = self._epochs[epoch_id - self._first]
                epoch.open_records -= count
                if epoch.open_records < 0:
                    msg = f"epoch {epoch_id} closed more records than it opened"
                    raise RuntimeError(msg)
            self._write_ready()

    def add_state(self, value: Any) -> None:
        """A tap STATE arrived after the records read so far."""
        with self._lock:
            if value == self._last_value:
                return
            self._last_value = value
            epoch = self._epochs[-1]
            if not epoch.opened_any and len(self._epochs) > 1:
                # No record since the previous STATE: this one is ready exactly when that one is.
                self._epochs.pop()
                epoch = self._epochs[-1]
            epoch.state, epoch.has_state = value, True
            self._epochs.append(_Epoch())
            self._write_ready()

    def hold(self) -> None:
        """From now on keep the STATE that becomes ready, instead of writing it, until ``stop``.

        The run holds it from the end of input, so that the summary line comes before the
        final STATE, as a log read top to bottom expects.
        """
        with self._lock:
            self._holding = True

    def stop(self) -> None:
        """Write the STATE held back, if any, then nothing more, whatever settles later."""
        with self._lock:
            held, self._held, self._holding = self._held, [], False
            for ready in held:
                if not self._closed:
                    self._write(ready)
            self._closed = True
            (self._out or sys.stdout).flush()

    def _write_ready(self) -> None:
        ready: _Epoch | None = None
        while len(self._epochs) > 1 and self._epochs[0].open_records == 0:
            ready = self._epochs.popleft()
            self._first += 1
        if ready is None or not ready.has_state or self._closed or not self._emit:
            return
        if self._holding:
            self._held.append(ready)
            return
        self._write(ready)

    def _write(self, ready: _Epoch) -> None:
        out = self._out or sys.stdout
        # The SDK's serializer, as its own STATE writer would: numbers read as Decimal stay exact.
        try:
            out.write(serialize_json(ready.state) + "\n")
            out.flush()
        except BrokenPipeError:
            self._closed = True
            msg = "The program reading the target's output closed it, so no further STATE can be written."
            raise RunError(msg) from None
        logger.debug("Emitted a STATE: every record before it is final in Klaviyo.")
