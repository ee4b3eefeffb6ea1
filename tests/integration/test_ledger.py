"""The ledger against the sandbox, through the real CLI, on SQLite and on PostgreSQL.

Each test runs the same runs on both backends (the ``ledger_place`` fixture), so the two
give the same results. What was sent is read from the import jobs the sandbox received.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from support import (
    API_KEY,
    LIST_ID,
    TARGET_BIN,
    apply_plan,
    base_config,
    bulk_jobs,
    customers,
    environment_without_settings,
    members,
    record,
    run_cli,
    schema,
    singer_text,
    state,
)

Place = Callable[[], dict[str, str]]


def ledger_config(server: Any, place: dict[str, str], **overrides: Any) -> dict[str, Any]:
    config = base_config(server, **place, **overrides)
    if "ledger_url" in place:
        del config["ledger_path"]
    return config


def sent(server: Any, since: int = 0) -> list[str]:
    """The emails of every profile the sandbox accepted in an import job, after the first ``since`` jobs."""
    return [
        profile["attributes"]["email"]
        for job in bulk_jobs(server)[since:]
        if job.status == 202
        for profile in job.body["data"]["attributes"]["profiles"]["data"]
    ]


def ledger_rows(config: dict[str, Any]) -> list[tuple[str, int]]:
    """(list_id, confirmed_at) of every person in the ledger."""
    url = config.get("ledger_url") or f"sqlite:///{config['ledger_path']}"
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT list_id, confirmed_at FROM target_klaviyo_ledger_profiles")
        ).all()
    engine.dispose()
    return [(list_id, at) for list_id, at in rows]


def report(tmp_path) -> dict[str, Any]:
    return json.loads((tmp_path / "report.json").read_text())


def run(config: dict[str, Any], messages: list[dict], tmp_path, **kwargs: Any) -> Any:
    result = run_cli({**config, "report_path": str(tmp_path / "report.json")}, messages, tmp_path, **kwargs)
    assert result.returncode == 0, result.stderr
    return result


def test_an_unchanged_segment_sends_nothing_and_a_change_sends_exactly_it(
    sandbox, ledger_place: Place, tmp_path
):
    config = ledger_config(sandbox, ledger_place())
    segment = [schema(), *customers(30), state(30)]
    run(config, segment, tmp_path)
    assert len(sent(sandbox)) == 30
    jobs = len(bulk_jobs(sandbox))

    again = run(config, segment, tmp_path)
    assert len(bulk_jobs(sandbox)) == jobs  # not one import job
    assert report(tmp_path)["counts"]["unchanged"] == 30
    assert report(tmp_path)["lists"][LIST_ID]["ledger"] == {"new": 0, "changed": 0, "due": 0}
    assert (
        "30 records read = 0 exported, 30 unchanged (not sent: Klaviyo confirmed them before)" in again.stderr
    )
    assert again.states[-1] == state(30)["value"]

    changed = [schema(), *customers(30), state(30)]
    changed[4]["record"]["first_name"] = "Renamed"  # person3
    changed.insert(-1, record(id=99, email="new@example.com", first_name="New"))
    run(config, changed, tmp_path)
    assert sorted(sent(sandbox, jobs)) == ["new@example.com", "person3@example.com"]
    assert members(sandbox)["person3@example.com"]["properties"]["first_name"] == "Renamed"
    assert report(tmp_path)["lists"][LIST_ID]["ledger"] == {"new": 1, "changed": 1, "due": 0}


def test_a_change_of_mapping_or_custom_properties_sends_the_profiles_it_changes(
    sandbox, ledger_place: Place, tmp_path
):
    config = ledger_config(sandbox, ledger_place())
    segment = [schema(), *customers(5), record(id=9, email="planned@example.com", plan="gold"), state(6)]
    run(config, segment, tmp_path)
    jobs = len(bulk_jobs(sandbox))
    # Only the one profile with a plan changes when plan is no longer a custom property.
    run({**config, "custom_properties": ["id", "first_name"]}, segment, tmp_path)
    assert sent(sandbox, jobs) == ["planned@example.com"]
    jobs = len(bulk_jobs(sandbox))
    run({**config, "custom_properties": ["id", "first_name"]}, segment, tmp_path)
    assert sent(sandbox, jobs) == []
    # Mapping first_name as a Klaviyo attribute changes everyone who has one.
    mapped = {
        **config,
        "custom_properties": ["id", "first_name"],
        "property_mapping": {"first_name": "first_name"},
    }
    run(mapped, segment, tmp_path)
    assert sorted(sent(sandbox, jobs)) == [f"person{i}@example.com" for i in range(5)]


def test_a_later_record_of_the_same_person_decides(sandbox, ledger_place: Place, tmp_path):
    config = ledger_config(sandbox, ledger_place())
    twice = [
        schema(),
        record(id=1, email="ada@example.com", first_name="Old"),
        record(id=1, email="ADA@example.com", first_name="Ada"),
        state(1),
    ]
    run(config, twice, tmp_path)
    jobs = len(bulk_jobs(sandbox))
    run(config, twice, tmp_path)  # the earlier record differs from the ledger, the later one does not
    assert sent(sandbox, jobs) == []
    assert report(tmp_path)["counts"]["deduplicated"] == 1
    assert report(tmp_path)["counts"]["unchanged"] == 1
    assert report(tmp_path)["counts"]["unaccounted"] == 0


def test_profiles_klaviyo_refused_never_enter_the_ledger(sandbox_factory, ledger_place: Place, tmp_path):
    server = sandbox_factory(fail_domains=("bounce.example.net",), refuse_domains=("refused.example.org",))
    config = ledger_config(server, ledger_place())
    segment = [
        schema(),
        *customers(3),
        record(id=7, email="failed@bounce.example.net"),
        record(id=8, email="refused@refused.example.org"),
        state(5),
    ]
    run(config, segment, tmp_path)
    assert len(ledger_rows(config)) == 3
    jobs = len(bulk_jobs(server))
    run(config, segment, tmp_path)  # both are sent again (the refused one is refused again)
    assert sent(server, jobs) == ["failed@bounce.example.net"]
    assert report(tmp_path)["counts"]["rejected_by_reason"] == {"rejected_by_klaviyo": 2}
    assert report(tmp_path)["counts"]["unchanged"] == 3
    assert len(ledger_rows(config)) == 3


@pytest.mark.parametrize("kill_after_states", [1, 3])
def test_sigkill_then_a_rerun_loses_nothing_and_resends_at_most_what_was_in_flight(
    sandbox_factory, live, ledger_place: Place, tmp_path, kill_after_states
):
    batch, total, in_flight = 400, 4000, 2
    server = sandbox_factory(job_delay=0.3)
    config = ledger_config(
        server, ledger_place(), batch_size_rows=batch, max_jobs_in_flight=in_flight, max_profiles_per_run=0
    )
    messages = [schema()]
    for position in range(0, total, batch):
        messages += [*customers(batch, start=position), state(position + batch)]
    first = live(config)
    first.send(messages[: len(messages) * 2 // 3])
    first.wait_for(lambda: len(first.states) >= kill_after_states)
    first.process.send_signal(signal.SIGKILL)
    first.wait()
    sent_first = set(sent(server))
    before = len(bulk_jobs(server))

    run(config, messages, tmp_path)  # the whole segment again, as a full-table tap sends it
    sent_again = set(sent(server, before)) & sent_first
    assert len(sent_again) <= in_flight * batch
    assert len(members(server)) == total
    assert len(ledger_rows(config)) == total


def test_resync_after_days_sends_again_who_was_not_confirmed_for_that_long(
    sandbox, ledger_place: Place, tmp_path
):
    config = ledger_config(sandbox, ledger_place(), resync_after_days=2)
    segment = [schema(), *customers(4), state(4)]
    run(config, segment, tmp_path)
    url = config.get("ledger_url") or f"sqlite:///{config['ledger_path']}"
    engine = create_engine(url)
    with engine.begin() as connection:  # person0 and person1 were confirmed three days ago
        rows = connection.execute(text("SELECT person FROM target_klaviyo_ledger_profiles")).all()
        for (person,) in rows[:2]:
            connection.execute(
                text("UPDATE target_klaviyo_ledger_profiles SET confirmed_at = :at WHERE person = :p"),
                {"at": int(time.time()) - 3 * 86400, "p": person},
            )
    engine.dispose()
    jobs = len(bulk_jobs(sandbox))
    run(config, segment, tmp_path)
    assert len(sent(sandbox, jobs)) == 2
    assert report(tmp_path)["lists"][LIST_ID]["ledger"]["due"] == 2
    jobs = len(bulk_jobs(sandbox))
    run(config, segment, tmp_path)  # confirmed again today: unchanged
    assert sent(sandbox, jobs) == []


def test_full_refresh_sends_everyone_once_and_use_ledger_false_keeps_none(
    sandbox, ledger_place: Place, tmp_path
):
    config = ledger_config(sandbox, ledger_place())
    segment = [schema(), *customers(6), state(6)]
    run(config, segment, tmp_path)
    jobs = len(bulk_jobs(sandbox))
    run({**config, "full_refresh": True}, segment, tmp_path)
    assert len(sent(sandbox, jobs)) == 6
    jobs = len(bulk_jobs(sandbox))
    # For one run, from the environment: Meltano passes TARGET_KLAVIYO_FULL_REFRESH as the setting;
    # in a shell pipeline, --config ENV reads it beside the config file.
    (tmp_path / "config.json").write_text(
        json.dumps({**config, "report_path": str(tmp_path / "report.json")})
    )
    once = subprocess.run(
        [str(TARGET_BIN), "--config", str(tmp_path / "config.json"), "--config", "ENV"],
        input=singer_text(segment).encode(),
        capture_output=True,
        env={**environment_without_settings(), "TARGET_KLAVIYO_FULL_REFRESH": "true"},
        timeout=120,
        check=False,
    )
    assert once.returncode == 0, once.stderr.decode()
    assert len(sent(sandbox, jobs)) == 6
    jobs = len(bulk_jobs(sandbox))
    run(config, segment, tmp_path)
    assert sent(sandbox, jobs) == []

    off = {**base_config(sandbox), "use_ledger": False, "ledger_path": str(tmp_path / "never.sqlite")}
    jobs = len(bulk_jobs(sandbox))
    run(off, segment, tmp_path)
    run(off, segment, tmp_path)
    assert len(sent(sandbox, jobs)) == 12
    assert not (tmp_path / "never.sqlite").exists()
    assert "unchanged" not in report(tmp_path)["lists"][LIST_ID]


def test_truncate_exports_a_large_segment_over_successive_runs(sandbox, ledger_place: Place, tmp_path):
    config = ledger_config(sandbox, ledger_place(), max_profiles_per_run=10, on_limit_exceeded="truncate")
    segment = [schema(), *customers(25), state(25)]
    seen: list[list[str]] = []
    for _ in range(3):
        jobs = len(bulk_jobs(sandbox))
        run(config, segment, tmp_path)
        seen.append(sent(sandbox, jobs))
    assert [len(batch) for batch in seen] == [10, 10, 5]
    assert sorted(email for batch in seen for email in batch) == sorted(
        f"person{i}@example.com" for i in range(25)
    )
    jobs = len(bulk_jobs(sandbox))
    run(config, segment, tmp_path)
    assert sent(sandbox, jobs) == []


def test_a_second_run_on_the_same_list_is_refused_in_one_sentence(
    sandbox, live, ledger_place: Place, tmp_path
):
    config = ledger_config(sandbox, ledger_place())
    first = live(config)
    first.send([schema(), *customers(2)])
    first.wait_for(lambda: "people of list" in first.stderr)
    second = run_cli(config, [schema(), *customers(2)], tmp_path)
    assert second.returncode == 1
    assert (
        f"List {LIST_ID}'s ledger is in use by another run of target-klaviyo"
        in second.stderr.splitlines()[-1]
    )
    assert "Traceback" not in second.stderr
    first.close_input()
    assert first.wait() == 0, first.stderr


def test_two_runs_whose_settings_name_the_same_lists_but_send_to_different_ones_run_at_once(
    sandbox_factory, live, ledger_place: Place, tmp_path
):
    """Two loaders of one Meltano project inherit one stream_lists (seen in CI): only the lists a
    run sends to are locked, when their stream arrives."""
    server = sandbox_factory(lists=(LIST_ID, "VIPS01"))
    config = ledger_config(server, ledger_place(), stream_lists={"vips": "VIPS01"})
    first = live(config)
    first.send([schema(), *customers(2)])  # customers -> list_id
    first.wait_for(lambda: "people of list" in first.stderr)
    vips = [schema("vips"), *(record("vips", id=i, email=f"vip{i}@example.com") for i in range(2))]
    second = run_cli(config, vips, tmp_path)
    assert second.returncode == 0, second.stderr
    assert set(members(server, "VIPS01")) == {"vip0@example.com", "vip1@example.com"}
    first.close_input()
    assert first.wait() == 0, first.stderr


def test_a_dry_run_reads_the_ledger_and_never_writes_it(sandbox, ledger_place: Place, tmp_path):
    config = ledger_config(sandbox, ledger_place())
    run(config, [schema(), *customers(4), state(4)], tmp_path)
    rows = ledger_rows(config)
    changed = [schema(), *customers(5), state(5)]
    changed[1]["record"]["first_name"] = "Changed"
    result = run({**config, "dry_run": True}, changed, tmp_path)
    assert (
        f"Dry run, list {LIST_ID}: would add 1, update 1 (0 of them unchanged but due again), leave 3 unchanged."
        in (result.stderr)
    )
    assert ledger_rows(config) == rows
    assert sent(sandbox, 1) == []


def test_a_dry_run_without_a_ledger_creates_none(sandbox, tmp_path):
    path = tmp_path / "state" / "ledger.sqlite"
    result = run(
        {**base_config(sandbox), "ledger_path": str(path), "dry_run": True},
        [schema(), *customers(2)],
        tmp_path,
    )
    assert "would add 2, update 0" in result.stderr
    assert not path.parent.exists()


def test_a_list_created_again_is_sent_whole(sandbox, ledger_place: Place, tmp_path):
    config = ledger_config(sandbox, ledger_place())
    segment = [schema(), *customers(3), state(3)]
    run(config, segment, tmp_path)
    store = sandbox.store
    with store._database.transaction() as db:  # the list deleted and made again under its id
        db.execute("UPDATE lists SET created = ? WHERE id = ?", ("2030-01-01T00:00:00+00:00", LIST_ID))
        db.execute("DELETE FROM memberships WHERE list_id = ?", (LIST_ID,))
    jobs = len(bulk_jobs(sandbox))
    result = run(config, segment, tmp_path)
    assert len(sent(sandbox, jobs)) == 3
    assert "was created again since the ledger last saw it" in result.stderr
    assert len(members(sandbox)) == 3


def test_a_run_that_cannot_reach_klaviyo_creates_no_ledger(sandbox, tmp_path):
    """A typo in api_url, then the right one: the first run must not bind a ledger to the typo."""
    path = tmp_path / "ledger.sqlite"
    config = base_config(sandbox, ledger_path=str(path))
    wrong = run_cli({**config, "api_url": "http://127.0.0.1:9"}, [schema(), *customers(2)], tmp_path)
    assert wrong.returncode == 1
    assert "Cannot reach Klaviyo at api_url http://127.0.0.1:9" in wrong.stderr.splitlines()[-1]
    assert not path.exists()
    run(config, [schema(), *customers(2)], tmp_path)
    assert len(ledger_rows(config)) == 2


def test_an_unusable_ledger_is_one_sentence_before_any_record_is_sent(sandbox, tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all " * 200)
    result = run_cli(base_config(sandbox, ledger_path=str(garbage)), [schema(), *customers(2)], tmp_path)
    assert result.returncode == 1
    assert "cannot be read: file is not a database" in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert bulk_jobs(sandbox) == []

    theirs = tmp_path / "theirs.sqlite"
    run(base_config(sandbox, ledger_path=str(theirs)), [schema(), *customers(1)], tmp_path)
    with contextlib.closing(sqlite3.connect(theirs)) as db, db:
        db.execute(
            "UPDATE target_klaviyo_ledger_meta SET value = 'https://a.klaviyo.com' WHERE name = 'account_url'"
        )
    result = run_cli(base_config(sandbox, ledger_path=str(theirs)), [schema(), *customers(2)], tmp_path)
    assert result.returncode == 1
    assert "belongs to another Klaviyo account URL" in result.stderr.splitlines()[-1]
    assert API_KEY not in result.stderr


def test_mirror_counts_unchanged_profiles_as_confirmed(sandbox, ledger_place: Place, tmp_path):
    config = ledger_config(sandbox, ledger_place(), sync_mode="mirror", mirror_max_removal_fraction=1)
    activate = {"type": "ACTIVATE_VERSION", "stream": "customers", "version": 1}
    run(config, [schema(), activate, *customers(4)], tmp_path)
    result = run(config, [schema(), activate, *customers(3)], tmp_path)  # person3 left; the rest unchanged
    assert report(tmp_path)["lists"][LIST_ID]["mirror"]["to_remove"] == 1
    assert "Planned to remove 1 of the 4 members" in result.stderr


def test_who_a_mirror_plan_removes_is_sent_again_when_they_come_back(sandbox, ledger_place: Place, tmp_path):
    config = ledger_config(
        sandbox,
        ledger_place(),
        sync_mode="mirror",
        mirror_max_removal_fraction=1,
        mirror_plan_path=str(tmp_path / "plan" / "plan.json"),
    )
    activate = {"type": "ACTIVATE_VERSION", "stream": "customers", "version": 1}
    run(config, [schema(), activate, *customers(4)], tmp_path)
    run(config, [schema(), activate, *customers(3)], tmp_path)  # person3 left
    assert len(ledger_rows(config)) == 3, "the ledger forgot who the plan removes"
    applied = apply_plan(tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert "person3@example.com" not in members(sandbox)
    jobs = len(bulk_jobs(sandbox))
    run(config, [schema(), activate, *customers(4)], tmp_path)  # person3 is back, unchanged
    assert sent(sandbox, jobs) == ["person3@example.com"]
    assert "person3@example.com" in members(sandbox)


def test_a_member_removed_by_another_hand_is_sent_once_a_mirror_run_has_read_the_list(
    sandbox, ledger_place: Place, tmp_path
):
    """Found by the second hostile review of issue 16: a mirror run with use_ledger false, another
    ledger or a hand in Klaviyo removes someone; the ledger still holds them as confirmed. A run that
    reads the whole list sees it (mirror_scope synced reads only who joined since its last read)."""
    config = ledger_config(
        sandbox, ledger_place(), sync_mode="mirror", mirror_scope="list", mirror_max_removal_fraction=1
    )
    activate = {"type": "ACTIVATE_VERSION", "stream": "customers", "version": 1}
    segment = [schema(), activate, *customers(4)]
    run(config, segment, tmp_path)
    gone = [row["id"] for row in sandbox.store.members(LIST_ID, 0, 100)][3:]
    sandbox.store.remove_members(LIST_ID, gone)  # person3, removed by another hand
    assert "person3@example.com" not in members(sandbox)
    result = run(config, segment, tmp_path)
    assert "1 people the ledger held for list" in result.stderr
    assert len(ledger_rows(config)) == 3
    jobs = len(bulk_jobs(sandbox))
    run(config, segment, tmp_path)
    assert sent(sandbox, jobs) == ["person3@example.com"]
    assert "person3@example.com" in members(sandbox)


@pytest.mark.parametrize(
    ("column", "value"), [("confirmed_at", "'yesterday'"), ("digest", "42"), ("person", "'ada'")]
)
def test_a_ledger_row_of_the_wrong_kind_is_a_damaged_ledger(sandbox, tmp_path, column, value):
    """Found by the second hostile review of issue 16: these ended in a sentence blaming the input."""
    ledger = tmp_path / "ledger.sqlite"
    config = base_config(sandbox, ledger_path=str(ledger))
    run(config, [schema(), *customers(2)], tmp_path)
    with (
        contextlib.closing(sqlite3.connect(ledger)) as db,
        db,
    ):  # SQLite keeps whatever it is given; PostgreSQL's types would refuse
        db.execute(
            f"UPDATE target_klaviyo_ledger_profiles SET {column} = {value} "
            "WHERE person = (SELECT person FROM target_klaviyo_ledger_profiles LIMIT 1)"
        )
    jobs = len(bulk_jobs(sandbox))
    result = run_cli(config, [schema(), *customers(2)], tmp_path)
    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert f"is damaged (a row of list {LIST_ID} holds a value of the wrong kind)" in last
    assert "Traceback" not in result.stderr
    assert len(bulk_jobs(sandbox)) == jobs


def test_a_confirmation_dated_in_the_future_is_due_at_once(sandbox, ledger_place: Place, tmp_path):
    config = ledger_config(sandbox, ledger_place())
    segment = [schema(), *customers(3), state(3)]
    run(config, segment, tmp_path)
    engine = create_engine(config.get("ledger_url") or f"sqlite:///{config['ledger_path']}")
    with engine.begin() as connection:  # a clock that was a month ahead when person0 was confirmed
        person = connection.execute(text("SELECT person FROM target_klaviyo_ledger_profiles")).first()
        assert person is not None
        connection.execute(
            text("UPDATE target_klaviyo_ledger_profiles SET confirmed_at = :at WHERE person = :p"),
            {"at": int(time.time()) + 30 * 86400, "p": person[0]},
        )
    engine.dispose()
    jobs = len(bulk_jobs(sandbox))
    run(config, segment, tmp_path)
    assert len(sent(sandbox, jobs)) == 1
    assert report(tmp_path)["lists"][LIST_ID]["ledger"]["due"] == 1


# Phone numbers and external ids across runs (found by the third hostile review of issue 16)

IDENTIFIED = {
    "id": {"type": "integer"},
    "email": {"type": "string"},
    "phone": {"type": ["string", "null"]},
    "optin": {"type": ["boolean", "null"]},
    "optin_at": {"type": ["string", "null"]},
}
NUMBER = "+14155552671"


def identified_config(server: Any, place: dict[str, str], attribute: str) -> dict[str, Any]:
    return ledger_config(
        server,
        place,
        property_mapping={attribute: "phone"},
        consent_property="optin",
        consented_at_property="optin_at",
    )


def subscriptions(server: Any) -> list[str]:
    return [
        profile["attributes"]["email"]
        for r in server.recorded
        if r.method == "POST" and r.spec_path == "/api/profile-subscription-bulk-create-jobs"
        for profile in r.body["data"]["attributes"]["profiles"]["data"]
    ]


def consent_of(server: Any) -> dict[str, tuple[Any, Any]]:
    """Per member: their identifier attributes and their email marketing consent."""
    return {
        row["attributes"]["email"]: (
            row["attributes"].get("phone_number") or row["attributes"].get("external_id"),
            (row["email_marketing"] or {}).get("consent"),
        )
        for row in server.store.members(LIST_ID, 0, 1000)
    }


@pytest.mark.parametrize(
    ("attribute", "reason"), [("phone_number", "duplicate_phone"), ("external_id", "duplicate_external_id")]
)
def test_a_value_an_earlier_run_gave_another_person_is_left_out_so_no_unsubscribe_moves(
    sandbox, ledger_place: Place, tmp_path, attribute, reason
):
    """A consented in 2024 and unsubscribed in 2025; B then came with A's number. Without the ledger's
    identifiers, Klaviyo renamed A's profile to B (A's unsubscribe with it), and A's next record was
    subscribed with the 2024 consent."""
    config = identified_config(sandbox, ledger_place(), attribute)
    shape = schema(properties=IDENTIFIED)
    consented = {"optin": True, "optin_at": "2024-01-01T00:00:00Z"}
    run(config, [shape, record(id=1, email="a@example.com", phone=NUMBER, **consented)], tmp_path)
    assert subscriptions(sandbox) == ["a@example.com"]
    sandbox.store.unsubscribe("a@example.com", datetime(2025, 6, 1, tzinfo=timezone.utc))

    run(config, [shape, record(id=2, email="b@example.com", phone=NUMBER)], tmp_path)
    assert report(tmp_path)["counts"]["values_dropped_by_reason"] == {reason: 1}
    assert consent_of(sandbox) == {"a@example.com": (NUMBER, "UNSUBSCRIBED"), "b@example.com": (None, None)}

    run(config, [shape, record(id=1, email="a@example.com", phone=None, **consented)], tmp_path)
    assert subscriptions(sandbox) == ["a@example.com"]  # only run 1's
    assert consent_of(sandbox)["a@example.com"] == (NUMBER, "UNSUBSCRIBED")


def test_a_number_its_holder_no_longer_has_is_free_for_someone_else_a_day_later(
    sandbox, ledger_place: Place, tmp_path
):
    """Once a confirmed job gave A another number, and a day after any job last gave A the old one
    (when none can still be running at Klaviyo)."""
    config = identified_config(sandbox, ledger_place(), "phone_number")
    shape = schema(properties=IDENTIFIED)
    other = "+14155552672"
    run(config, [shape, record(id=1, email="a@example.com", phone=NUMBER)], tmp_path)
    engine = create_engine(config.get("ledger_url") or f"sqlite:///{config['ledger_path']}")
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE target_klaviyo_ledger_identifiers SET claimed_at = claimed_at - 90000")
        )
    engine.dispose()
    run(config, [shape, record(id=1, email="a@example.com", phone=other)], tmp_path)
    run(config, [shape, record(id=2, email="b@example.com", phone=NUMBER)], tmp_path)
    assert report(tmp_path)["counts"]["values_dropped_by_reason"] == {}
    assert consent_of(sandbox) == {"a@example.com": (other, None), "b@example.com": (NUMBER, None)}


def test_a_number_is_held_from_the_moment_its_job_is_posted(
    sandbox_factory, live, ledger_place: Place, tmp_path
):
    """A run killed before its job was confirmed may have given the number: it stays that person's."""
    server = sandbox_factory(job_delay=30)
    config = identified_config(server, ledger_place(), "phone_number")
    shape = schema(properties=IDENTIFIED)
    first = live(config)
    first.send([shape, record(id=1, email="a@example.com", phone=NUMBER)])
    first.close_input()  # the job is submitted at the end of input, and takes 30 s
    first.wait_for(lambda: "Submitted import job" in first.stderr)
    first.process.send_signal(signal.SIGKILL)
    first.wait()
    assert ledger_rows(config) == []  # nobody confirmed
    server.settings.job_delay = 0.05

    run(config, [shape, record(id=2, email="b@example.com", phone=NUMBER)], tmp_path)
    assert report(tmp_path)["counts"]["values_dropped_by_reason"] == {"duplicate_phone": 1}
    imported = [
        p["attributes"]
        for job in bulk_jobs(server)[1:]
        for p in job.body["data"]["attributes"]["profiles"]["data"]
    ]
    assert imported == [{"email": "b@example.com", "properties": {"id": 2}}]


