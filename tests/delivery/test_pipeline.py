"""Jobs in flight, with a scripted importer: the bound, settling order, people in two jobs, failures."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from target_klaviyo.delivery import pipeline as pipeline_module
from target_klaviyo.delivery.batch import PendingProfile
from target_klaviyo.delivery.jobs import SubmittedJob
from target_klaviyo.delivery.pipeline import JobPipeline
from target_klaviyo.errors import JobCancelled, WorkerFailed
from target_klaviyo.records.mapping import ProfileMapper
from target_klaviyo.run.stop import StopSignal
from target_klaviyo.settings.settings import Settings

MAPPER = ProfileMapper(Settings.from_config({"api_key": "k", "list_id": "L"}))


def item(email: str) -> PendingProfile:
    return PendingProfile.of(MAPPER.map({"email": email}), "s", {"email": email})


class ScriptedImporter:
    """Stands in for BulkImporter (a typed fake of the pipeline's ``Importer``): jobs finish when the
    test releases them, and every call is announced on ``changed`` for the test to wait on."""

    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.settled: list[str] = []
        self.polls: list[tuple[str, float]] = []
        self.released: set[str] = set()
        self.cancel: set[str] = set()
        self.broken: set[str] = set()
        self.changed = threading.Condition()

    def wait_for(self, condition: Callable[[], bool]) -> None:
        with self.changed:
            assert self.changed.wait_for(condition, timeout=5), "timed out"

    def polls_of(self, job_id: str) -> int:
        with self.changed:
            return sum(1 for polled, _ in self.polls if polled == job_id)

    def submit(self, list_id: str, chunk: list[PendingProfile]) -> list[SubmittedJob]:
        job = SubmittedJob(f"job{len(self.submitted)}", chunk)
        job.next_poll = 0.0
        with self.changed:
            self.submitted.append(job.id)
            self.changed.notify_all()
        return [job]

    def poll(self, job: SubmittedJob) -> dict[str, Any] | None:
        with self.changed:
            self.polls.append((job.id, time.monotonic()))
            self.changed.notify_all()
        if job.id in self.broken:
            return {}["status"]
        if job.id not in self.released:
            job.next_poll = time.monotonic() + 0.01
            return None
        return {"status": "cancelled" if job.id in self.cancel else "complete"}

    def settle(self, job: SubmittedJob, attributes: dict[str, Any]) -> None:
        if attributes["status"] == "cancelled":
            raise JobCancelled(f"{job.id} was cancelled")
        with self.changed:
            self.settled.append(job.id)
            self.changed.notify_all()


class WatchedStop(StopSignal):
    """A stop signal that says when a thread first waits (for room among the jobs in flight)."""

    def __init__(self) -> None:
        super().__init__()
        self.waited = threading.Event()

    @contextmanager
    def waiting(self) -> Iterator[None]:
        self.waited.set()
        with super().waiting():
            yield


@pytest.fixture(autouse=True)
def no_poll_pacing(monkeypatch):
    monkeypatch.setattr(pipeline_module, "MIN_POLL_INTERVAL", 0.0)


def make(max_in_flight: int = 10, stop: StopSignal | None = None) -> tuple[JobPipeline, ScriptedImporter]:
    importer = ScriptedImporter()
    return JobPipeline(importer, importer, max_in_flight, stop or StopSignal()), importer


def test_jobs_settle_in_the_order_they_were_submitted():
    pipe, importer = make()
    for n in range(3):
        pipe.submit([("L", [item(f"p{n}@x.io")])])
    importer.released |= {"job2", "job1"}
    polled = importer.polls_of("job0")
    importer.wait_for(lambda: importer.polls_of("job0") > polled + 1)  # the settler went round again
    assert importer.settled == [], "job0 still runs, so nothing after it is settled"
    importer.released.add("job0")
    assert pipe.wait_all(time.monotonic() + 5)
    assert importer.settled == ["job0", "job1", "job2"]


def test_submitting_waits_at_the_bound():
    stop = WatchedStop()
    pipe, importer = make(max_in_flight=2, stop=stop)
    pipe.submit([("L", [item("a@x.io")])])
    pipe.submit([("L", [item("b@x.io")])])
    assert not stop.waited.is_set()
    third = threading.Thread(target=pipe.submit, args=([("L", [item("c@x.io")])],))
    third.start()
    importer.wait_for(lambda: importer.submitted == ["job0", "job1"])
    assert stop.waited.wait(5), "the third submit did not wait for room"
    assert third.is_alive(), "the third job was queued beyond the bound"
    assert pipe.in_flight == 2
    importer.released.add("job0")
    third.join(timeout=5)
    importer.wait_for(lambda: importer.submitted == ["job0", "job1", "job2"])
    importer.released |= {"job1", "job2"}
    assert pipe.wait_all(time.monotonic() + 5)


def test_a_person_in_a_running_job_is_held_back_and_others_are_not():
    pipe, importer = make()
    pipe.submit([("L", [item("same@x.io")])])
    free, held = pipe.busy([item("other@x.io"), item("same@x.io")])
    assert [i.key for i in free] == ["other@x.io"]
    assert [i.key for i in held] == ["same@x.io"]
    importer.released.add("job0")
    assert pipe.wait_all(time.monotonic() + 5)
    free, held = pipe.busy([item("other@x.io"), item("same@x.io")])
    assert [i.key for i in free] == ["other@x.io", "same@x.io"]
    assert held == []


def test_a_cancelled_job_is_a_failure_but_later_jobs_still_settle():
    pipe, importer = make()
    for n in range(3):
        pipe.submit([("L", [item(f"p{n}@x.io")])])
    importer.cancel.add("job1")
    importer.released |= {"job0", "job1", "job2"}
    assert pipe.wait_all(time.monotonic() + 5)
    assert importer.settled == ["job0", "job2"]
    with pytest.raises(JobCancelled):
        pipe.raise_failure()


def test_an_unexpected_answer_stops_settling_and_reaches_the_reading_thread():
    pipe, importer = make()
    importer.broken.add("job0")
    pipe.submit([("L", [item("a@x.io")])])
    assert not pipe.wait_all(time.monotonic() + 5)
    with pytest.raises(WorkerFailed, match="Settling import jobs failed unexpectedly: KeyError"):
        pipe.raise_failure()
    with pytest.raises(WorkerFailed):
        pipe.submit([("L", [item("b@x.io")])])


def test_wait_all_gives_up_at_the_deadline_and_abandon_stops_settling():
    pipe, importer = make()
    before = set(threading.enumerate())
    pipe.submit([("L", [item("a@x.io")])])
    threads = set(threading.enumerate()) - before  # the pipeline's submitting and settling threads
    started = time.monotonic()
    assert not pipe.wait_all(started + 0.2)
    assert 0.2 <= time.monotonic() - started < 1.5
    pipe.abandon()
    importer.released.add("job0")
    for thread in threads:
        thread.join(timeout=5)
        assert not thread.is_alive()
    assert importer.settled == []


def test_polls_are_paced_within_klaviyos_budget(monkeypatch):
    monkeypatch.setattr(pipeline_module, "MIN_POLL_INTERVAL", 0.05)
    pipe, importer = make()
    pipe.submit([("L", [item("a@x.io")])])
    importer.wait_for(lambda: len(importer.polls) >= 8)
    importer.released.add("job0")
    assert pipe.wait_all(time.monotonic() + 5)
    polls = [at for _, at in importer.polls]
    gaps = [later - earlier for earlier, later in itertools.pairwise(polls)]
    assert gaps
    assert min(gaps) >= 0.05 * 0.95
