"""The life of a bulk import job: queued, processing, then complete (or cancelled), with its errors.

A job is due ``job_delay`` seconds after it was created. A background thread,
``sandbox-jobs`` (started with the first job, stopped by :meth:`ImportJobs.close`),
applies each job as its time comes, as Klaviyo runs jobs whether or not anyone asks;
a read of jobs, members or profiles applies what is due first as well, so that a
reader never sees a job late by the thread's wake-up. The profiles of a job still queued are held
in memory only (parsing them back from SQLite would make the sandbox slower than the
target it serves); a sandbox stopped before its jobs finished reports them as
``cancelled`` when it starts again, as Klaviyo would report a job it could not finish.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

from klaviyo_sandbox.models.database import Database, iso, new_id
from klaviyo_sandbox.models.profiles import upsert_many

JOB_SELECT = (
    "SELECT j.rowid, j.id, j.list_ids, j.total_count, j.created_at, j.due_at, j.completed_at, j.cancelled,"
    " (SELECT count(*) FROM import_errors e WHERE e.job_id = j.id) FROM jobs j"
)


@dataclass
class Job:
    """A bulk import job as the API reports it."""

    id: str
    list_ids: list[str]
    total_count: int
    created_at: float
    due_at: float
    completed_at: float | None
    failed_count: int = 0
    cancelled: bool = False

    def status(self, now: float) -> str:
        if self.cancelled:
            return "cancelled"
        if self.completed_at is not None:
            return "complete"
        return "processing" if now >= (self.created_at + self.due_at) / 2 else "queued"


class ImportJobs:
    """Creates jobs, applies them when due (the ``sandbox-jobs`` thread, or a read first), lists them."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._queued_profiles: dict[str, list[dict[str, Any]]] = {}
        self._cancel_when_due: set[str] = set()
        # Guards _closed and wakes the thread when a job is created or the store closes.
        self._due = threading.Condition()
        self._closed = False
        self._processor = threading.Thread(target=self._process, name="sandbox-jobs", daemon=True)
        with database.locked() as db:  # a job a stopped sandbox left unfinished can never finish
            db.execute(
                "UPDATE jobs SET cancelled = 1, completed_at = ? WHERE completed_at IS NULL", (time.time(),)
            )

    def close(self) -> None:
        """Stop the thread (before the database closes under it)."""
        with self._due:
            self._closed = True
            self._due.notify_all()

    def create(
        self,
        list_ids: list[str],
        profiles: list[dict[str, Any]],
        failures: dict[int, dict[str, Any]],
        delay: float,
        *,
        cancel: bool = False,
    ) -> Job:
        """Queue a job; ``failures`` maps profile positions to the import error each will get.

        ``cancel`` makes the job end as ``cancelled``, importing nothing, when it is due.
        """
        now = time.time()
        job = Job(new_id(), list_ids, len(profiles), now, now + delay, None)
        with self._database.transaction() as db:
            self._queued_profiles[job.id] = profiles
            if cancel:
                self._cancel_when_due.add(job.id)
            db.execute(
                "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, NULL, 0)",
                (
                    job.id,
                    json.dumps(list_ids),
                    json.dumps(failures),
                    job.total_count,
                    job.created_at,
                    job.due_at,
                ),
            )
        with self._due:
            if not self._processor.is_alive():
                self._processor.start()
            self._due.notify_all()
        return job

    def get(self, job_id: str) -> Job | None:
        found = self._select("WHERE j.id = ?", (job_id,))
        return found[0][1] if found else None

    def page(self, after: int = 0, limit: int = 100) -> list[tuple[int, Job]]:
        """Jobs in creation order, from row ``after`` on (a cursor), with their row numbers."""
        return self._select("WHERE j.rowid > ? ORDER BY j.rowid LIMIT ?", (after, limit))

    def _select(self, where: str, parameters: tuple[Any, ...]) -> list[tuple[int, Job]]:
        self.finish_due()
        with self._database.locked() as db:
            query = f"{JOB_SELECT} {where}"  # fixed clauses from this class; values go as parameters
            rows = db.execute(query, parameters).fetchall()
        return [
            (row[0], Job(row[1], json.loads(row[2]), row[3], row[4], row[5], row[6], row[8], bool(row[7])))
            for row in rows
        ]

    def import_errors(self, job_id: str, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """A job's import errors by profile position, from position ``after`` on (a cursor)."""
        self.finish_due()
        with self._database.locked() as db:
            rows = db.execute(
                "SELECT position, error FROM import_errors WHERE job_id = ? AND position > ?"
                " ORDER BY position LIMIT ?",
                (job_id, after, limit),
            ).fetchall()
        return [(row[0], json.loads(row[1])) for row in rows]

    def finish_due(self) -> None:
        """Apply every job whose processing time has passed, oldest first."""
        now = time.time()
        with self._database.transaction() as db:
            due = db.execute(
                "SELECT id, list_ids, failures FROM jobs"
                " WHERE completed_at IS NULL AND due_at <= ? ORDER BY created_at",
                (now,),
            ).fetchall()
            for job_id, list_ids, failures in due:
                profiles = self._queued_profiles.pop(job_id)
                if job_id in self._cancel_when_due:
                    self._cancel_when_due.discard(job_id)
                    db.execute("UPDATE jobs SET cancelled = 1, completed_at = ? WHERE id = ?", (now, job_id))
                    continue
                _apply(db, job_id, json.loads(list_ids), profiles, json.loads(failures))
                db.execute("UPDATE jobs SET completed_at = ? WHERE id = ?", (now, job_id))

    def _process(self) -> None:
        """The ``sandbox-jobs`` thread: sleep until the next job is due (or a new one comes), apply it."""
        while True:
            with self._due:
                if self._closed:
                    return
                next_due = self._next_due()
                wait = None if next_due is None else next_due - time.time()
                if wait is None or wait > 0:
                    self._due.wait(wait)
                    continue
            try:
                self.finish_due()
            except sqlite3.ProgrammingError:  # closed meanwhile
                return

    def _next_due(self) -> float | None:
        with self._database.locked() as db:
            if self._closed:
                return None
            row = db.execute("SELECT min(due_at) FROM jobs WHERE completed_at IS NULL").fetchone()
        due: float | None = row[0]
        return due


def _apply(
    db: sqlite3.Connection,
    job_id: str,
    list_ids: list[str],
    profiles: list[dict[str, Any]],
    failures: dict[str, dict[str, Any]],
) -> None:
    """Record the job's import errors, upsert the other profiles and add them to the job's lists."""
    joined = iso(time.time())
    db.executemany(
        "INSERT INTO import_errors VALUES (?, ?, ?)",
        [(job_id, int(position), json.dumps(error)) for position, error in failures.items()],
    )
    accepted = [attributes for position, attributes in enumerate(profiles) if str(position) not in failures]
    imported = [profile_id for profile_id, _ in upsert_many(db, accepted)]
    db.executemany(
        "INSERT OR IGNORE INTO memberships VALUES (?, ?, ?)",
        [(list_id, profile_id, joined) for list_id in list_ids for profile_id in imported],
    )