def test_a_number_the_ledger_cannot_record_is_never_posted(sandbox, tmp_path):
    """The claim comes before the POST (hostile review 14): when the ledger cannot record that a
    job gives a person a number, Klaviyo is never given the job, so the number cannot be Klaviyo's
    for them behind the ledger's back, to be given to someone else later."""
    ledger = tmp_path / "ledger.sqlite"
    config = identified_config(sandbox, {"ledger_path": str(ledger)}, "phone_number")
    shape = schema(properties=IDENTIFIED)
    run(config, [shape, record(id=9, email="z@example.com")], tmp_path)
    with contextlib.closing(sqlite3.connect(ledger)) as db, db:  # a write the database refuses
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON target_klaviyo_ledger_identifiers"
            " BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
        )
    jobs = len(bulk_jobs(sandbox))
    result = run_cli(config, [shape, record(id=1, email="a@example.com", phone=NUMBER)], tmp_path)
    assert result.returncode == 1
    assert "cannot be written: disk I/O error." in result.stderr
    assert "Traceback" not in result.stderr
    assert len(bulk_jobs(sandbox)) == jobs
    assert set(members(sandbox)) == {"z@example.com"}


def test_a_number_two_people_hold_in_the_ledger_is_left_out_for_both(sandbox, ledger_place: Place, tmp_path):
    config = identified_config(sandbox, ledger_place(), "phone_number")
    shape = schema(properties=IDENTIFIED)
    run(config, [shape, record(id=1, email="a@example.com", phone=NUMBER)], tmp_path)
    engine = create_engine(config.get("ledger_url") or f"sqlite:///{config['ledger_path']}")
    with engine.begin() as connection:  # as two runs on different lists at once would leave it
        (identifier,) = connection.execute(
            text("SELECT identifier FROM target_klaviyo_ledger_identifiers")
        ).one()
        connection.execute(
            text("INSERT INTO target_klaviyo_ledger_identifiers VALUES (:p, 'phone_number', :i, 0)"),
            {"p": b"\1" * 16, "i": identifier},
        )
    engine.dispose()
    run(config, [shape, record(id=1, email="a@example.com", phone=NUMBER, first_name="Ada")], tmp_path)
    assert report(tmp_path)["counts"]["values_dropped_by_reason"] == {"duplicate_phone": 1}


