"""mirror_scope synced (the default with the ledger) through the real CLIs: only the people this
target put into a list who left the segment are removed, found from the ledger, and a run reads the
members who joined since the last read, not the whole list."""

from __future__ import annotations

import datetime
import json
import time

from support import (
    API_KEY,
    activate,
    apply_plan,
    assert_requests_match_spec,
    ledger_path,
    members,
    record,
    run_cli,
    schema,
    seed,
    state,
)

VIP = "ViP001"
LONG_AGO = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


def config(server, tmp_path, **overrides):
    return {
        "api_key": API_KEY,
        "api_url": server.url,
        "stream_lists": {"vip": VIP},
        "sync_mode": "mirror",
        "mirror_max_removal_fraction": 1,
        "report_path": str(tmp_path / "report.json"),
        "mirror_plan_path": str(tmp_path / "plan" / "mirror-plan.json"),
        "ledger_path": ledger_path(server),
        **overrides,
    }


def segment(*emails: str, stream: str = "vip") -> list[dict]:
    return [
        schema(stream),
        activate(stream),
        *(record(stream, id=i, email=e) for i, e in enumerate(emails)),
        state(1),
    ]


def plan_file(tmp_path):
    return tmp_path / "plan" / "mirror-plan.json"


def report(tmp_path) -> dict:
    return json.loads((tmp_path / "report.json").read_text())


def run_and_apply(server, tmp_path, messages, **overrides):
    result = run_cli(config(server, tmp_path, **overrides), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    applied = apply_plan(tmp_path)
    assert applied.returncode == 0, applied.stderr
    return result


def joined_long_ago(server, *emails: str) -> None:
    """Memberships as an earlier night left them: joined before the ledger's last read of the list."""
    ids = [row["id"] for row in server.store.members(VIP, 0, 1000) if row["attributes"]["email"] in emails]
    server.store.remove_members(VIP, ids)
    server.store.add_members(VIP, ids, joined_at=LONG_AGO)


def reads(server, since: int) -> list[dict[str, str]]:
    """The queries of the members reads after request ``since``."""
    return [r.query for r in server.recorded[since:] if r.spec_path == "/api/lists/{id}/profiles"]


def test_only_who_this_target_put_there_and_left_is_removed_reading_only_who_joined_since(
    sandbox_factory, tmp_path
):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "by-hand@example.com")  # added in Klaviyo, not by this target: never removed
    first = run_and_apply(
        server, tmp_path, segment("a@example.com", "b@example.com", "c@example.com", "d@example.com")
    )
    assert [q.get("filter") for q in reads(server, 0)] == [None], "the first run reads the list whole"
    assert "read 5 member(s) of the list; 0 of the people this target put there left" in first.stderr
    joined_long_ago(
        server, "a@example.com", "b@example.com", "c@example.com", "d@example.com", "by-hand@example.com"
    )
    before = len(server.recorded)
    second = run_and_apply(server, tmp_path, segment("a@example.com", "b@example.com", "e@example.com"))
    queries = reads(server, before)
    assert len(queries) == 1
    assert queries[0]["filter"].startswith("greater-or-equal(joined_group_at,")
    assert queries[0]["sort"] == "joined_group_at"
    assert "read 1 member(s) of the list; 2 of the people this target put there left" in second.stderr
    checks = [r for r in server.recorded[before:] if r.spec_path == "/api/profiles"]
    assert len(checks) == 1, "the leavers' profiles are read again, 100 a request"
    assert set(members(server, VIP)) == {
        "by-hand@example.com",
        "a@example.com",
        "b@example.com",
        "e@example.com",
    }
    run = report(tmp_path)
    assert run["lists"][VIP]["mirror"]["to_remove"] == 2
    assert run["lists"][VIP]["removed"] == 2
    assert not plan_file(tmp_path).exists()
    # Those removed come back: the ledger forgot them, so they are sent again, not "unchanged".
    third = run_and_apply(
        server, tmp_path, segment("a@example.com", "b@example.com", "c@example.com", "e@example.com")
    )
    assert "c@example.com" in members(server, VIP)
    assert "0 of the people this target put there left" in third.stderr
    assert_requests_match_spec(server)


