"""The one seam between a run and where its profiles go: the :class:`Delivery` protocol.

A run holds profiles, hands them to its delivery in rounds, and at the end waits
for it or abandons it; it never asks whether it is a dry run. Two deliveries
implement it: :class:`target_klaviyo.delivery.pipeline.KlaviyoDelivery` (import jobs
in flight) and :class:`target_klaviyo.delivery.dry_run.DryRun` (describe and count).
"""

from __future__ import annotations

from typing import Protocol

from target_klaviyo.delivery.batch import PendingProfile


class Delivery(Protocol):
    # Whether held profiles keep their attributes: only a description of what would be sent reads them.
    keeps_attributes: bool

    def send(self, pending: list[PendingProfile], full: int | None) -> list[PendingProfile]:
        """Send what may go now and return what must wait for a later round.

        Returns once the profiles are accepted for sending, not once they are final.
        ``full`` (a drain because a batch is full) asks for jobs of exactly that size:
        a smaller remainder may wait too.
        """
        ...

    def raise_failure(self) -> None:
        """Raise, on the reading thread, what went wrong in the background."""
        ...

    def wait(self) -> None:
        """Wait until everything sent is final; raise what went wrong meanwhile."""
        ...

    def abandon(self, grace: float | None) -> None:
        """Stop: with ``grace``, first let what is in flight settle for at most that many seconds."""
        ...

    def close(self) -> None:
        """Release what the delivery holds (connections); the last call."""
        ...
