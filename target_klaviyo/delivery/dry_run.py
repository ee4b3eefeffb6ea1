"""A dry run's delivery: say what each job would be, count its profiles as exported, send nothing."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Protocol

from target_klaviyo.delivery.batch import PendingProfile, job_body, split_for_jobs

logger = logging.getLogger(
    "target_klaviyo.run"
)  # the name its lines had before the modules moved into rooms: users' log filters keep working


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


def describe_dry_run(pending: list[PendingProfile]) -> Iterator[str]:
    """What would be sent, list by list, without personal data: sizes and attribute names."""
    by_list: dict[str, list[PendingProfile]] = {}
    for item in pending:
        by_list.setdefault(item.list_id, []).append(item)
    for list_id, items in by_list.items():
        for chunk in split_for_jobs(items):
            names = sorted({name for item in chunk for name in _attribute_names(item.attributes or {})})
            consents = [item.consent for item in chunk if item.consent is not None]
            subscribe = (
                f", and subscribe {len(consents)} of them to email marketing "
                f"({sum(1 for consent in consents if consent.at)} with a consent date, as a historical import)"
                if consents
                else ""
            )
            yield (
                f"Dry run: would submit an import job of {len(chunk)} profiles "
                f"({len(job_body(list_id, chunk)):,} bytes) to list {list_id}, "
                f"with attributes: {', '.join(names)}{subscribe}."
            )


def _attribute_names(attributes: dict[str, Any]) -> Iterator[str]:
    for name, value in attributes.items():
        if name in {"location", "properties"} and isinstance(value, dict):
            yield from (f"{name}.{key}" for key in value)
        else:
            yield name
