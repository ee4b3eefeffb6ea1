"""A dry run's delivery: say what each job would be, count its profiles as exported, send nothing."""

from __future__ import annotations

import logging
from typing import Protocol

from target_klaviyo.delivery.jobs import PendingProfile, describe_dry_run

logger = logging.getLogger("target_klaviyo.run.run")  # the run's logger: its lines are unchanged


class Exported(Protocol):
    """Where a dry run counts what it would have sent (the run's accountant)."""

    def exported(self, items: list[PendingProfile]) -> None: ...


class DryRun:
    """A :class:`~target_klaviyo.delivery.port.Delivery` that describes and counts, on the reading thread."""

    keeps_attributes = True  # the description names them

    def __init__(self, books: Exported) -> None:
        self._books = books

    def send(self, pending: list[PendingProfile], full: int | None) -> list[PendingProfile]:
        # Nothing is in flight, so no one waits: every profile is described and final at once,
        # grouped as the jobs of one send would be (without regard to ``full``).
        for line in describe_dry_run(pending):
            logger.info("%s", line)
        self._books.exported(pending)
        return []

    def raise_failure(self) -> None:
        """Nothing runs in the background."""

    def wait(self) -> None:
        """Every profile was final when sent."""

    def abandon(self, grace: float | None) -> None:
        """Nothing is in flight."""

    def close(self) -> None:
        """Nothing is held."""
