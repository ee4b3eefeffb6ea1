"""The ledger's database on SQLite and PostgreSQL alike: format, account, lists, locks, rows."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, text

from target_klaviyo.errors import LedgerError
from target_klaviyo.ledger import store as store_module
from target_klaviyo.ledger.store import FORMAT, STALE_AFTER_SECONDS, LedgerStore
from target_klaviyo.settings.settings import LedgerPlace, Settings

URL = "https://a.klaviyo.com"


def place_of(overrides: dict[str, str]) -> LedgerPlace:
    settings = Settings.from_config({"api_key": "pk_x", "list_id": "L1", **overrides})
    assert settings.ledger is not None
    return settings.ledger


def all_rows(store: LedgerStore, list_id: str) -> list[tuple[bytes, bytes, int]]:
    rows = [tuple(found) for chunk in store.rows(list_id) for found in chunk]
    assert len(rows) == store.count(list_id)
    return rows  # type: ignore[return-value]


def row(n: int, digest: int = 0, at: int = 1_700_000_000) -> tuple[bytes, bytes, int, str]:
    return n.to_bytes(16, "big"), digest.to_bytes(16, "big"), at, "customers"


def test_a_new_ledger_keeps_what_was_confirmed(ledger_place: Callable[[], dict[str, str]]) -> None:
    place = place_of(ledger_place())
    store = LedgerStore(place, URL, read_only=False)
    assert store.bind_list("L1", "2026-01-01T00:00:00+00:00") is False
    store.confirm("L1", [row(1), row(2)], [], 0)
    store.confirm("L1", [row(2, digest=9, at=1_800_000_000)], [], 0)  # the later confirmation wins
    store.confirm("L2", [row(1)], [], 0)
    store.close()
    again = LedgerStore(place, URL, read_only=True)
    assert sorted(all_rows(again, "L1")) == [
        (row(1)[0], row(1)[1], 1_700_000_000),
        (row(2)[0], row(2, 9)[1], 1_800_000_000),
    ]
    assert len(all_rows(again, "L2")) == 1
    again.close()


def test_a_list_created_again_starts_empty(ledger_place: Callable[[], dict[str, str]]) -> None:
    store = LedgerStore(place_of(ledger_place()), URL, read_only=False)
    store.bind_list("L1", "2026-01-01T00:00:00+00:00")
    store.confirm("L1", [row(1)], [], 0)
    assert store.bind_list("L1", "2026-01-01T00:00:00+00:00") is False
    assert len(all_rows(store, "L1")) == 1
    assert store.bind_list("L1", "2026-06-01T00:00:00+00:00") is True
    assert all_rows(store, "L1") == []
    store.close()


def test_another_accounts_ledger_is_one_sentence(ledger_place: Callable[[], dict[str, str]]) -> None:
    place = place_of(ledger_place())
    LedgerStore(place, URL, read_only=False).close()
    with pytest.raises(LedgerError, match=r"belongs to another Klaviyo account URL, not api_url http://127"):
        LedgerStore(place, "http://127.0.0.1:9999", read_only=False)


def test_a_newer_format_is_refused(ledger_place: Callable[[], dict[str, str]]) -> None:
    place = place_of(ledger_place())
    LedgerStore(place, URL, read_only=False).close()
    engine = create_engine(place.url)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE target_klaviyo_ledger_meta SET value = :v WHERE name = 'format'"),
            {"v": str(FORMAT + 1)},
        )
    engine.dispose()
    with pytest.raises(LedgerError, match="written by a newer target-klaviyo"):
        LedgerStore(place, URL, read_only=False)


def test_missing_tables_are_a_damaged_ledger(ledger_place: Callable[[], dict[str, str]]) -> None:
    place = place_of(ledger_place())
    LedgerStore(place, URL, read_only=False).close()
    engine = create_engine(place.url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE target_klaviyo_ledger_lists"))
    engine.dispose()
    with pytest.raises(LedgerError, match="not a target-klaviyo ledger, or is damaged"):
        LedgerStore(place, URL, read_only=True)


def test_a_write_the_database_refuses_is_one_sentence(ledger_place: Callable[[], dict[str, str]]) -> None:
    """Rows are written with the driver's own cursor: its errors, not only SQLAlchemy's, are the
    ledger's sentence (here a table dropped under the run, on each backend)."""
    place = place_of(ledger_place())
    store = LedgerStore(place, URL, read_only=False)
    engine = create_engine(place.url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE target_klaviyo_ledger_identifiers"))
        connection.execute(text("DROP TABLE target_klaviyo_ledger_profiles"))
    engine.dispose()
    person = bytes([1]) * 16
    with pytest.raises(LedgerError, match=r"^The ledger \(.*\) cannot be written: .+\.$"):
        store.claim([(person, "phone_number", bytes([7]) * 16)])
    with pytest.raises(LedgerError, match=r"^The ledger \(.*\) cannot be written: .+\.$"):
        store.confirm("L1", [row(1)], [], 0)
    store.close()


def identifiers(store: LedgerStore) -> list[tuple[bytes, bytes]]:
    return sorted(tuple(found) for chunk in store.identifiers() for found in chunk)  # type: ignore[misc]


def test_a_person_holds_every_value_given_until_a_confirmed_job_gives_another_a_day_later(
    ledger_place: Callable[[], dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claims are account-wide. A job Klaviyo accepted adds its values (it may never be confirmed, yet
    Klaviyo may apply it); a confirmed job drops the person's other values of that attribute only once
    a day has passed since they were last given, when no job that gave them can still be running."""
    now = [1_800_000_000.0]
    monkeypatch.setattr(store_module.time, "time", lambda: now[0])
    store = LedgerStore(place_of(ledger_place()), URL, read_only=False)
    ada, bob = bytes([1]) * 16, bytes([2]) * 16
    x, y, z = bytes([7]) * 16, bytes([8]) * 16, bytes([9]) * 16
    store.claim([(ada, "phone_number", x), (ada, "external_id", z)])
    accepted = store.claim([(ada, "phone_number", y)])  # accepted, not confirmed: Klaviyo may still apply it
    assert identifiers(store) == sorted([(x, ada), (y, ada), (z, ada)])
    store.confirm("L1", [row(1)], [(ada, "phone_number", y)], accepted)  # the same day: x may still be given
    assert identifiers(store) == sorted([(x, ada), (y, ada), (z, ada)])
    now[0] += STALE_AFTER_SECONDS + 1
    store.confirm("L1", [row(1)], [(ada, "phone_number", y)], accepted)  # a job of that day: still
    assert identifiers(store) == sorted([(x, ada), (y, ada), (z, ada)])
    accepted = store.claim([(ada, "phone_number", y)])  # a job accepted a day later gives y again
    store.confirm("L1", [row(1)], [(ada, "phone_number", y)], accepted)
    store.claim([(bob, "phone_number", x)])
    assert identifiers(store) == sorted([(y, ada), (z, ada), (x, bob)])
    store.close()


def test_a_ledger_without_the_identifiers_table_is_given_it_and_forgets_its_people(
    ledger_place: Callable[[], dict[str, str]],
) -> None:
    """Unchanged people are not checked for values someone else holds, so the table must hold all of
    theirs: a ledger from before it sends everyone once more."""
    place = place_of(ledger_place())
    old = LedgerStore(place, URL, read_only=False)
    old.confirm("L1", [row(1), row(2)], [], 0)
    old.close()
    engine = create_engine(place.url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE target_klaviyo_ledger_identifiers"))
    engine.dispose()
    dry = LedgerStore(place, URL, read_only=True)  # a dry run creates nothing, and reads no claims
    assert dry.identifiers_missing
    assert identifiers(dry) == []
    assert len(all_rows(dry, "L1")) == 2
    dry.close()
    store = LedgerStore(place, URL, read_only=False)
    assert not store.identifiers_missing
    assert all_rows(store, "L1") == []
    store.claim([(bytes(16), "phone_number", bytes([7]) * 16)])
    assert len(identifiers(store)) == 1
    store.close()


def test_runs_that_send_phone_numbers_go_one_after_another(
    ledger_place: Callable[[], dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    place = place_of(ledger_place())
    first = LedgerStore(place, URL, read_only=False)
    first.lock_identifiers()
    monkeypatch.setattr(store_module, "IDENTIFIERS_WAIT_SECONDS", 1)
    second = LedgerStore(place, URL, read_only=False)
    with pytest.raises(LedgerError, match="sends phone numbers or external ids held this ledger"):
        second.lock_identifiers()
    first.close()
    second.lock_identifiers()
    second.close()


def test_a_second_run_on_a_list_is_refused_until_the_first_ends(
    ledger_place: Callable[[], dict[str, str]],
) -> None:
    place = place_of(ledger_place())
    first = LedgerStore(place, URL, read_only=False)
    first.lock("L1")
    first.lock("L2")
    other = LedgerStore(place, URL, read_only=False)
    other.lock("L3")  # another list: no wait
    second = LedgerStore(place, URL, read_only=False)
    with pytest.raises(LedgerError, match=r"List L2's ledger is in use by another run of target-klaviyo"):
        second.lock("L2")
    second.close()  # a refused lock leaves the store open: the run closes it as it ends
    first.close()
    third = LedgerStore(place, URL, read_only=False)
    third.lock("L1")
    third.lock("L2")
    third.close()
    other.close()


def test_a_file_that_is_not_a_database_is_one_sentence(tmp_path) -> None:
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"this is not a database, just text of some kind\n" * 100)
    with pytest.raises(LedgerError, match=r"cannot be read: file is not a database; move it away"):
        LedgerStore(place_of({"ledger_path": str(path)}), URL, read_only=False)


def test_a_dry_run_creates_nothing(tmp_path) -> None:
    path = tmp_path / "deep" / "ledger.sqlite"
    store = LedgerStore(place_of({"ledger_path": str(path)}), URL, read_only=True)
    assert store.empty
    assert all_rows(store, "L1") == []
    store.close()
    assert not (tmp_path / "deep").exists()


def test_the_ledger_file_and_its_folder_are_private(tmp_path) -> None:
    path = tmp_path / "state" / "ledger.sqlite"
    LedgerStore(place_of({"ledger_path": str(path)}), URL, read_only=False).close()
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_ledger_url_is_never_shown(postgres_database: Callable[[], str]) -> None:
    url = postgres_database().replace("target_klaviyo_test@", "target_klaviyo_test_wrong@", 1)
    place = place_of({"ledger_url": url})
    with pytest.raises(LedgerError) as raised:
        LedgerStore(place, URL, read_only=False)
    assert "ledger_url" in str(raised.value)
    assert "target_klaviyo_test_wrong" not in str(raised.value).replace(
        'user "target_klaviyo_test_wrong"', ""
    )
    assert ":target_klaviyo_test@" not in str(raised.value)


def test_a_database_that_refuses_new_tables_is_one_sentence(
    postgres_database: Callable[[], str],
) -> None:
    # A read-only session stands for a role without the right to create tables.
    place = place_of({"ledger_url": postgres_database() + "?options=-cdefault_transaction_read_only%3Don"})
    with pytest.raises(
        LedgerError, match=r"^The ledger's tables cannot be created \(ledger_url\): .*read-only"
    ) as raised:
        LedgerStore(place, URL, read_only=False)
    assert str(raised.value).endswith("or set use_ledger to false.")
    assert "\n" not in str(raised.value)


def test_a_ledger_that_fails_while_read_is_one_sentence(ledger_place: Callable[[], dict[str, str]]) -> None:
    place = place_of(ledger_place())
    store = LedgerStore(place, URL, read_only=False)
    store.confirm("L1", [row(1)], [], 0)
    engine = create_engine(place.url)
    with engine.begin() as connection:  # another hand drops the table the run reads
        connection.execute(text("DROP TABLE target_klaviyo_ledger_profiles"))
    engine.dispose()
    with pytest.raises(LedgerError, match=r"^The ledger \(ledger_(path|url).*\) cannot be read: .*\.$"):
        all_rows(store, "L1")
    store.close()


def test_profile_ids_and_the_members_read_are_kept_per_list(
    ledger_place: Callable[[], dict[str, str]],
) -> None:
    place = place_of(ledger_place())
    store = LedgerStore(place, URL, read_only=False)
    store.bind_list("L1", "2026-01-01T00:00:00+00:00")
    store.confirm("L1", [row(1), row(2)], [], 0)
    assert store.read_through("L1") is None, "never read: the first mirror run reads the list whole"
    early, late = 1_600_000_000, 1_750_000_000  # profiles created before and after the confirmations
    store.learn(
        "L1", [(row(1)[0], "01ABC", early), (row(9)[0], "01NOT", early)], 1_700_000_000
    )  # 9: not in it
    store.learn("L1", [(row(2)[0], "01LATE", late)], None)  # created after Klaviyo confirmed person 2
    store.confirm("L1", [row(1, digest=5)], [], 0)  # a later confirmation keeps the id
    store.learn("L1", [(row(1)[0], "01OTHER", early)], None)  # and a later read never replaces it
    assert sorted(tuple(found) for chunk in store.mirror_rows("L1") for found in chunk) == [
        (row(1)[0], "customers", "01ABC", 1_700_000_000),
        (row(2)[0], "customers", None, 1_700_000_000),
    ]
    assert store.read_through("L1") == 1_700_000_000
    assert store.bind_list("L1", "2026-06-01T00:00:00+00:00") is True
    assert store.read_through("L1") is None, "a list created again is read whole again"
    store.close()


def test_a_ledger_without_the_profile_id_columns_is_given_them(
    ledger_place: Callable[[], dict[str, str]],
) -> None:
    place = place_of(ledger_place())
    old = LedgerStore(place, URL, read_only=False)
    old.bind_list("L1", "2026-01-01T00:00:00+00:00")
    old.confirm("L1", [row(1)], [], 0)
    old.close()
    engine = create_engine(place.url)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE target_klaviyo_ledger_profiles DROP COLUMN profile_id"))
        connection.execute(text("ALTER TABLE target_klaviyo_ledger_lists DROP COLUMN members_read_through"))
    engine.dispose()
    dry = LedgerStore(place, URL, read_only=True)  # a dry run changes nothing: no id is known
    assert dry.ids_missing
    assert [tuple(found) for chunk in dry.mirror_rows("L1") for found in chunk] == [
        (row(1)[0], "customers", None, 1_700_000_000)
    ]
    assert dry.read_through("L1") is None
    dry.close()
    store = LedgerStore(place, URL, read_only=False)
    assert not store.ids_missing
    assert len(all_rows(store, "L1")) == 1, "nobody is forgotten"
    store.learn("L1", [(row(1)[0], "01ABC", 1_600_000_000)], 1_700_000_000)
    assert [tuple(found) for chunk in store.mirror_rows("L1") for found in chunk] == [
        (row(1)[0], "customers", "01ABC", 1_700_000_000)
    ]
    store.close()


def set_read_through(place: LedgerPlace, value: str) -> LedgerStore:
    """A ledger whose list L1 says its members were read through ``value`` (SQL), opened to read."""
    store = LedgerStore(place, URL, read_only=False)
    store.bind_list("L1", "2026-01-01T00:00:00+00:00")
    store.close()
    engine = create_engine(place.url)
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE target_klaviyo_ledger_lists SET members_read_through = {value}"))
    engine.dispose()
    return LedgerStore(place, URL, read_only=True)


@pytest.mark.parametrize("value", ["99999999999999", "-5"])
def test_a_members_read_through_that_is_not_a_past_time_reads_the_list_whole(
    ledger_place: Callable[[], dict[str, str]], value: str
) -> None:
    """Found by the ninth hostile review: a time past year 9999 ended in a traceback."""
    store = set_read_through(place_of(ledger_place()), value)
    assert store.read_through("L1") is None
    store.close()


def test_a_members_read_through_that_is_not_a_time_is_a_damaged_ledger(tmp_path) -> None:
    """SQLite keeps a text in an integer column; PostgreSQL's types would refuse it."""
    store = set_read_through(place_of({"ledger_path": str(tmp_path / "ledger.sqlite")}), "'soon'")
    with pytest.raises(LedgerError, match=r"members_read_through is not a time"):
        store.read_through("L1")
    store.close()
