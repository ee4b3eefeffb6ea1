"""The ledger in memory: new, changed, due again or unchanged, and when each person falls due."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from target_klaviyo.ledger.digest import digest_of, person_of
from target_klaviyo.ledger.known import DAY_SECONDS, EPOCH_SECONDS, Known, Verdict, day_number

TODAY = day_number(1_800_000_000)


def confirmed(table: Known, person: bytes, digest: bytes, day: int) -> None:
    """The ledger holds this person of list L1, confirmed on that day."""
    table.load("L1", 1, [[(person, digest, EPOCH_SECONDS + day * DAY_SECONDS + 3_600)]])


def known(resync: int = 7, *, full_refresh: bool = False) -> Known:
    table = Known(resync, TODAY, full_refresh=full_refresh)
    confirmed(table, person_of("ada@example.com"), digest_of(b'{"a":1}', None), TODAY - 1)
    return table


def test_verdicts() -> None:
    table = known()
    ada, same, other = person_of("ada@example.com"), digest_of(b'{"a":1}', None), digest_of(b'{"a":2}', None)
    assert table.verdict("L1", ada, same) is Verdict.UNCHANGED
    assert table.verdict("L1", ada, other) is Verdict.CHANGED
    assert table.verdict("L1", person_of("bob@example.com"), same) is Verdict.NEW
    assert table.verdict("L2", ada, same) is Verdict.NEW  # each list is its own
    assert known(full_refresh=True).verdict("L1", ada, same) is Verdict.DUE


def test_who_it_holds_is_known_only_for_lists_it_read() -> None:
    """mirror_scope synced removes only people of a list the ledger read this run."""
    table = known()
    assert table.loaded("L1")
    assert table.holds("L1", person_of("ada@example.com"))
    assert not table.holds("L1", person_of("bob@example.com"))
    assert not table.loaded("L2")
    assert not table.holds("L2", person_of("ada@example.com"))


@given(st.emails(), st.integers(min_value=1, max_value=365))
def test_everyone_falls_due_in_the_second_half_of_resync_after_days(email: str, resync: int) -> None:
    person, digest = person_of(email.lower()), digest_of(b"{}", None)
    due = []
    for age in range(resync + 2):
        table = Known(resync, TODAY)
        confirmed(table, person, digest, TODAY - age)
        due.append(table.verdict("L1", person, digest) is Verdict.DUE)
    first = due.index(True)
    assert all(due[first:])  # once due, due
    assert first == first_due_age(person, resync) <= resync  # never left longer than resync_after_days
    assert 2 * first >= resync  # and never in its first half


def first_due_age(person: bytes, resync: int) -> int:
    digest = digest_of(b"{}", None)
    for age in range(resync + 1):
        table = Known(resync, TODAY)
        confirmed(table, person, digest, TODAY - age)
        if table.verdict("L1", person, digest) is Verdict.DUE:
            return age
    raise AssertionError("never due")


def test_people_fall_due_on_days_of_their_own() -> None:
    days = {first_due_age(person_of(f"p{n}@example.com"), 30) for n in range(500)}
    assert days == set(range(16, 31))  # spread over the whole second half, not all on one day


@given(st.integers(min_value=0, max_value=2**37))
def test_a_day_is_the_utc_calendar_day(moment: int) -> None:
    day = (dt.datetime.fromtimestamp(moment, dt.timezone.utc).date() - dt.date(2020, 1, 1)).days
    assert day_number(moment) == min(max(day, 0), 2**16 - 1)


def test_rows_read_in_chunks_are_all_known() -> None:
    people = [(person_of(f"p{n}@example.com"), digest_of(str(n).encode(), None)) for n in range(2_500)]
    rows = [(person, digest, EPOCH_SECONDS + (TODAY - 1) * DAY_SECONDS) for person, digest in people]
    table = Known(7, TODAY)
    table.load("L1", 10, [rows[start : start + 1_000] for start in range(0, len(rows), 1_000)])
    assert table.size("L1") == 2_500  # more than expected: the table grows
    assert all(table.verdict("L1", person, digest) is Verdict.UNCHANGED for person, digest in people)
    assert table.verdict("L1", people[0][0], people[1][1]) is Verdict.CHANGED
