"""The sandbox's SQLite database: its tables, its one connection behind one lock, and the ids and
timestamps its rows hold.

One connection serves every request thread and the job thread; that keeps ``:memory:``
databases working and writes serialised, as they are in one account.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

SCHEMA = """
CREATE TABLE IF NOT EXISTS lists (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS profiles (
    id TEXT PRIMARY KEY,
    email TEXT,
    email_key TEXT UNIQUE,  -- email_key(email): compared in SQLite's own code, not a Python collation
    phone_number TEXT,
    external_id TEXT,
    attributes TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS profiles_phone ON profiles (phone_number);
CREATE INDEX IF NOT EXISTS profiles_external_id ON profiles (external_id);
CREATE TABLE IF NOT EXISTS memberships (
    list_id TEXT NOT NULL, profile_id TEXT NOT NULL, joined_group_at TEXT NOT NULL,
    PRIMARY KEY (list_id, profile_id)
);
-- A list's members in join order (rowid), one page at a time: without it each page scans the list.
CREATE INDEX IF NOT EXISTS memberships_by_list ON memberships (list_id);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    list_ids TEXT NOT NULL,
    failures TEXT NOT NULL,
    total_count INTEGER NOT NULL,
    created_at REAL NOT NULL,
    due_at REAL NOT NULL,
    completed_at REAL,
    cancelled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS email_consents (
    profile_id TEXT PRIMARY KEY,
    consent TEXT NOT NULL,
    consented_at TEXT,
    historical_import INTEGER NOT NULL,
    list_id TEXT,
    custom_source TEXT,
    recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS email_suppressions (
    profile_id TEXT NOT NULL,
    list_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    PRIMARY KEY (profile_id, list_id, reason)
);
CREATE TABLE IF NOT EXISTS import_errors (
    job_id TEXT NOT NULL, position INTEGER NOT NULL, error TEXT NOT NULL,
    PRIMARY KEY (job_id, position)
);
"""


class Database:
    """The connection, opened with the schema; every use holds the lock."""

    def __init__(self, path: str = ":memory:") -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(profiles)")}
        if columns and "email_key" not in columns:
            self._db.close()
            raise ValueError(
                f"{path} holds the state of an earlier version of the sandbox; remove it or give another --db."
            )
        self._db.executescript(SCHEMA)
        self._lock = threading.RLock()

    @contextmanager
    def locked(self) -> Iterator[sqlite3.Connection]:
        """The connection for reads, or for one write that needs no transaction."""
        with self._lock:
            yield self._db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection inside ``BEGIN``: committed at the end, rolled back by any exception."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def email_key(email: object) -> str | None:
    """The email as profiles are matched on it: every letter's case folded, as target-klaviyo folds
    them (``str.lower``).

    Klaviyo documents emails as case-insensitive without saying what that means beyond
    ASCII; SQLite's NOCASE folds only A-Z, which made ``JOSÉ.SILVA@`` and ``José.Silva@``
    two people here while the target treats them as one. The sandbox follows the target. The
    folded form is stored beside the email, so a 10,000-profile job's look-ups and index
    updates compare in SQLite rather than calling Python for each comparison (a collation
    function did: about a third of applying a job).
    """
    return str(email).lower() if email else None


_ID_PREFIX = uuid.uuid4().hex[:10].upper()
_id_counter = itertools.count()


def new_id() -> str:
    """A 26-character upper-case id, the shape of Klaviyo's profile and job ids: unique in
    this process (a counter) and unlike another sandbox's (a random prefix), and cheap, for
    the 10,000 profiles of every import job."""
    return f"{_ID_PREFIX}{next(_id_counter):016X}"


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat()


def stamp(at: datetime | None) -> str:
    """A moment as the store keeps it: ISO 8601 in UTC; now when not given."""
    return iso(time.time()) if at is None else at.astimezone(timezone.utc).isoformat()
