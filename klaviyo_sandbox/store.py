"""The sandbox's state in SQLite: lists, profiles, memberships, consent, import jobs and their errors.

One connection, guarded by a lock, serves every request thread; that keeps
``:memory:`` databases working and writes serialised, as they are in one account.
Import jobs finish lazily: whenever anything reads the store, jobs whose time has
come are applied, so no background thread is needed. The profiles of a job still
queued are held in memory only (parsing them back from SQLite would make the
sandbox slower than the target it serves); a sandbox stopped before its jobs
finished reports them as ``cancelled`` when it starts again, as Klaviyo would
report a job it could not finish.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import msgspec

IDENTIFIERS = ("email", "phone_number", "external_id")
MEMBER_SELECT = (
    "SELECT m.rowid, p.id, p.attributes, p.created, p.updated, m.joined_group_at,"
    " c.consent, c.consented_at, c.historical_import, c.recorded_at"
    " FROM memberships m JOIN profiles p ON p.id = m.profile_id"
    " LEFT JOIN email_consents c ON c.profile_id = p.id"
)
JOB_SELECT = (
    "SELECT j.rowid, j.id, j.list_ids, j.total_count, j.created_at, j.due_at, j.completed_at, j.cancelled,"
    " (SELECT count(*) FROM import_errors e WHERE e.job_id = j.id) FROM jobs j"
)
SCHEMA = """
CREATE TABLE IF NOT EXISTS lists (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS profiles (
    id TEXT PRIMARY KEY,
    email TEXT UNIQUE COLLATE EMAIL_CASE,
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


_ID_PREFIX = uuid.uuid4().hex[:10].upper()
_id_counter = itertools.count()


def new_id() -> str:
    """A 26-character upper-case id, the shape of Klaviyo's profile and job ids: unique in
    this process (a counter) and unlike another sandbox's (a random prefix), and cheap, for
    the 10,000 profiles of every import job."""
    return f"{_ID_PREFIX}{next(_id_counter):016X}"


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat()


GLOBAL = ""  # the list_id of a global suppression (a primary key cannot hold NULL reliably)
# The suppressions a subscription removes, as Klaviyo documents (SPAM_REPORT being its other name
# for SPAM_COMPLAINT); HARD_BOUNCE and INVALID_EMAIL stay, and so do list suppressions.
LIFTED_BY_SUBSCRIBING = ("UNSUBSCRIBE", "SPAM_COMPLAINT", "SPAM_REPORT", "USER_SUPPRESSED")


def _stamp(at: datetime | None) -> str:
    """A moment as the store keeps it: ISO 8601 in UTC; now when not given."""
    return iso(time.time()) if at is None else at.astimezone(timezone.utc).isoformat()


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


def _encode(attributes: dict[str, Any]) -> str:
    """A profile's attributes as stored: JSON, by msgspec (10,000 of them for every import job)."""
    return msgspec.json.encode(attributes).decode()


def merge_attributes(current: dict[str, Any], incoming: dict[str, Any]) -> dict[str, Any]:
    """Apply an upsert: given fields replace, ``null`` clears, objects merge key by key."""
    merged = dict(current)
    for key, value in incoming.items():
        if value is None:
            merged.pop(key, None)
        elif key in {"location", "properties"} and isinstance(value, dict):
            merged[key] = merge_attributes(merged.get(key) or {}, value)
        else:
            merged[key] = value
    return merged


class SandboxStore:
    def __init__(self, path: str = ":memory:") -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.create_collation("EMAIL_CASE", email_case)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.RLock()
        self._queued_profiles: dict[str, list[dict[str, Any]]] = {}
        self._cancel_when_due: set[str] = set()
        # Like Klaviyo, jobs run in the background when they are due, not when someone asks.
        self._due = threading.Condition()
        self._closed = False
        self._processor = threading.Thread(target=self._process_jobs, name="sandbox-jobs", daemon=True)
        self._db.execute(
            "UPDATE jobs SET cancelled = 1, completed_at = ? WHERE completed_at IS NULL", (time.time(),)
        )

    def close(self) -> None:
        with self._due:
            self._closed = True
            self._due.notify_all()
        with self._lock:
            self._db.close()

    def _process_jobs(self) -> None:
        """Apply each job as soon as it is due (reading a job applies what is due too)."""
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
                self.finish_due_jobs()
            except sqlite3.ProgrammingError:  # closed meanwhile
                return

    def _next_due(self) -> float | None:
        with self._lock:
            if self._closed:
                return None
            row = self._db.execute("SELECT min(due_at) FROM jobs WHERE completed_at IS NULL").fetchone()
        due: float | None = row[0]
        return due

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # Lists and members

    def ensure_list(self, list_id: str, name: str | None = None) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO lists (id, name, created) VALUES (?, ?, ?)",
                (list_id, name or f"Sandbox list {list_id}", iso(time.time())),
            )

    def get_list(self, list_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT id, name, created FROM lists WHERE id = ?", (list_id,)).fetchone()
        return None if row is None else {"id": row[0], "name": row[1], "created": row[2]}

    def count_members(self, list_id: str) -> int:
        self.finish_due_jobs()
        with self._lock:
            count: int = self._db.execute(
                "SELECT count(*) FROM memberships WHERE list_id = ?", (list_id,)
            ).fetchone()[0]
        return count

    def members(
        self, list_id: str, after: int = 0, limit: int = 100, emails: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Members in join order, from membership row ``after`` on (a cursor); only ``emails`` if given."""
        self.finish_due_jobs()
        only = "" if emails is None else f" AND p.email IN ({','.join('?' * len(emails))})"
        query = f"{MEMBER_SELECT} WHERE m.list_id = ? AND m.rowid > ?{only} ORDER BY m.rowid LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, (list_id, after, *(emails or []), limit)).fetchall()
            suppressions = self._suppressions([row[1] for row in rows])
        return [
            {
                "cursor": row[0],
                "id": row[1],
                "attributes": json.loads(row[2]),
                "created": row[3],
                "updated": row[4],
                "joined_group_at": row[5],
                "email_marketing": None
                if row[6] is None
                else {
                    "consent": row[6],
                    "consented_at": row[7],
                    "historical_import": bool(row[8]),
                    "recorded_at": row[9],
                },
                "suppressions": suppressions.get(row[1], []),
            }
            for row in rows
        ]

    def _suppressions(self, profile_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Each profile's suppressions, oldest first: ``list_id`` (None for a global one), reason, timestamp."""
        found: dict[str, list[dict[str, Any]]] = {}
        for start in range(0, len(profile_ids), 500):
            chunk = profile_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT profile_id, list_id, reason, timestamp FROM email_suppressions WHERE profile_id IN ({marks}) ORDER BY timestamp"  # noqa: S608 - only placeholders
            rows = self._db.execute(query, chunk).fetchall()
            for profile_id, list_id, reason, timestamp in rows:
                found.setdefault(profile_id, []).append(
                    {"list_id": list_id or None, "reason": reason, "timestamp": timestamp}
                )
        return found

    def add_members(self, list_id: str, profile_ids: list[str]) -> None:
        joined = iso(time.time())
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO memberships (list_id, profile_id, joined_group_at) VALUES (?, ?, ?)",
                [(list_id, profile_id, joined) for profile_id in profile_ids],
            )

    def remove_members(self, list_id: str, profile_ids: list[str]) -> None:
        with self._transaction() as db:
            db.executemany(
                "DELETE FROM memberships WHERE list_id = ? AND profile_id = ?",
                [(list_id, profile_id) for profile_id in profile_ids],
            )

    def existing_profile_ids(self, profile_ids: list[str]) -> set[str]:
        with self._lock:
            marks = ",".join("?" * len(profile_ids))
            rows = self._db.execute(
                f"SELECT id FROM profiles WHERE id IN ({marks})",  # noqa: S608 - only placeholders
                profile_ids,
            ).fetchall()
        return {row[0] for row in rows}

    def subscribe(
        self,
        list_id: str,
        people: list[tuple[dict[str, Any], str | None]],
        *,
        historical: bool,
        source: str | None,
    ) -> None:
        """Subscribe profiles (created if new) to email marketing and add them to the list.

        ``people`` are (identifiers, consented_at). A later consent replaces an earlier one,
        and the global suppressions a subscription lifts are removed.
        """
        now = iso(time.time())
        with self._transaction() as db:
            ids = [
                profile_id for profile_id, _ in self._upsert_many(db, [identity for identity, _ in people])
            ]
            db.executemany(
                "INSERT OR REPLACE INTO email_consents VALUES (?, 'SUBSCRIBED', ?, ?, ?, ?, ?)",
                [
                    (profile_id, consented_at, int(historical), list_id, source, now)
                    for profile_id, (_, consented_at) in zip(ids, people, strict=True)
                ],
            )
            db.executemany(
                "INSERT OR IGNORE INTO memberships (list_id, profile_id, joined_group_at) VALUES (?, ?, ?)",
                [(list_id, profile_id, now) for profile_id in ids],
            )
            lifted = ",".join("?" * len(LIFTED_BY_SUBSCRIBING))
            db.executemany(
                f"DELETE FROM email_suppressions WHERE profile_id = ? AND list_id = ? AND reason IN ({lifted})",  # noqa: S608
                [(profile_id, GLOBAL, *LIFTED_BY_SUBSCRIBING) for profile_id in ids],
            )

    def unsubscribe(self, email: str, at: datetime | None = None) -> None:
        """The person unsubscribed from email marketing (an unsubscribe link, the preference page),
        ``at`` that moment (now if not given): consent ``UNSUBSCRIBED`` and an ``UNSUBSCRIBE``
        suppression, both dated then."""
        stamp = _stamp(at)
        with self._transaction() as db:
            [(profile_id, _)] = self._upsert_many(db, [{"email": email}])
            db.execute(
                "INSERT OR REPLACE INTO email_consents VALUES (?, 'UNSUBSCRIBED', NULL, 0, NULL, NULL, ?)",
                (profile_id, stamp),
            )
            db.execute(
                "INSERT OR REPLACE INTO email_suppressions VALUES (?, ?, 'UNSUBSCRIBE', ?)",
                (profile_id, GLOBAL, stamp),
            )

    def suppress(
        self, email: str, reason: str, at: datetime | None = None, list_id: str | None = None
    ) -> None:
        """A suppression of the person's email marketing for ``reason`` (``SPAM_COMPLAINT``,
        ``USER_SUPPRESSED``, ``HARD_BOUNCE``...), ``at`` that moment (now if not given), global or
        from one list. It has its own timestamp: the consent and its ``last_updated`` stay as they are."""
        with self._transaction() as db:
            [(profile_id, _)] = self._upsert_many(db, [{"email": email}])
            db.execute(
                "INSERT OR REPLACE INTO email_suppressions VALUES (?, ?, ?, ?)",
                (profile_id, list_id or GLOBAL, reason, _stamp(at)),
            )

    # Profiles

    def upsert_profile(self, attributes: dict[str, Any]) -> tuple[str, bool]:
        """Create or update the profile the identifiers name; returns (id, created)."""
        with self._transaction() as db:
            [(profile_id, created)] = self._upsert_many(db, [attributes])
        return profile_id, created

    def _upsert_many(self, db: sqlite3.Connection, profiles: list[dict[str, Any]]) -> list[tuple[str, bool]]:
        """Upsert profiles in order, matching on email, then phone number, then external id.

        Existing profiles are looked up in a few set queries rather than one query per
        profile, so that applying a 10,000-profile job stays cheap.
        """
        identities = [_identity_keys(attributes) for attributes in profiles]
        known = self._lookup(db, profiles, identities)
        merged_by_id: dict[str, dict[str, Any]] = {}
        created: set[str] = set()
        results = []
        for attributes, keys in zip(profiles, identities, strict=True):
            match = next((known[key] for key in keys if key in known), None)
            if match is None:
                profile_id, current = new_id(), dict[str, Any]()
                created.add(profile_id)
            else:
                profile_id, current = match
            merged = merge_attributes(current, attributes)
            merged_by_id[profile_id] = merged
            for key in _identity_keys(merged):
                known[key] = (profile_id, merged)
            results.append((profile_id, profile_id in created))
        now = iso(time.time())
        db.executemany(
            "UPDATE profiles SET email = ?, phone_number = ?, external_id = ?, attributes = ?, updated = ?"
            " WHERE id = ?",
            [
                (*_identifiers(merged), _encode(merged), now, profile_id)
                for profile_id, merged in merged_by_id.items()
                if profile_id not in created
            ],
        )
        db.executemany(
            "INSERT INTO profiles VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (profile_id, *_identifiers(merged), _encode(merged), now, now)
                for profile_id, merged in merged_by_id.items()
                if profile_id in created
            ],
        )
        return results

    @staticmethod
    def _lookup(
        db: sqlite3.Connection, profiles: list[dict[str, Any]], identities: list[list[tuple[str, str]]]
    ) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
        """Existing profiles that ``profiles`` (with their ``identities``) match, by (identifier, value).

        A profile is looked up by phone number only when its email matched nothing,
        and by external id only when neither did, as matching itself works.
        """
        known: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        unmatched = list(zip(profiles, identities, strict=True))
        for identifier in IDENTIFIERS:
            values = list({str(p[identifier]) for p, _ in unmatched if p.get(identifier)})
            for start in range(0, len(values), 500):
                chunk = values[start : start + 500]
                rows = db.execute(
                    f"SELECT id, attributes FROM profiles WHERE {identifier} IN ({','.join('?' * len(chunk))})",  # noqa: S608
                    chunk,
                ).fetchall()
                for profile_id, attributes in rows:
                    merged = json.loads(attributes)
                    for key in _identity_keys(merged):
                        known.setdefault(key, (profile_id, merged))
            if known:
                unmatched = [(p, keys) for p, keys in unmatched if not any(key in known for key in keys)]
        return known

    def get_profile(self, profile_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT attributes, created, updated FROM profiles WHERE id = ?", (profile_id,)
            ).fetchone()
        if row is None:
            return None
        return {"id": profile_id, "attributes": json.loads(row[0]), "created": row[1], "updated": row[2]}

    # Bulk import jobs

    def create_job(
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
        with self._transaction() as db:
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

    def get_job(self, job_id: str) -> Job | None:
        found = self._jobs("WHERE j.id = ?", (job_id,))
        return found[0][1] if found else None

    def jobs(self, after: int = 0, limit: int = 100) -> list[tuple[int, Job]]:
        """Jobs in creation order, from row ``after`` on (a cursor), with their row numbers."""
        return self._jobs("WHERE j.rowid > ? ORDER BY j.rowid LIMIT ?", (after, limit))

    def _jobs(self, where: str, parameters: tuple[Any, ...]) -> list[tuple[int, Job]]:
        self.finish_due_jobs()
        with self._lock:
            query = f"{JOB_SELECT} {where}"  # fixed clauses from this class; values go as parameters
            rows = self._db.execute(query, parameters).fetchall()
        return [
            (row[0], Job(row[1], json.loads(row[2]), row[3], row[4], row[5], row[6], row[8], bool(row[7])))
            for row in rows
        ]

    def profiles(self) -> list[dict[str, Any]]:
        """Every profile, in creation order: id, attributes, created and updated."""
        self.finish_due_jobs()
        with self._lock:
            rows = self._db.execute(
                "SELECT id, attributes, created, updated FROM profiles ORDER BY rowid"
            ).fetchall()
        return [
            {"id": row[0], "attributes": json.loads(row[1]), "created": row[2], "updated": row[3]}
            for row in rows
        ]

    def import_errors(self, job_id: str, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        self.finish_due_jobs()
        with self._lock:
            rows = self._db.execute(
                "SELECT position, error FROM import_errors WHERE job_id = ? AND position > ?"
                " ORDER BY position LIMIT ?",
                (job_id, after, limit),
            ).fetchall()
        return [(row[0], json.loads(row[1])) for row in rows]

    def finish_due_jobs(self) -> None:
        """Apply every job whose processing time has passed, oldest first."""
        now = time.time()
        with self._transaction() as db:
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
                self._apply_job(db, job_id, json.loads(list_ids), profiles, json.loads(failures))
                db.execute("UPDATE jobs SET completed_at = ? WHERE id = ?", (now, job_id))

    def _apply_job(
        self,
        db: sqlite3.Connection,
        job_id: str,
        list_ids: list[str],
        profiles: list[dict[str, Any]],
        failures: dict[str, dict[str, Any]],
    ) -> None:
        joined = iso(time.time())
        db.executemany(
            "INSERT INTO import_errors VALUES (?, ?, ?)",
            [(job_id, int(position), json.dumps(error)) for position, error in failures.items()],
        )
        accepted = [
            attributes for position, attributes in enumerate(profiles) if str(position) not in failures
        ]
        imported = [profile_id for profile_id, _ in self._upsert_many(db, accepted)]
        db.executemany(
            "INSERT OR IGNORE INTO memberships VALUES (?, ?, ?)",
            [(list_id, profile_id, joined) for list_id in list_ids for profile_id in imported],
        )


def email_case(left: str, right: str) -> int:
    """Emails compare with every letter's case folded, as target-klaviyo folds them (``str.lower``).

    Klaviyo documents emails as case-insensitive without saying what that means beyond
    ASCII; SQLite's NOCASE folds only A-Z, which made ``JOSÉ.SILVA@`` and ``José.Silva@``
    two people here while the target treats them as one. The sandbox follows the target.
    """
    a, b = left.lower(), right.lower()
    return (a > b) - (a < b)


def _identity_keys(attributes: dict[str, Any]) -> list[tuple[str, str]]:
    """The (identifier, value) pairs a profile can be matched on; emails compare case-blind."""
    keys = []
    for identifier in IDENTIFIERS:
        value = attributes.get(identifier)
        if value:
            keys.append((identifier, str(value).lower() if identifier == "email" else str(value)))
    return keys


def _identifiers(attributes: dict[str, Any]) -> tuple[Any, Any, Any]:
    return attributes.get("email"), attributes.get("phone_number"), attributes.get("external_id")
