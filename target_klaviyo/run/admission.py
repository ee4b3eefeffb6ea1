"""Who gets in: the per-run profile limit, people already seen, and one email per phone or external id.

Phone numbers and external ids are compared across runs too, when the ledger knows who
holds them (see :meth:`Admissions.held_before`).

Runs on the reading thread only, except :meth:`Admissions.superseded`, which the
settling thread asks (a job's consent must not outvote a later record of the same
person); the order of each person's latest record is the one value shared, under
its own lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any

from target_klaviyo.ledger.digest import IDENTIFIERS, NO_IDENTIFIER, identifier_of
from target_klaviyo.ledger.known import memory_key
from target_klaviyo.records.emails import address_forms, texts_with_at
from target_klaviyo.records.mapping import ProfileMapper
from target_klaviyo.records.profile import Profile, Reject
from target_klaviyo.run.outcomes import Outcomes
from target_klaviyo.run.seen import HashTable, hash64
from target_klaviyo.settings.settings import Settings

logger = logging.getLogger(
    "target_klaviyo.run"
)  # the name its lines had before the modules moved into rooms: users' log filters keep working


CONTESTED = 0  # the owner of an identifier two people hold: matches no person (keys are never 0)


class Admission(Enum):
    NEW = "new"
    REPEAT = "repeat"
    OVER_LIMIT = "over_limit"


class Admissions:
    """The run's people, as 64-bit hashes in compact tables (see seen.py)."""

    def __init__(self, settings: Settings, mapper: ProfileMapper) -> None:
        self._settings = settings
        self._mapper = mapper
        self.limit_reached = False
        self._profiles = HashTable(with_values=False)
        # Who holds each phone number and external id: from earlier runs (the ledger's, read first), and
        # in this run. One table: the values the ledger holds are most of the run's, in the same keys.
        self._owners = HashTable(with_values=True)
        self._read_held: Callable[[], None] | None = None  # fills _owners from the ledger (held_later)
        mapped = [name for name in IDENTIFIERS if name in settings.attribute_paths]
        self.sends_identifiers = bool(mapped)  # else no value of this run can merge two people
        if mapped and settings.ledger is None and settings.consent_path is not None:
            logger.warning(
                "With use_ledger false, %s is checked only against this run's other records: one an earlier "
                "run gave another email makes Klaviyo merge the two people, and one's unsubscribe can become "
                "the other's (docs/consent.md); keep the ledger on with consent_property.",
                " and ".join(mapped),
            )
        # With several lists, which lists each person was sent to (else the people are that).
        self._memberships = HashTable(with_values=False) if len(settings.lists) > 1 else None
        self._taken = 0
        # Per person, the order of their latest record, for people with more than one: written
        # here on the reading thread, read by the settling thread, hence the lock.
        self._later_records: dict[int, int] = {}
        self._later_lock = threading.Lock()

    def admit(self, key: str, list_id: str, outcomes: Outcomes) -> Admission:
        """Count a profile towards the limit the first time its email is seen in this run.

        With several lists, a person already sent to another list is new to this one (it
        is sent, not "sent again"), and still one profile towards the limit.
        """
        hashed = hash64(key)
        membership = hash64(f"{list_id}\n{key}") if self._memberships is not None else 0
        if self._memberships is not None:
            if membership in self._memberships:
                return Admission.REPEAT
            if hashed in self._profiles:
                self._memberships.setdefault(membership)
                return Admission.NEW
        elif hashed in self._profiles:
            return Admission.REPEAT
        limit = self._settings.max_profiles
        if limit and len(self._profiles) >= limit:
            if not self.limit_reached:
                self.limit_reached = True
                self._warn_limit()
            return Admission.OVER_LIMIT
        self._profiles.setdefault(hashed)
        if self._memberships is not None:
            self._memberships.setdefault(membership)
        outcomes.distinct()
        return Admission.NEW

    def seen(self, key: str) -> bool:
        return hash64(key) in self._profiles

    def seen_in(self, key: str, list_id: str) -> bool:
        """Whether this person was already taken for this list in this run."""
        if self._memberships is None:
            return self.seen(key)
        return hash64(f"{list_id}\n{key}") in self._memberships

    def take(self, key: str, seen_before: bool) -> int:
        """The order of an admitted profile among the run's records; a repeat supersedes the earlier."""
        self._taken += 1
        if seen_before:
            # A later record of someone already taken (for any list: consent is the profile's):
            # an earlier job's consent must not outvote it.
            with self._later_lock:
                self._later_records[hash64(key)] = self._taken
        return self._taken

    def later_rejected(self, record: Any) -> None:
        """A rejected record still says who it is for: any earlier consent of that person is superseded,
        since what this later record would have said is unknown."""
        if self._settings.consent_path is None or not isinstance(record, dict):
            return
        key = self._mapper.key_of(record)
        if key is not None and self.seen(key):
            self.take(key, seen_before=True)

    def later_unreadable(self, record: Any) -> None:
        """A record the reader could not read as a record: no stream map or mapping ran on it, so its
        person may be named by any address anywhere in it; each one's earlier consent is superseded."""
        if self._settings.consent_path is None:
            return
        self.later_rejected(record)
        keys = {form.lower() for text in texts_with_at(record) for form in address_forms(text)}
        for key in keys:
            if self.seen(key):
                self.take(key, seen_before=True)

    def superseded(self, key: str, order: int) -> bool:
        """Whether a later record of this person was read after the one taken at ``order``."""
        with self._later_lock:
            return self._later_records.get(hash64(key), order) > order

    def held_before(self, claims: Iterable[list[tuple[bytes, bytes]]]) -> None:
        """Take in who the ledger says holds each phone number and external id: (identifier, person).

        An identifier the ledger gives to two people (two runs on different lists at once) is
        held by neither: each is then exported without it. A value of the wrong kind raises
        TypeError (a damaged ledger).
        """
        store, put, number = self._owners.setdefault, self._owners.put, int.from_bytes
        for chunk in claims:
            for identifier, person in chunk:  # memory_key, written out: a million people, every run
                key, owner = number(identifier[:8], "big") or 1, number(person[:8], "big") or 1
                if store(key, owner) != owner:
                    put(key, CONTESTED)

    def held_later(self, read: Callable[[], None]) -> None:
        """``read`` gives :meth:`held_before` the ledger's holders when the first profile is checked:
        before any of this run's values are taken, as if read at the start, and not at all in a run
        whose profiles are all unchanged (which a million-person ledger saves seconds on)."""
        self._read_held = read

    def one_person_per_phone(self, profile: Profile, person: bytes) -> tuple[Profile, bytes]:
        """Klaviyo identifies people by phone and external id too: one that another email holds, in
        this run or (with the ledger) in Klaviyo since an earlier run, is dropped.

        Otherwise Klaviyo would merge the two emails into one profile, and one's consent (an
        unsubscribe, say) would become the other's. The hashes are the ledger's, so that what it
        holds and what this run claims compare (see :mod:`target_klaviyo.ledger.digest`).

        ``person`` is the ledger's name of the profile's key; returned with the profile, the
        ledger's names of the phone number and external id it keeps (for the ledger to record).
        """
        if self._read_held is not None:
            read, self._read_held = self._read_held, None
            read()
        owner = memory_key(person)
        attributes = profile.resource["attributes"]
        kept = []
        for attribute, reason in zip(IDENTIFIERS, ("duplicate_phone", "duplicate_external_id"), strict=True):
            value = attributes.get(attribute)
            if value is None:
                kept.append(NO_IDENTIFIER)
                continue
            name = identifier_of(attribute, f"{value}")
            identifier = memory_key(name)
            if self._owners.setdefault(identifier, owner) == owner:
                kept.append(name)
                continue
            detail = (
                f"{attribute} is already another email's, in this run or (the ledger says) since an earlier "
                "run; it was left out so that Klaviyo does not merge the two people, and the profile was "
                "exported without it."
            )
            kept.append(NO_IDENTIFIER)
            profile = profile.without(attribute, Reject(reason, detail))
        return profile, b"".join(kept)

    def _warn_limit(self) -> None:
        if self._settings.on_limit_exceeded == "truncate":
            logger.warning(
                "Reached max_profiles_per_run (%d); further new profiles are skipped and counted "
                "(on_limit_exceeded: truncate).",
                self._settings.max_profiles,
            )
