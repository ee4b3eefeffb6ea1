"""Import jobs in flight: submitted from the reading thread, settled in the background.

Klaviyo runs bulk import jobs asynchronously, often for many seconds. Waiting for
each one before reading on would pay that time once per job, and even waiting for
Klaviyo to accept a job means waiting for a 5 MB upload. So the reading thread
only queues each job's profiles; a submitting thread sends them, and a settling
thread polls the oldest unsettled job, reads its import errors and reports each
profile's fate. At most ``max_in_flight`` jobs are queued or unsettled at once; at
the bound, queueing waits, which bounds memory too.

Jobs settle in the order they were submitted, so when a job is settled every
earlier one is too. Two rules keep the results what a sequential run would give:
a profile whose person is in an unsettled job is not submitted until that job has
settled (so the later record for a person still wins in Klaviyo; the run keeps it
back, see :meth:`JobPipeline.busy`, while everyone else goes on), and polling stays
within Klaviyo's budget for reading jobs (``MIN_POLL_INTERVAL``, well under its
steady 150 a minute).

Every value the threads share is read and written under one condition
(``_changed``), the first failure included. :class:`KlaviyoDelivery` is the run's
side of it: the :class:`~target_klaviyo.delivery.port.Delivery` that groups held
profiles into jobs and feeds them to the pipeline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from target_klaviyo.delivery.batch import MAX_PROFILES_PER_JOB, PendingProfile, split_for_jobs
from target_klaviyo.delivery.jobs import BulkImporter, JobEvents, SubmittedJob
from target_klaviyo.errors import JobCancelled, RunError, WorkerFailed
from target_klaviyo.klaviyo.endpoints import IMPORT_JOB
from target_klaviyo.klaviyo.http import KlaviyoClient
from target_klaviyo.run.stop import StopSignal

logger = logging.getLogger(
    "target_klaviyo.pipeline"
)  # the name its lines had before the modules moved into rooms: users' log filters keep working
logger_run = logging.getLogger("target_klaviyo.run")  # what the run says of its jobs

MIN_POLL_INTERVAL = IMPORT_JOB.pace().interval  # the endpoint table says how far apart polls go


class Importer(Protocol):
    """What the pipeline needs of :class:`BulkImporter`: submit a chunk, poll a job, settle it."""

    def submit(self, list_id: str, chunk: list[PendingProfile]) -> list[SubmittedJob]: ...

    def poll(self, job: SubmittedJob) -> dict[str, Any] | None: ...

    def settle(self, job: SubmittedJob, attributes: dict[str, Any]) -> None: ...


class JobPipeline:
    def __init__(
        self,
        submitter: Importer,
        settler: Importer,
        max_in_flight: int,
        stop: StopSignal,
        tick: Callable[[], None] = lambda: None,
    ) -> None:
        self._stop = stop
        self._tick = tick  # called about once a second while the reading thread waits (progress lines)
        self._submitter = submitter
        self._settler = settler
        self.max_in_flight = max_in_flight
        self._queued: deque[tuple[int, str, list[PendingProfile]]] = deque()
        self._submitting = 0  # chunks taken from the queue whose POST has not been answered
        self._jobs: deque[tuple[int, SubmittedJob]] = deque()
        self._newest_job_of: dict[str, int] = {}
        self._numbered = 0
        self._changed = threading.Condition()
        self._abandoned = threading.Event()
        self._settling_stopped = False
        self._threads: list[threading.Thread] = []
        self._last_poll = 0.0
        self._failure: BaseException | None = None  # the first thing that went wrong in a thread

    @property
    def in_flight(self) -> int:
        with self._changed:
            return self._unfinished()

    def _unfinished(self) -> int:
        return len(self._queued) + self._submitting + len(self._jobs)

    def busy(self, items: list[PendingProfile]) -> tuple[list[PendingProfile], list[PendingProfile]]:
        """The profiles that may be submitted now, and those whose person is in an unsettled job.

        Only the reading thread registers people (when it queues a chunk); the other
        threads only remove them, so a profile found free here is still free when queued.
        """
        free: list[PendingProfile] = []
        held: list[PendingProfile] = []
        with self._changed:
            newest = self._newest_job_of
            for item in items:
                (held if item.key in newest else free).append(item)
        return free, held

    def submit(self, chunks: list[tuple[str, list[PendingProfile]]]) -> None:
        """Queue each (list, chunk) for submission as a job, waiting for room among the jobs in flight."""
        for list_id, chunk in chunks:
            with self._changed:
                while True:
                    self.raise_failure()
                    if self._unfinished() < self.max_in_flight:
                        break
                    with self._stop.waiting():
                        self._changed.wait(1.0)
                    self._tick()
                number = self._numbered
                self._numbered += 1
                for item in chunk:
                    self._newest_job_of[item.key] = number
                self._queued.append((number, list_id, chunk))
                self._changed.notify_all()
            self._start_threads()

    @property
    def settling_stopped(self) -> bool:
        with self._changed:
            return self._settling_stopped

    def wait_all(self, deadline: float | None = None) -> bool:
        """Wait until every submitted job is settled (True), settling stopped, or ``deadline`` passed."""
        with self._changed:
            while self._unfinished() and not self._settling_stopped:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                with self._stop.waiting():
                    self._changed.wait(1.0 if remaining is None else min(1.0, remaining))
                self._tick()
            return not self._unfinished()

    @property
    def failure(self) -> BaseException | None:
        with self._changed:
            return self._failure

    def raise_failure(self) -> None:
        """Raise, on the reading thread, what went wrong while settling."""
        failure = self.failure
        if failure is not None:
            raise failure

    def abandon(self) -> None:
        """Stop settling: the run is ending and what is still in flight stays unconfirmed."""
        self._abandoned.set()
        with self._changed:
            self._changed.notify_all()

    def _start_threads(self) -> None:
        """Start, with the first job, the submitting and the settling thread (daemons: a run that
        ends with jobs unsettled does not wait for them; see :meth:`abandon`)."""
        if not self._threads:
            self._threads = [
                threading.Thread(target=self._submit_all, name="submit-import-jobs", daemon=True),
                threading.Thread(target=self._settle_all, name="settle-import-jobs", daemon=True),
            ]
            for thread in self._threads:
                thread.start()

    def _submit_all(self) -> None:
        """Send queued chunks in order; a chunk may become several jobs, or none (all refused)."""
        try:
            while True:
                with self._changed:
                    while not self._queued and not self._abandoned.is_set():
                        self._changed.wait()
                    if self._abandoned.is_set():
                        return
                    number, list_id, chunk = self._queued.popleft()
                    self._submitting += 1
                jobs = self._submitter.submit(list_id, chunk)
                with self._changed:
                    self._submitting -= 1
                    submitted = {key for job in jobs for key in job.keys}
                    for item in chunk:
                        if item.key not in submitted and self._newest_job_of.get(item.key) == number:
                            del self._newest_job_of[item.key]  # refused at submission: final already
                    self._jobs.extend((number, job) for job in jobs)
                    self._changed.notify_all()
        except BaseException as error:
            self._stop_settling(error)

    def _settle_all(self) -> None:
        try:
            while not self._abandoned.is_set():
                with self._changed:
                    while not self._jobs and not self._abandoned.is_set():
                        self._changed.wait()
                    if self._abandoned.is_set():
                        return
                    number, job = self._jobs[0]
                self._settle_oldest(number, job)
        except BaseException as error:
            self._stop_settling(error)

    def _settle_oldest(self, number: int, job: SubmittedJob) -> None:
        while not self._abandoned.is_set():
            due = max(job.next_poll, self._last_poll + MIN_POLL_INTERVAL)
            if self._abandoned.wait(max(0.0, due - time.monotonic())):
                return
            self._last_poll = time.monotonic()
            attributes = self._settler.poll(job)
            if attributes is None:
                continue
            try:
                self._settler.settle(job, attributes)
            except JobCancelled as error:
                # Only this job's profiles are unconfirmed; later jobs are still settled so
                # the report counts what reached Klaviyo, but no STATE passes this job.
                self._fail(error)
            self._done(number, job)
            return

    def _done(self, number: int, job: SubmittedJob) -> None:
        with self._changed:
            self._jobs.popleft()
            for key in job.keys:
                if self._newest_job_of.get(key) == number:
                    del self._newest_job_of[key]
            self._changed.notify_all()

    def _stop_settling(self, error: BaseException) -> None:
        with self._changed:
            self._fail(error)
            self._settling_stopped = True
            self._changed.notify_all()

    def _fail(self, error: BaseException) -> None:
        with self._changed:
            if self._failure is None:
                self._failure = error if isinstance(error, RunError) else _unexpected(error)
                logger.debug("Settling import jobs failed: %s", self._failure)


def _unexpected(error: BaseException) -> WorkerFailed:
    failure = WorkerFailed(f"Settling import jobs failed unexpectedly: {type(error).__name__}.")
    failure.__cause__ = error
    return failure


class KlaviyoDelivery:
    """The :class:`~target_klaviyo.delivery.port.Delivery` of a real run: held profiles into import jobs.

    ``client`` submits jobs (the run shares it, on the submitting thread only once jobs
    run); the delivery makes its own client for the settling thread, so that no
    connection is used by two threads at once, and closes it.
    """

    keeps_attributes = False  # only the encoded profile is sent

    def __init__(
        self,
        client: KlaviyoClient,
        settler_client: KlaviyoClient,
        events: JobEvents,
        max_in_flight: int,
        stop: StopSignal,
        tick: Callable[[], None],
    ) -> None:
        self._settler_client = settler_client
        self.pipeline = JobPipeline(
            BulkImporter(client, events), BulkImporter(settler_client, events), max_in_flight, stop, tick
        )

    def send(self, pending: list[PendingProfile], full: int | None) -> list[PendingProfile]:
        """Submit what may go now; hold back the people whose earlier record is in a job still running.

        A person bound for two lists in one send goes to the first now and to the other once
        that job has settled, so that their later record is applied last (with one list, no
        person is pending twice). With ``full``, a remainder smaller than ``full`` waits too,
        so that held-back profiles do not add a small job to every batch.
        """
        first: dict[str, PendingProfile] = {}
        for item in pending:
            if item.key not in first or item.order < first[item.key].order:
                first[item.key] = item
        ready = [item for item in pending if first[item.key] is item]
        held = [item for item in pending if first[item.key] is not item]
        free, busy = self.pipeline.busy(ready)
        held += busy
        by_list: dict[str, list[PendingProfile]] = {}
        for item in free:
            by_list.setdefault(item.list_id, []).append(item)
        chunks = []
        for list_id, items in by_list.items():
            split = list(split_for_jobs(items, full or MAX_PROFILES_PER_JOB))
            if full is not None and split and len(split[-1]) < full:
                held += split.pop()
            chunks += [(list_id, chunk) for chunk in split]
        self.pipeline.submit(chunks)
        return held

    def raise_failure(self) -> None:
        self.pipeline.raise_failure()

    def wait(self) -> None:
        self.pipeline.wait_all()
        self.pipeline.raise_failure()

    def abandon(self, grace: float | None) -> None:
        pipeline = self.pipeline
        in_flight = pipeline.in_flight
        if grace is not None and in_flight and not pipeline.settling_stopped:
            logger_run.info(
                "Waiting up to %.0f s for %d import job(s) in flight to finish.", grace, in_flight
            )
            if not pipeline.wait_all(time.monotonic() + grace):
                logger_run.warning(
                    "%d import job(s) did not finish within %.0f s; their profiles are not confirmed "
                    "and no STATE covers them, so the next run sends them again.",
                    pipeline.in_flight,
                    grace,
                )
        pipeline.abandon()

    def close(self) -> None:
        self._settler_client.close()