def test_a_ledger_from_before_the_identifiers_table_gets_it(sandbox, tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    config = identified_config(sandbox, {"ledger_path": str(ledger)}, "phone_number")
    shape = schema(properties=IDENTIFIED)
    run(config, [shape, record(id=1, email="a@example.com", phone=NUMBER)], tmp_path)
    with contextlib.closing(sqlite3.connect(ledger)) as db, db:
        db.execute("DROP TABLE target_klaviyo_ledger_identifiers")
    # Unchanged profiles are not checked for numbers another holds: so all are sent once, to record them.
    again = run(config, [shape, record(id=1, email="a@example.com", phone=NUMBER)], tmp_path)
    assert "kept no phone numbers or external ids: it forgot its 1 people" in again.stderr
    assert sent(sandbox, 1) == ["a@example.com"]
    run(config, [shape, record(id=2, email="b@example.com", phone=NUMBER)], tmp_path)
    assert report(tmp_path)["counts"]["values_dropped_by_reason"] == {"duplicate_phone": 1}


def test_an_identifier_row_of_the_wrong_kind_is_a_damaged_ledger(sandbox, tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    config = identified_config(sandbox, {"ledger_path": str(ledger)}, "phone_number")
    shape = schema(properties=IDENTIFIED)
    run(config, [shape, record(id=1, email="a@example.com", phone=NUMBER)], tmp_path)
    with contextlib.closing(sqlite3.connect(ledger)) as db, db:
        db.execute("UPDATE target_klaviyo_ledger_identifiers SET identifier = 42")
    result = run_cli(config, [shape, record(id=2, email="b@example.com", phone=NUMBER)], tmp_path)
    assert result.returncode == 1
    assert "is damaged (an identifier row holds a value of the wrong kind)" in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr


def test_without_the_ledger_a_consent_run_that_maps_a_phone_number_says_what_it_cannot_check(
    sandbox, tmp_path
):
    config = {**identified_config(sandbox, {}, "phone_number"), "use_ledger": False}
    result = run(
        config, [schema(properties=IDENTIFIED), record(id=1, email="a@example.com", phone=NUMBER)], tmp_path
    )
    assert (
        "With use_ledger false, phone_number is checked only against this run's other records"
        in result.stderr
    )
    quiet = run({**config, "use_ledger": True}, [schema(properties=IDENTIFIED)], tmp_path)
    assert "With use_ledger false" not in quiet.stderr


def test_an_unchanged_holder_still_holds_their_number_against_a_later_record(
    sandbox, ledger_place: Place, tmp_path
):
    """An unchanged profile is not checked (or sent), but its number stays its own within the run."""
    config = identified_config(sandbox, ledger_place(), "phone_number")
    shape = schema(properties=IDENTIFIED)
    ada = record(id=1, email="a@example.com", phone=NUMBER)
    run(config, [shape, ada], tmp_path)
    run(config, [shape, ada, record(id=2, email="b@example.com", phone=NUMBER)], tmp_path)
    counts = report(tmp_path)["counts"]
    assert (counts["unchanged"], counts["values_dropped_by_reason"]) == (1, {"duplicate_phone": 1})
    assert sent(sandbox, 1) == ["b@example.com"]
    assert consent_of(sandbox) == {"a@example.com": (NUMBER, None), "b@example.com": (None, None)}


# Found by the fourth hostile review of issue 16: a new number Klaviyo may hold although no job
# confirmed it, and two runs that read who holds which number while the other changes it.

CONSENTED = {"optin": True, "optin_at": "2024-01-01T00:00:00Z"}
LATER = "+14155552699"


def merge_attempt(server: Any, config: dict[str, Any], tmp_path) -> None:
    """A unsubscribes; B comes with A's new number; A's record (consent of 2024) comes again."""
    shape = schema(properties=IDENTIFIED)
    server.store.unsubscribe("a@example.com", datetime(2025, 6, 1, tzinfo=timezone.utc))
    run(config, [shape, record(id=2, email="b@example.com", phone=LATER)], tmp_path)
    assert report(tmp_path)["counts"]["values_dropped_by_reason"] == {"duplicate_phone": 1}
    run({**config, "full_refresh": True}, [shape, record(id=1, email="a@example.com", **CONSENTED)], tmp_path)
    assert consent_of(server)["a@example.com"] == (LATER, "UNSUBSCRIBED")
    assert consent_of(server)["b@example.com"] == (None, None)


def test_a_new_number_in_a_job_killed_before_it_was_confirmed_stays_the_persons(
    sandbox_factory, live, ledger_place: Place, tmp_path
):
    server = sandbox_factory(job_delay=0.05)
    config = identified_config(server, ledger_place(), "phone_number")
    shape = schema(properties=IDENTIFIED)
    run(config, [shape, record(id=1, email="a@example.com", phone=NUMBER, **CONSENTED)], tmp_path)
    server.settings.job_delay = 1
    killed = live(config)
    killed.send([shape, record(id=1, email="a@example.com", phone=LATER, **CONSENTED)])
    killed.close_input()
    killed.wait_for(lambda: "Submitted import job" in killed.stderr)
    killed.process.send_signal(signal.SIGKILL)
    killed.wait()
    server.settings.job_delay = 0.05
    time.sleep(1.5)  # Klaviyo finishes the job anyway
    assert consent_of(server)["a@example.com"][0] == LATER
    merge_attempt(server, config, tmp_path)


def test_a_new_number_in_a_job_whose_consent_was_superseded_stays_the_persons(
    sandbox, ledger_place: Place, tmp_path
):
    """The job that gave it is not confirmed (a later record of the person decides their consent)."""
    config = identified_config(sandbox, ledger_place(), "phone_number")
    shape = schema(properties=IDENTIFIED)
    run(config, [shape, record(id=1, email="a@example.com", phone=NUMBER, **CONSENTED)], tmp_path)
    later = [
        record(id=1, email="a@example.com", phone=LATER, **CONSENTED),
        record(id=9, email="c@example.com"),
        record(id=1, email="a@example.com", phone=None, **CONSENTED),
    ]
    run({**config, "batch_size_rows": 1}, [shape, *later], tmp_path)
    assert consent_of(sandbox)["a@example.com"][0] == LATER
    merge_attempt(sandbox, config, tmp_path)


def test_runs_that_send_phone_numbers_on_one_ledger_go_one_after_another(
    sandbox_factory, live, ledger_place: Place, tmp_path
):
    """Each reads who holds which number at its start: the second waits for the first to end."""
    server = sandbox_factory(lists=(LIST_ID, "LiSt22"))
    place = ledger_place()
    config = identified_config(server, place, "phone_number")
    shape = schema(properties=IDENTIFIED)
    first = live(config)
    first.send([shape])
    first.wait_for(lambda: "knows 0 people of list" in first.stderr)
    second = live({**config, "list_id": "LiSt22"})
    second.send([shape, record(id=2, email="b@example.com", phone=NUMBER)])
    second.close_input()
    second.wait_for(lambda: "so this run waits for it to end" in second.stderr, timeout=60)
    first.send([record(id=1, email="a@example.com", phone=NUMBER)])
    first.close_input()
    assert first.wait() == 0
    assert second.wait() == 0, second.stderr
    assert consent_of(server) == {"a@example.com": (NUMBER, None)}
    assert [row["attributes"].get("phone_number") for row in server.store.members("LiSt22", 0, 10)] == [None]


def test_mirror_by_ledger_removes_exactly_who_left_reading_only_who_joined_since(
    sandbox, ledger_place: Place, tmp_path
):
    """mirror_scope synced on both backends: the ids the first mirror run read, and until when."""
    config = ledger_config(sandbox, ledger_place(), sync_mode="mirror", mirror_max_removal_fraction=1,
                           mirror_plan_path=str(tmp_path / "plan" / "plan.json"))  # fmt: skip
    activate = {"type": "ACTIVATE_VERSION", "stream": "customers", "version": 1}
    run(config, [schema(), activate, *customers(4)], tmp_path)
    ids = [row["id"] for row in sandbox.store.members(LIST_ID, 0, 100)]
    sandbox.store.remove_members(LIST_ID, ids)
    sandbox.store.add_members(LIST_ID, ids, joined_at=datetime(2024, 1, 1, tzinfo=timezone.utc))
    before = len(sandbox.recorded)
    result = run(config, [schema(), activate, *customers(3)], tmp_path)  # person3 left
    assert "read 0 member(s) of the list; 1 of the people this target put there left" in result.stderr
    reads = [r for r in sandbox.recorded[before:] if r.spec_path == "/api/lists/{id}/profiles"]
    assert [r.query["filter"].split(",")[0] for r in reads] == ["greater-or-equal(joined_group_at"]
    applied = apply_plan(tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert sorted(members(sandbox)) == [f"person{i}@example.com" for i in range(3)]
