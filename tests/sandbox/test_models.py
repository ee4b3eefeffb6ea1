"""The store and the job lifecycle without HTTP: the ``sandbox-jobs`` thread applies a job when it is
due, with no read asking for it, and stops when the store closes."""

from __future__ import annotations

import threading
import time

from klaviyo_sandbox.models import SandboxStore


def test_the_job_thread_applies_a_due_job_without_any_read(monkeypatch):
    store = SandboxStore()
    store.ensure_list("L1")
    applied_by_thread = threading.Event()
    finish_due = store.import_jobs.finish_due

    def finish_and_tell() -> None:
        finish_due()
        if threading.current_thread().name == "sandbox-jobs":
            applied_by_thread.set()

    # Reads call finish_due too; only the thread's own call counts as proof.
    monkeypatch.setattr(store.import_jobs, "finish_due", finish_and_tell)
    job = store.import_jobs.create(["L1"], [{"email": "a@example.com"}], {}, 0.05)
    assert applied_by_thread.wait(10)
    assert store.import_jobs.get(job.id).status(time.time()) == "complete"
    assert [row["attributes"]["email"] for row in store.members("L1")] == ["a@example.com"]
    store.close()


def test_closing_the_store_stops_the_job_thread():
    store = SandboxStore()
    store.ensure_list("L1")
    others = set(threading.enumerate())  # other tests' sandboxes may still be stopping theirs
    store.import_jobs.create(["L1"], [{"email": "a@example.com"}], {}, 60)
    [thread] = [thread for thread in set(threading.enumerate()) - others if thread.name == "sandbox-jobs"]
    store.close()
    thread.join(10)
    assert not thread.is_alive()
