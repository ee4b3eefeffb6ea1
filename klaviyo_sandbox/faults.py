"""Seeded fault injection: throttling, server errors, dropped connections, lost answers, latency.

A dropped connection closes before the request is carried out; a lost answer
closes after it was carried out (a job created, say), as when a response is lost
on the way back and the client cannot tell whether its request took effect.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from enum import Enum


class Fault(Enum):
    THROTTLE = "throttle"
    SERVER_ERROR = "server_error"
    DROP = "drop"
    LOST_ANSWER = "lost_answer"


@dataclass
class FaultPlan:
    """Probabilities (0..1) of each fault per request, drawn from one seeded generator.

    The same seed and the same sequence of requests give the same faults, so a test
    that saw a failure can repeat it exactly. ``operations`` (like
    ``"POST /api/profile-bulk-import-jobs"``) limits faults to those endpoints.
    """

    throttle: float = 0.0
    server_error: float = 0.0
    drop: float = 0.0
    lost_answer: float = 0.0
    latency: float = 0.0
    seed: int | None = None
    operations: frozenset[str] | None = None
    _random: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for name in ("throttle", "server_error", "drop", "lost_answer"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                msg = f"the {name} probability must be between 0 and 1"
                raise ValueError(msg)
        self._random = random.Random(self.seed)

    def draw(self, operation: str) -> tuple[Fault | None, int]:
        """Pick this request's fault (or None) and, for a server error, its status."""
        if self.operations is not None and operation not in self.operations:
            return None, 500
        with self._lock:
            roll = self._random.random()
            status = self._random.choice((500, 502, 503, 504))
        for fault, probability in (
            (Fault.DROP, self.drop),
            (Fault.LOST_ANSWER, self.lost_answer),
            (Fault.THROTTLE, self.throttle),
            (Fault.SERVER_ERROR, self.server_error),
        ):
            if roll < probability:
                return fault, status
            roll -= probability
        return None, status
