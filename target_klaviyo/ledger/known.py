"""The ledger in memory for one run: per list, who Klaviyo confirmed, with what, and when.

A list's entries are one :class:`~target_klaviyo.run.seen.HashTable`: the person's
first 8 bytes as the key, and as the value the digest's first 6 bytes beside the day
it was confirmed (16 bits, days since 2020-01-01), so a million people cost about 32
MB. See :mod:`.digest` for what a collision costs.

A profile is *due* again once Klaviyo has not confirmed it for ``resync_after_days``.
So that an unchanged segment confirmed in one night does not fall due all on one
night, each person falls due on a day of their own in the second half of that time
(from its hash): a nightly run sends about ``1 / (resync_after_days / 2)`` of them at
most, and none is left longer than ``resync_after_days``.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Iterable
from enum import Enum

from target_klaviyo.run.seen import HashTable

EPOCH = dt.date(2020, 1, 1)
MOST_DAYS = (1 << 16) - 1
DIGEST_BITS = 48


class Verdict(Enum):
    NEW = "new"  # not in the ledger for this list
    CHANGED = "changed"  # in it, with another digest
    DUE = "due"  # in it, unchanged, but not confirmed for resync_after_days
    UNCHANGED = "unchanged"  # in it, unchanged and recent: not sent


EPOCH_SECONDS = int(dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc).timestamp())
DAY_SECONDS = 86_400  # Unix time has no leap seconds: every UTC day is this long


def day_number(moment: float) -> int:
    """The day of a Unix time, as the ledger counts days in memory."""
    return min(max(int(moment - EPOCH_SECONDS) // DAY_SECONDS, 0), MOST_DAYS)


def memory_key(person: bytes) -> int:
    return int.from_bytes(person[:8], "big") or 1  # 0 is the table's empty slot


def memory_digest(digest: bytes) -> int:
    return int.from_bytes(digest[: DIGEST_BITS // 8], "big")


@functools.cache
def _due_after(resync_after_days: int) -> tuple[int, ...]:
    """Days after which a person is sent again, by the low 16 bits of their key (the same every
    run): spread over the second half of resync_after_days. Worked out once, not per profile."""
    return tuple(max(1, math.ceil(resync_after_days * (1 - share / 0x10000 / 2))) for share in range(0x10000))


class Known:
    """What the ledger holds for the run's lists, read once at the start; never written during the run."""

    def __init__(self, resync_after_days: int, today: int, *, full_refresh: bool = False) -> None:
        self._today = today
        self._full_refresh = full_refresh
        self._lists: dict[str, HashTable] = {}
        self._due_after = _due_after(resync_after_days)

    def load(self, list_id: str, expected: int, chunks: Iterable[list[tuple[bytes, bytes, int]]]) -> None:
        """Take in the list's rows as the ledger holds them: (person, digest, confirmed_at).

        The loop is written out (no call per row; the keys are :func:`memory_key` and
        :func:`memory_digest`): it runs for every person of every list at the start of every run.
        A confirmation dated after today (a clock that was wrong) or before 2020 counts as
        long ago, so that person is due at once. A value of the wrong kind raises TypeError,
        ValueError or OverflowError.
        """
        table = self._lists[list_id] = HashTable(with_values=True, expected=expected)
        store, number = table.setdefault, int.from_bytes
        epoch, day, today, digest_bytes = EPOCH_SECONDS, DAY_SECONDS, self._today, DIGEST_BITS // 8
        for chunk in chunks:
            for person, digest, confirmed_at in chunk:
                confirmed_day = (int(confirmed_at) - epoch) // day
                if not 0 <= confirmed_day <= today:
                    confirmed_day = 0
                store(
                    number(person[:8], "big") or 1,
                    (number(digest[:digest_bytes], "big") << 16) | confirmed_day,
                )

    def send_all(self) -> None:
        """Every profile is due this run, as with full_refresh (before the lists are loaded)."""
        self._full_refresh = True

    def size(self, list_id: str) -> int:
        table = self._lists.get(list_id)
        return len(table) if table is not None else 0

    def loaded(self, list_id: str) -> bool:
        """Whether the list's people were read (not a list the ledger cannot tell is the one it knows)."""
        return list_id in self._lists

    def holds(self, list_id: str, person: bytes) -> bool:
        table = self._lists.get(list_id)
        return table is not None and memory_key(person) in table

    def verdict(self, list_id: str, person: bytes, digest: bytes) -> Verdict:
        table = self._lists.get(list_id)
        if table is None:
            return Verdict.NEW
        key = memory_key(person)
        value = table.get(key)
        if value is None:
            return Verdict.NEW
        if value >> 16 != memory_digest(digest):
            return Verdict.CHANGED
        if self._full_refresh or self._today - (value & 0xFFFF) >= self._due_after[key & 0xFFFF]:
            return Verdict.DUE
        return Verdict.UNCHANGED
