"""The run's accountant: the only writer of counts, rejects and STATE, and closed once, for good.

Three threads learn what became of a record: the reading thread (read, rejected,
merged into a later record, counted in a dry run), the submitting thread (a job
accepted, a profile refused at submission) and the settling thread (a job done,
a profile failed, a consent refused). Each tells this object, never the report or
the STATE ledger directly. What the worker threads report is written under one
lock, together with the check that the books are still open; the reading thread
closes the books itself, so what it reports always comes before.

When the run ends, :meth:`Outcomes.close` sets the final outcome and closes the
rejects file under that lock. A worker thread may still be finishing a request
then (the run does not wait for it past ``stop_grace_seconds``); what it reports
afterwards is dropped, counted in :attr:`Outcomes.late` and logged, and never
reopens the rejects file, so that the report and the rejects file agree. Its
records stay "not confirmed" in the report, and no STATE covers them.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from target_klaviyo.delivery.batch import PendingProfile, SentProfile
from target_klaviyo.delivery.jobs import SubmittedJob
from target_klaviyo.records.profile import Reject
from target_klaviyo.run.report import RunReport
from target_klaviyo.run.state import StateLedger

logger = logging.getLogger(
    "target_klaviyo.run"
)  # the name its lines had before the modules moved into rooms: users' log filters keep working


class ProfileLedger(Protocol):
    """What the accountant tells the profile ledger (:class:`~target_klaviyo.ledger.ledger.Ledger`)."""

    def claiming(self, profiles: Iterable[tuple[str, bytes]]) -> int: ...

    def confirmed(self, job: SubmittedJob, positions: list[int]) -> None: ...


class Outcomes:
    """Counts, rejects and STATE of one run; implements the job callbacks (``JobEvents``).

    ``superseded`` answers, for the job callbacks, whether a later record of a person
    was read (the admission's knowledge, see :mod:`target_klaviyo.run.admission`).
    """

    def __init__(
        self,
        report: RunReport,
        ledger: StateLedger,
        superseded: Callable[[str, int], bool],
        profiles: ProfileLedger | None = None,
    ) -> None:
        self.report = report
        self.ledger = ledger
        self._superseded = superseded
        # Records what Klaviyo was given and confirmed in the profile ledger (ledger/ledger.py), if any.
        self._profiles = profiles
        self._lock = threading.Lock()
        self._closed = False
        self.late = 0  # outcomes that arrived after close: dropped, their records not confirmed

    def _open(self, what: str) -> bool:
        """Whether the books are open; called under the lock. A late outcome is counted and logged."""
        if not self._closed:
            return True
        self.late += 1
        logger.debug("%s arrived after the run's report was final: not counted.", what)
        return False

    # The reading thread. It closes the books itself (:meth:`close`), so whatever it counts comes
    # before that: no lock of this object on the per-record path (the report's and the ledger's own
    # locks order its writes against the worker threads'). Only a reject writes to a file, and it
    # checks the books too, so that nothing reopens the rejects file once it is closed.

    def read(self) -> None:
        self.report.count_read()

    def reject(self, stream: str, record: Any, reject: Reject, *, counted: bool = True) -> None:
        """A record rejected (or, ``counted=False``, a value dropped from an exported profile)."""
        if self._closed:  # set by this same thread: no lock needed to read it
            with self._lock:
                self._open("A reject")
            return
        self.report.reject(stream, record, reject, counted=counted)

    def distinct(self) -> None:
        """A person new to this run."""
        self.report.count_distinct()

    def unchanged(self, list_id: str) -> None:
        """A profile the ledger has confirmed as it is: not sent, final at once."""
        self.report.count_unchanged(list_id)

    def sent_as(self, list_id: str, verdict: str, count: int = 1) -> None:
        """A person on their way to a list, as the ledger knew them: new, changed or due (-1: withdrawn)."""
        self.report.count_sent_as(list_id, verdict, count)

    def sent_again(self) -> None:
        """A later record of someone already sent: it is sent again, not merged."""
        self.report.count_sent_again()

    def skipped_line(self, what: str) -> None:
        self.report.count_skipped_input(what)

    def open_record(self) -> int:
        """A record is on its way to Klaviyo; returns its epoch among the tap's STATE messages."""
        return self.ledger.open_record()

    def replaced(self, epoch: int) -> None:
        """A held profile was replaced by a later record of the same person: merged, final."""
        self.report.count_deduplicated()
        self.ledger.close([epoch])

    def exported(self, items: list[PendingProfile]) -> None:
        """A dry run's profiles, counted as exported (and subscribed) the moment they would be sent."""
        for list_id, count in Counter(item.list_id for item in items).items():
            self.report.count_exported(count, list_id)
        for list_id, count in Counter(item.list_id for item in items if item.consent is not None).items():
            self.report.count_subscribed(count, list_id)
        self.ledger.close(item.epoch for item in items)

    def add_state(self, value: Any) -> None:
        self.ledger.add_state(value)

    # The submitting and the settling thread (JobEvents)

    def job_posting(self, chunk: list[PendingProfile]) -> int:
        # The ledger, outside the lock, as for job_done: Klaviyo may have the job, whatever the run does.
        if self._profiles is None:
            return 0
        return self._profiles.claiming((item.key, item.identifiers) for item in chunk)

    def job_submitted(self, job: SubmittedJob) -> None:
        with self._lock:
            if self._open(f"Import job {job.id}'s submission"):
                self.report.job_submitted(job.id)

    def rejected(self, item: PendingProfile | SentProfile, reject: Reject) -> None:
        # Read back from its line outside the lock: parsing is the slow part, and needs no books.
        record = item.record
        with self._lock:
            if self._open("A profile refused by Klaviyo"):
                self.report.reject(item.stream, record, reject)
                self.ledger.close([item.epoch])

    def value_dropped(self, item: SentProfile, reject: Reject) -> None:
        record = item.record
        with self._lock:
            if self._open("A value refused by Klaviyo"):
                self.report.reject(item.stream, record, reject, counted=False)

    def job_done(
        self,
        job: SubmittedJob,
        imported_epochs: list[int],
        unmatched_failures: int,
        subscribed: int,
        confirmed: list[int],
    ) -> None:
        # The ledger first, in its own transaction and outside the lock: it records what Klaviyo holds,
        # whatever became of the run meanwhile. A failure to write it fails the run before this job's
        # STATE: nothing is lost, its profiles are only sent again.
        if self._profiles is not None:
            self._profiles.confirmed(job, confirmed)
        with self._lock:
            if not self._open(f"Import job {job.id}'s result"):
                return
            report = self.report
            report.count_exported(len(imported_epochs) - unmatched_failures, job.list_id)
            report.count_subscribed(subscribed, job.list_id)
            for _ in range(unmatched_failures):
                detail = (
                    f"Import job {job.id} reported a failed profile without an import error that names it."
                )
                report.reject("", None, Reject("rejected_by_klaviyo", detail))
            report.job_settled()
            report.flush()
            self.ledger.close(imported_epochs)
        report.tick()

    def superseded(self, list_id: str, key: str, order: int) -> bool:
        return self._superseded(key, order)

    # Any thread that makes a request

    def retried(self, status: int) -> None:
        """An answer that was retried (429: throttled)."""
        with self._lock:
            if self._open("A retried request"):
                self.report.count_retry(status)

    # The end

    def close(self, outcome: str) -> None:
        """Set the final outcome and close the rejects file; from here on nothing is written."""
        with self._lock:
            self._closed = True
            self.report.finish(outcome)