def test_a_leaver_whose_id_the_ledger_never_read_makes_the_run_read_the_list_whole(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    run_and_apply(server, tmp_path, segment("a@example.com", "b@example.com"))
    # An upsert run of the same loader adds f: no mirror read learns f's id.
    (tmp_path / "u").mkdir()
    upsert = run_cli(
        config(server, tmp_path / "u", sync_mode="upsert"),
        segment("a@example.com", "f@example.com"),
        tmp_path / "u",
    )
    assert upsert.returncode == 0, upsert.stderr
    joined_long_ago(server, "a@example.com", "b@example.com", "f@example.com")
    before = len(server.recorded)
    result = run_and_apply(server, tmp_path, segment("a@example.com", "b@example.com"))
    assert [q.get("filter") is None for q in reads(server, before)] == [False, True]
    assert set(members(server, VIP)) == {"a@example.com", "b@example.com"}
    assert "1 of the people this target put there left" in result.stderr


def test_a_profile_that_holds_another_address_now_is_kept(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    run_and_apply(server, tmp_path, segment("a@example.com", "b@example.com", "c@example.com"))
    ids = {row["attributes"]["email"]: row["id"] for row in server.store.members(VIP, 0, 100)}
    server.store.change_email(ids["c@example.com"], "c.new@example.com")  # edited in Klaviyo
    result = run_and_apply(server, tmp_path, segment("a@example.com", "b@example.com", "c.new@example.com"))
    assert (
        "1 of the people this target put there whose profile in Klaviyo now holds another address"
        in result.stderr
    )
    assert set(members(server, VIP)) == {"a@example.com", "b@example.com", "c.new@example.com"}


def test_people_from_a_stream_that_no_longer_feeds_the_list_are_kept(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    run_and_apply(server, tmp_path, segment("old@example.com", stream="legacy"), stream_lists={"legacy": VIP})
    result = run_and_apply(server, tmp_path, segment("a@example.com"))
    assert "old@example.com" in members(server, VIP)
    assert "put there from a stream that no longer feeds the list are not removed" in result.stderr


def test_a_dry_run_counts_the_leavers_and_writes_nothing(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    run_and_apply(server, tmp_path, segment("a@example.com", "b@example.com"))
    (tmp_path / "d").mkdir()
    dry = run_cli(config(server, tmp_path / "d", dry_run=True), segment("a@example.com"), tmp_path / "d")
    assert dry.returncode == 0, dry.stderr
    assert "Dry run: would remove 1 of the 2 members list ViP001 had before this run" in dry.stderr
    assert set(members(server, VIP)) == {"a@example.com", "b@example.com"}
    assert (
        json.loads((tmp_path / "d" / "report.json").read_text())["lists"][VIP]["mirror"]["outcome"]
        == "dry run"
    )


def test_a_rejected_record_still_keeps_the_person_it_names(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    run_and_apply(server, tmp_path, segment("a@example.com", "b@example.com"))
    messages = segment("a@example.com")
    messages.insert(-1, record("vip", id="not a number", email="B@Example.com"))
    run_and_apply(server, tmp_path, messages, max_reject_fraction=1)
    assert set(members(server, VIP)) == {"a@example.com", "b@example.com"}


# Found by the ninth hostile review: a profile someone else made, whose address only normalises to
# the one this target imported, is another profile; the plan took it for this target's.


def test_a_twin_profile_added_by_hand_is_never_taken_for_this_targets(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    nfc, nfd = "jos\u00e9@example.com", "jose\u0301@example.com"
    run_and_apply(server, tmp_path, segment("bob@m\u00fcnchen.de", nfc, "a@example.com"))
    ours = {row["attributes"]["email"]: row["id"] for row in server.store.members(VIP, 0, 100)}
    assert "bob@xn--mnchen-3ya.de" in ours, "this target imports the ASCII form of the domain"
    joined_long_ago(server, *ours)
    twins = seed(server, VIP, "bob@m\u00fcnchen.de", nfd)  # a signup form: two more profiles
    run_and_apply(server, tmp_path, segment("a@example.com"))
    after = {row["id"] for row in server.store.members(VIP, 0, 100)}
    assert after == {ours["a@example.com"], *twins.values()}, "this target's two left; the twins stay"


def test_a_signup_with_an_address_whose_imported_profile_changed_it_is_never_removed(
    sandbox_factory, tmp_path
):
    # Found by the tenth hostile review: the read of new members took the signup for the person.
    server = sandbox_factory(lists=(VIP,))
    run_and_apply(server, tmp_path, segment("b@example.com", "a@example.com"))
    imported = {row["attributes"]["email"]: row["id"] for row in server.store.members(VIP, 0, 100)}[
        "a@example.com"
    ]
    server.store.change_email(imported, "a.new@example.com")  # edited in Klaviyo
    signup = seed(server, VIP, "a@example.com")["a@example.com"]  # a form, afterwards: another profile
    result = run_and_apply(server, tmp_path, segment("b@example.com", "a.new@example.com"))
    assert (
        "1 of the people this target put there whose address another profile in Klaviyo holds too"
        in result.stderr
    )
    assert {row["id"] for row in server.store.members(VIP, 0, 100)} >= {imported, signup}


def sent_by_an_upsert_run(server, tmp_path) -> str:
    """An upsert run of the same loader sends b@ and a@ (so no mirror read learns a@'s profile id);
    the id of a@'s profile."""
    (tmp_path / "u").mkdir()
    upsert = run_cli(
        config(server, tmp_path / "u", sync_mode="upsert"),
        segment("b@example.com", "a@example.com"),
        tmp_path / "u",
    )
    assert upsert.returncode == 0, upsert.stderr
    return {row["attributes"]["email"]: row["id"] for row in server.store.members(VIP, 0, 100)}[
        "a@example.com"
    ]


def test_a_signup_made_after_the_person_was_confirmed_is_never_taken_for_them(sandbox_factory, tmp_path):
    # Found by the eleventh hostile review: with no id learned yet, the read of new members took it.
    server = sandbox_factory(lists=(VIP,))
    run_and_apply(server, tmp_path, segment("b@example.com"))
    imported = sent_by_an_upsert_run(server, tmp_path)
    joined_long_ago(server, "b@example.com", "a@example.com")
    time.sleep(1.1)  # Klaviyo's times and the ledger's are in seconds: the signup comes a second later
    server.store.change_email(imported, "a.new@example.com")  # edited in Klaviyo
    signup = seed(server, VIP, "a@example.com")["a@example.com"]  # a form: a profile never sent
    result = run_and_apply(server, tmp_path, segment("b@example.com"))
    assert "1 of the people this target put there who are no longer members are not removed" in result.stderr
    assert {row["id"] for row in server.store.members(VIP, 0, 100)} >= {imported, signup}


def test_an_older_profile_given_the_address_later_is_never_taken_for_the_person(sandbox_factory, tmp_path):
    # Found by the twelfth hostile review: its creation time was before the person's confirmation.
    server = sandbox_factory(lists=(VIP,))
    older = seed(server, VIP, "someone.else@example.com")["someone.else@example.com"]  # by a form
    run_and_apply(server, tmp_path, segment("b@example.com"))
    imported = sent_by_an_upsert_run(server, tmp_path)
    joined_long_ago(server, "b@example.com", "a@example.com", "someone.else@example.com")
    time.sleep(1.1)
    server.store.change_email(imported, "a.new@example.com")  # edited in Klaviyo, then the address
    server.store.change_email(older, "a@example.com")  # given to the older profile
    run_and_apply(server, tmp_path, segment("b@example.com"))
    assert {row["id"] for row in server.store.members(VIP, 0, 100)} >= {imported, older}
