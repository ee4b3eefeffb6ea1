"""The run's ledger: opened, locked and read after the connection check, written per job.

The rule, enforced in :meth:`Ledger.confirmed`: a person enters the ledger for a list
only once Klaviyo confirmed what was sent for them there (their import job complete,
not among its import errors, their consent sent if they had one), and each job's
people are written in one transaction. So a run killed at any moment leaves only what
Klaviyo holds; what was in flight is simply sent again. A dry run reads the ledger
and never writes it (nor creates it, nor locks it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol

from target_klaviyo.ledger.digest import (
    HASH_BYTES,
    IDENTIFIERS,
    NO_IDENTIFIER,
    digest_of,
    person_of,
    person_of_address,
)
from target_klaviyo.ledger.known import Known, Verdict, day_number, memory_key
from target_klaviyo.ledger.store import Claim, LedgerStore
from target_klaviyo.records.profile import Profile
from target_klaviyo.run.seen import HashTable
from target_klaviyo.settings.settings import Settings

logger = logging.getLogger("target_klaviyo.ledger")


class ConfirmedJob(Protocol):
    """What the ledger reads of a settled job (:class:`~target_klaviyo.delivery.jobs.SubmittedJob`)."""

    list_id: str
    keys: list[str]
    claimed_at: int  # when claiming recorded what it gives

    def digest(self, position: int) -> bytes: ...

    def stream(self, position: int) -> str: ...

    def identifiers(self, position: int) -> bytes: ...


class Ledger:
    def __init__(self, settings: Settings) -> None:
        assert settings.ledger is not None
        self._settings = settings
        self._read_only = settings.dry_run
        self._store: LedgerStore | None = None
        self.known = Known(
            settings.resync_after_days, day_number(time.time()), full_refresh=settings.full_refresh
        )
        self._where = settings.ledger.setting
        self._closed = False
        self._members: dict[str, HashTable] = {}  # per list a mirror run read whole: its members
        self._created: Mapping[str, str | None] | None = None
        self._used: set[str] = set()  # the lists locked and read (see use)

    def load(self, created: Mapping[str, str | None] | None) -> None:
        """Open the ledger; ``created`` is when Klaviyo says each list was created (None in a dry run,
        which asks Klaviyo nothing and takes the ledger as it is).

        The ledger is opened here, at the first SCHEMA once Klaviyo answered, not when the target
        is built: a run whose api_url or key is wrong creates no ledger bound to that api_url, and
        a target object that never runs (the SDK's test runner builds several) holds no lock.
        """
        assert self._settings.ledger is not None
        self._store = LedgerStore(self._settings.ledger, self._settings.api_url, read_only=self._read_only)
        self._created = created

    def use(self, list_id: str) -> None:
        """Lock the list and read its people, before the first record for it (once per list).

        Only the lists this run sends to are locked, when their first stream arrives: loaders of
        one project whose settings name the same lists, but whose streams go to different ones,
        run at the same time.
        """
        store, created = self._store, self._created
        if store is None or list_id in self._used:
            return
        self._used.add(list_id)
        if not self._read_only:
            store.lock(list_id)
        if created is not None:
            when = created.get(list_id)
            if not when:
                logger.warning(
                    "Klaviyo gave no creation time for list %s, so the ledger cannot tell it is the list "
                    "it knows: all its profiles are sent this run.",
                    list_id,
                )
                return
            if store.bind_list(list_id, when):
                logger.warning(
                    "List %s was created again since the ledger last saw it (Klaviyo gives another creation "
                    "time): its ledger was emptied, and all its profiles are sent this run.",
                    list_id,
                )
                return
        try:
            self.known.load(list_id, store.count(list_id), store.rows(list_id))
        except (TypeError, ValueError, OverflowError):
            raise store.damaged(f"a row of list {list_id} holds a value of the wrong kind") from None
        logger.info(
            "The ledger (%s) knows %d people of list %s%s.",
            self._where,
            self.known.size(list_id),
            list_id,
            " (full_refresh: all are sent again)" if self._settings.full_refresh else "",
        )

    def lock_identifiers(self) -> bool:
        """For a run that sends phone numbers or external ids: lock the account's identifiers; whether
        there are any to read (:meth:`read_identifiers`).

        The lock makes what is read later true for the whole run: only runs that send such values
        change who holds them, and they run one after another.
        """
        store = self._store
        if store is None:
            return False
        if store.identifiers_missing:
            # A dry run on a ledger from before the identifiers table, which the next run empties
            # (LedgerStore._add_identifiers): as that run sends everyone, so does this count.
            logger.warning(
                "The ledger (%s) was written by an earlier target-klaviyo, which kept no phone numbers or "
                "external ids: the next run sends every profile once to record them, and this dry run "
                "counts them so.",
                self._where,
            )
            self.known.send_all()
            return False
        if not self._read_only:
            store.lock_identifiers()
        return True

    def read_identifiers(self, take: Callable[[Iterable[list[tuple[bytes, bytes]]]], None]) -> None:
        """Give ``take`` (:meth:`Admissions.held_before`) who holds each phone number and external id,
        under the lock :meth:`lock_identifiers` took."""
        store = self._store
        if store is None:
            return
        try:
            take(store.identifiers())
        except (TypeError, ValueError, OverflowError):
            raise store.damaged("an identifier row holds a value of the wrong kind") from None

    def verdict(self, list_id: str, profile: Profile, person: bytes) -> tuple[Verdict, bytes]:
        """Whether this profile of ``person`` (:func:`person_of` its key) must be sent to this list, and
        its digest (kept to record it later)."""
        digest = digest_of(profile.encoded, profile.consent)
        return self.known.verdict(list_id, person, digest), digest

    def confirmed(self, job: ConfirmedJob, positions: list[int]) -> None:
        """Klaviyo confirmed these profiles of a job: record them, in one transaction."""
        if self._read_only or self._closed or self._store is None:
            return  # a job settled after the run ended (past stop_grace_seconds): only sent again next time
        now = int(time.time())
        rows = [(person_of(job.keys[p]), job.digest(p), now, job.stream(p)) for p in positions]
        claims = _claims((job.keys[p], job.identifiers(p)) for p in positions)
        self._store.confirm(job.list_id, rows, claims, job.claimed_at)

    def claiming(self, profiles: Iterable[tuple[str, bytes]]) -> int:
        """These profiles (key, identifiers) are about to be posted as a job: the phone numbers and
        external ids in them may be their people's from the POST on, so the ledger records them
        first (see :meth:`LedgerStore.claim`). Returns when, for :meth:`confirmed`."""
        if self._read_only or self._closed or self._store is None:
            return 0
        return self._store.claim(_claims(profiles))

    def forget(self, leaving: Mapping[str, list[bytes]]) -> None:
        """Mirror will remove these people (:func:`person_of` their keys): drop them from the ledger, so
        that if they come back unchanged they are sent."""
        if self._read_only or self._closed or self._store is None:
            return
        for list_id, persons in leaving.items():
            self._store.forget(list_id, persons)

    # mirror_scope synced (mirror.synced): who this target put into a list, and their profile ids

    def holds(self, list_id: str, person: bytes) -> bool:
        """Whether the ledger holds this person for the list (as read at the start of the run)."""
        return self.known.holds(list_id, person)

    def mirror_rows(self, list_id: str) -> Iterator[list[tuple[bytes, str, str | None, int]]]:
        """The list's people as the ledger holds them: (person, stream, profile id if known, when Klaviyo
        last confirmed them); none for a
        list whose people it did not read this run (one it cannot tell is the list it knows)."""
        assert self._store is not None
        if not self.known.loaded(list_id):
            return
        try:
            yield from self._store.mirror_rows(list_id)
        except (TypeError, ValueError, OverflowError):
            raise self._store.damaged(f"a row of list {list_id} holds a value of the wrong kind") from None

    def read_through(self, list_id: str) -> int | None:
        """Until when (Unix seconds) the list's members were read and their ids recorded; None: never."""
        assert self._store is not None
        return self._store.read_through(list_id)

    def learn(self, list_id: str, ids: list[tuple[bytes, str, int]], through: int | None = None) -> None:
        """Record the profile ids read for people the ledger holds, with when Klaviyo last changed each
        profile (and until when the members were read); a dry run writes nothing."""
        if self._read_only or self._closed or self._store is None:
            return
        self._store.learn(list_id, ids, through)

    def member(self, list_id: str, email: str) -> None:
        """A mirror run read this member of the list (see :meth:`forget_absent`)."""
        if self._read_only:
            return  # a dry run forgets nobody
        table = self._members.get(list_id)
        if table is None:
            table = self._members[list_id] = HashTable(with_values=False)
        person = person_of_address(email)
        if person is not None:
            table.setdefault(memory_key(person))

    def forget_absent(self) -> None:
        """Forget who the ledger holds for a list a mirror run read whole but who is not in it.

        Someone removed by another hand (in Klaviyo, by another tool, by a mirror run with
        use_ledger false or with another ledger) would otherwise be skipped as unchanged until
        resync_after_days; forgotten, they are sent by the next run. A collision of the 8-byte
        keys can only keep someone in the ledger: they are then sent within resync_after_days.
        """
        if self._read_only or self._closed or self._store is None:
            return
        for list_id, members in self._members.items():
            absent = [
                person
                for chunk in self._store.rows(list_id)
                for person, _, _ in chunk
                if memory_key(person) not in members
            ]
            if absent:
                self._store.forget(list_id, [bytes(person) for person in absent])
                logger.warning(
                    "%s people the ledger held for list %s are not in it (removed by another hand since "
                    "this target put them there): the ledger forgot them, so the next run sends them again.",
                    f"{len(absent):,}",
                    list_id,
                )

    def close(self) -> None:
        self._closed = True
        if self._store is not None:
            self._store.close()


def _claims(profiles: Iterable[tuple[str, bytes]]) -> list[Claim]:
    """Who these profiles (key, identifiers) give which phone number and external id, as the
    ledger records it."""
    claims: list[Claim] = []
    for key, identifiers in profiles:
        if not identifiers:
            continue
        person = person_of(key)
        for index, name in enumerate(IDENTIFIERS):
            identifier = identifiers[HASH_BYTES * index : HASH_BYTES * (index + 1)]
            if identifier != NO_IDENTIFIER:
                claims.append((person, name, identifier))
    return claims
