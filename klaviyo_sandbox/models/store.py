"""The sandbox's account: lists, profiles, memberships and email consent, with its import jobs.

A read of members or profiles first applies the import jobs that are due
(:mod:`klaviyo_sandbox.models.jobs`), so what it returns is what Klaviyo would show then.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

from klaviyo_sandbox.models.database import Database, email_key, iso, stamp
from klaviyo_sandbox.models.jobs import ImportJobs
from klaviyo_sandbox.models.profiles import upsert_many

MEMBER_SELECT = (
    "SELECT m.rowid, p.id, p.attributes, p.created, p.updated, m.joined_group_at,"
    " c.consent, c.consented_at, c.historical_import, c.recorded_at"
    " FROM memberships m JOIN profiles p ON p.id = m.profile_id"
    " LEFT JOIN email_consents c ON c.profile_id = p.id"
)
GLOBAL = ""  # the list_id of a global suppression (a primary key cannot hold NULL reliably)
# The suppressions a subscription removes, as Klaviyo documents (SPAM_REPORT being its other name
# for SPAM_COMPLAINT); HARD_BOUNCE and INVALID_EMAIL stay, and so do list suppressions.
LIFTED_BY_SUBSCRIBING = ("UNSUBSCRIBE", "SPAM_COMPLAINT", "SPAM_REPORT", "USER_SUPPRESSED")


class SandboxStore:
    """The account in SQLite (a file, or ``:memory:``); ``import_jobs`` are its bulk import jobs."""

    def __init__(self, path: str = ":memory:") -> None:
        self._database = Database(path)
        self.import_jobs = ImportJobs(self._database)

    def close(self) -> None:
        self.import_jobs.close()
        self._database.close()

    # Lists and members

    def ensure_list(self, list_id: str, name: str | None = None) -> None:
        with self._database.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO lists (id, name, created) VALUES (?, ?, ?)",
                (list_id, name or f"Sandbox list {list_id}", iso(time.time())),
            )

    def get_list(self, list_id: str) -> dict[str, Any] | None:
        with self._database.locked() as db:
            row = db.execute("SELECT id, name, created FROM lists WHERE id = ?", (list_id,)).fetchone()
        return None if row is None else {"id": row[0], "name": row[1], "created": row[2]}

    def count_members(self, list_id: str) -> int:
        self.import_jobs.finish_due()
        with self._database.locked() as db:
            count: int = db.execute(
                "SELECT count(*) FROM memberships WHERE list_id = ?", (list_id,)
            ).fetchone()[0]
        return count

    def members(
        self,
        list_id: str,
        after: int = 0,
        limit: int = 100,
        emails: list[str] | None = None,
        joined: tuple[str, datetime] | None = None,
    ) -> list[dict[str, Any]]:
        """Members in join order, from membership row ``after`` on (a cursor); only ``emails`` if given,
        only those who joined from a moment on if ``joined`` is (``greater-or-equal`` or ``greater-than``)."""
        self.import_jobs.finish_due()
        only = "" if emails is None else f" AND p.email_key IN ({','.join('?' * len(emails))})"
        since: tuple[str, ...] = ()
        if joined is not None:
            # julianday reads the stored ISO 8601 moments whatever their fraction of a second.
            only += f" AND julianday(m.joined_group_at) {'>=' if joined[0] == 'greater-or-equal' else '>'} julianday(?)"
            since = (joined[1].astimezone(timezone.utc).isoformat(),)
        query = f"{MEMBER_SELECT} WHERE m.list_id = ? AND m.rowid > ?{only} ORDER BY m.rowid LIMIT ?"
        with self._database.locked() as db:
            keys = [email_key(email) for email in emails or []]
            rows = db.execute(query, (list_id, after, *keys, *since, limit)).fetchall()
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
        with self._database.locked() as db:
            for start in range(0, len(profile_ids), 500):
                chunk = profile_ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT profile_id, list_id, reason, timestamp FROM email_suppressions WHERE profile_id IN ({marks}) ORDER BY timestamp"  # noqa: S608 - only placeholders
                rows = db.execute(query, chunk).fetchall()
                for profile_id, list_id, reason, timestamp in rows:
                    found.setdefault(profile_id, []).append(
                        {"list_id": list_id or None, "reason": reason, "timestamp": timestamp}
                    )
        return found

    def add_members(self, list_id: str, profile_ids: list[str], joined_at: datetime | None = None) -> None:
        """Add profiles to the list, as having joined it ``joined_at`` (now if not given)."""
        joined = stamp(joined_at)
        with self._database.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO memberships (list_id, profile_id, joined_group_at) VALUES (?, ?, ?)",
                [(list_id, profile_id, joined) for profile_id in profile_ids],
            )

    def remove_members(self, list_id: str, profile_ids: list[str]) -> None:
        with self._database.transaction() as db:
            db.executemany(
                "DELETE FROM memberships WHERE list_id = ? AND profile_id = ?",
                [(list_id, profile_id) for profile_id in profile_ids],
            )

    def existing_profile_ids(self, profile_ids: list[str]) -> set[str]:
        marks = ",".join("?" * len(profile_ids))
        with self._database.locked() as db:
            rows = db.execute(
                f"SELECT id FROM profiles WHERE id IN ({marks})",  # noqa: S608 - only placeholders
                profile_ids,
            ).fetchall()
        return {row[0] for row in rows}

    # Email marketing consent

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
        with self._database.transaction() as db:
            ids = [profile_id for profile_id, _ in upsert_many(db, [identity for identity, _ in people])]
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
        when = stamp(at)
        with self._database.transaction() as db:
            [(profile_id, _)] = upsert_many(db, [{"email": email}])
            db.execute(
                "INSERT OR REPLACE INTO email_consents VALUES (?, 'UNSUBSCRIBED', NULL, 0, NULL, NULL, ?)",
                (profile_id, when),
            )
            db.execute(
                "INSERT OR REPLACE INTO email_suppressions VALUES (?, ?, 'UNSUBSCRIBE', ?)",
                (profile_id, GLOBAL, when),
            )

    def suppress(
        self, email: str, reason: str, at: datetime | None = None, list_id: str | None = None
    ) -> None:
        """A suppression of the person's email marketing for ``reason`` (``SPAM_COMPLAINT``,
        ``USER_SUPPRESSED``, ``HARD_BOUNCE``...), ``at`` that moment (now if not given), global or
        from one list. It has its own timestamp: the consent and its ``last_updated`` stay as they are."""
        with self._database.transaction() as db:
            [(profile_id, _)] = upsert_many(db, [{"email": email}])
            db.execute(
                "INSERT OR REPLACE INTO email_suppressions VALUES (?, ?, ?, ?)",
                (profile_id, list_id or GLOBAL, reason, stamp(at)),
            )

    # Profiles

    def upsert_profile(self, attributes: dict[str, Any]) -> tuple[str, bool]:
        """Create or update the profile the identifiers name; returns (id, created)."""
        with self._database.transaction() as db:
            [(profile_id, created)] = upsert_many(db, [attributes])
        return profile_id, created

    def change_email(self, profile_id: str, email: str) -> None:
        """Give the profile another address, as an edit in Klaviyo (or a merge of two profiles) does."""
        with self._database.transaction() as db:
            (attributes,) = db.execute(
                "SELECT attributes FROM profiles WHERE id = ?", (profile_id,)
            ).fetchone()
            changed = {**json.loads(attributes), "email": email}
            db.execute(
                "UPDATE profiles SET email = ?, email_key = ?, attributes = ?, updated = ? WHERE id = ?",
                (email, email_key(email), json.dumps(changed), iso(time.time()), profile_id),
            )

    def get_profile(self, profile_id: str) -> dict[str, Any] | None:
        with self._database.locked() as db:
            row = db.execute(
                "SELECT attributes, created, updated FROM profiles WHERE id = ?", (profile_id,)
            ).fetchone()
        if row is None:
            return None
        return {"id": profile_id, "attributes": json.loads(row[0]), "created": row[1], "updated": row[2]}

    def profiles(self) -> list[dict[str, Any]]:
        """Every profile, in creation order: id, attributes, created and updated."""
        self.import_jobs.finish_due()
        with self._database.locked() as db:
            rows = db.execute(
                "SELECT id, attributes, created, updated FROM profiles ORDER BY rowid"
            ).fetchall()
        return [
            {"id": row[0], "attributes": json.loads(row[1]), "created": row[2], "updated": row[3]}
            for row in rows
        ]
