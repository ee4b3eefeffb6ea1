"""The store and the job lifecycle without HTTP: the ``sandbox-jobs`` thread applies a job when it is
due, with no read asking for it, and stops when the store closes."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

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


def test_emails_match_with_every_letter_case_folded_across_jobs_and_member_filters():
    """As target-klaviyo folds them (str.lower), not only A-Z: one person, whatever the case."""
    store = SandboxStore()
    store.ensure_list("L1")
    store.import_jobs.create(["L1"], [{"email": "José.Silva@Example.com", "first_name": "José"}], {}, 0)
    store.import_jobs.create(["L1"], [{"email": "JOSÉ.SILVA@EXAMPLE.COM", "last_name": "Silva"}], {}, 0)
    store.import_jobs.finish_due()
    (profile,) = store.profiles()
    assert profile["attributes"] == {
        "email": "JOSÉ.SILVA@EXAMPLE.COM",
        "first_name": "José",
        "last_name": "Silva",
    }
    assert [m["id"] for m in store.members("L1", emails=["josé.silva@example.com"])] == [profile["id"]]
    store.change_email(profile["id"], "Other@Example.com")
    assert store.members("L1", emails=["josé.silva@example.com"]) == []
    assert [m["id"] for m in store.members("L1", emails=["OTHER@example.COM"])] == [profile["id"]]
    store.close()


def test_a_state_file_of_an_earlier_sandbox_is_refused_in_one_sentence(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE profiles (id TEXT PRIMARY KEY, email TEXT UNIQUE, attributes TEXT NOT NULL)")
    old.close()
    with pytest.raises(ValueError, match=r"holds the state of an earlier version of the sandbox; remove it"):
        SandboxStore(str(path))
