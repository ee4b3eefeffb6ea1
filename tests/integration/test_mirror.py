"""sync_mode mirror through the real CLI: each list ends up holding exactly the run's profiles,
and nothing is removed whenever the run may not have seen the whole segment."""

from __future__ import annotations

import itertools
import json
import signal

from support import (
    API_KEY,
    assert_requests_match_spec,
    members,
    record,
    run_cli,
    run_cli_text,
    schema,
    singer_text,
    state,
)

VIP, CHURN = "ViP001", "ChuRN2"


def activate(stream: str) -> dict:
    return {"type": "ACTIVATE_VERSION", "stream": stream, "version": 1700000000}


def seed(server, list_id: str, *emails: str) -> dict[str, str]:
    """Members the list had before the run (added by earlier runs, or by hand); their ids by email."""
    ids = {email: server.store.upsert_profile({"email": email})[0] for email in emails}
    server.store.add_members(list_id, list(ids.values()))
    return ids


def config(server, tmp_path, **overrides):
    return {
        "api_key": API_KEY,
        "api_url": server.url,
        "stream_lists": {"vip": VIP, "churn_risk": CHURN},
        "sync_mode": "mirror",
        "report_path": str(tmp_path / "report.json"),
        **overrides,
    }


def report(tmp_path) -> dict:
    return json.loads((tmp_path / "report.json").read_text())


def segments(vip: list[str], churn: list[str], *, full: bool = True) -> list[dict]:
    messages = [schema("vip"), schema("churn_risk")]
    if full:
        messages += [activate("vip"), activate("churn_risk")]
    messages += [record("vip", id=i, email=email) for i, email in enumerate(vip)]
    messages += [record("churn_risk", id=i, email=email) for i, email in enumerate(churn)]
    return [*messages, state("end")]


def test_each_list_ends_up_holding_exactly_the_runs_profiles(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP, CHURN), refuse_domains=("refused.example",))
    before = seed(server, VIP, "ada@example.com", "left@example.com", "kept@refused.example",
                  "Bob@Example.com", "bad@example.com")  # fmt: skip
    seed(server, CHURN, "cy@example.com", "gone@example.com", "ada@example.com")
    vip = ["ada@example.com", "bob@example.com", "new@example.com", "kept@refused.example"]
    churn = ["cy@example.com", "dee@example.com", "eve@example.com"]
    messages = segments(vip, churn)
    messages.insert(-1, record("vip", id="not a number", email="bad@example.com"))  # fails its schema
    result = run_cli(config(server, tmp_path), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    # Klaviyo refuses kept@refused.example this time, and bad@example.com's record is rejected, but
    # both emails were in the segment: their members are kept.
    assert set(members(server, VIP)) == {"ada@example.com", "bob@example.com", "new@example.com",
                                         "kept@refused.example", "bad@example.com"}  # fmt: skip
    assert set(members(server, CHURN)) == {"cy@example.com", "dee@example.com", "eve@example.com"}
    # The profiles removed from the lists stay in Klaviyo.
    assert server.store.get_profile(before["left@example.com"]) is not None
    run = report(tmp_path)
    assert run["counts"]["removed"] == 3
    assert run["lists"][VIP]["removed"] == 1
    assert run["lists"][VIP]["mirror"] == {"outcome": "mirrored", "members_before": 6}
    assert run["lists"][CHURN]["removed"] == 2
    assert run["counts"]["rejected_by_reason"] == {"rejected_by_klaviyo": 1, "schema_violation": 1}
    assert "Removed 1 of the 6 members of list ViP001 (sync_mode mirror)." in result.stderr
    assert "3 members removed from 2 mirrored list(s)" in result.stderr
    removals = [r for r in server.recorded if r.method == "DELETE"]
    assert {r.path.split("/")[3] for r in removals} == {VIP, CHURN}
    assert_requests_match_spec(server)


def test_a_dry_run_counts_the_removals_and_changes_nothing(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP, CHURN))
    seed(server, VIP, "ada@example.com", "left@example.com", "also-left@example.com")
    seed(server, CHURN, "cy@example.com")
    vip = ["ada@example.com", "b@example.com", "c@example.com", "d@example.com"]
    result = run_cli(config(server, tmp_path, dry_run=True), segments(vip, ["cy@example.com"]), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Dry run: would remove 2 of the 3 members of list ViP001 (sync_mode mirror)." in result.stderr
    assert "Dry run: would remove 0 of the 1 members of list ChuRN2" in result.stderr
    assert set(members(server, VIP)) == {"ada@example.com", "left@example.com", "also-left@example.com"}
    assert [r.method for r in server.recorded if r.method != "GET"] == []
    assert report(tmp_path)["lists"][VIP]["removed"] == 2
    assert "2 members would be removed from 2 mirrored list(s)" in result.stderr


def test_a_run_that_would_remove_too_much_removes_nothing_from_that_list_and_fails(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP, CHURN))
    old = [f"old{i}@example.com" for i in range(6)]
    seed(server, VIP, *old)
    seed(server, CHURN, "cy@example.com", "gone@example.com")
    result = run_cli(
        config(server, tmp_path),
        segments(["a@example.com", "b@example.com"], ["cy@example.com", "dee@example.com"]),
        tmp_path,
    )
    assert result.returncode == 1
    assert (
        "Mirroring list ViP001 would remove 6 of its 8 members (75%), more than "
        "mirror_max_removal_fraction (50%): nothing was removed from it" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert set(members(server, VIP)) == {*old, "a@example.com", "b@example.com"}
    # The other list was within the guard, so it was mirrored.
    assert set(members(server, CHURN)) == {"cy@example.com", "dee@example.com"}
    run = report(tmp_path)
    assert run["outcome"] == "failed"
    assert run["lists"][VIP]["mirror"]["outcome"] == "refused: over mirror_max_removal_fraction"
    assert run["lists"][VIP]["removed"] == 0
    # STATE still covers the exported profiles: they were confirmed before the removals.
    assert result.states == [state("end")["value"]]


def test_the_guard_follows_the_setting(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP, CHURN))
    seed(server, VIP, *[f"old{i}@example.com" for i in range(6)])
    messages = segments(["a@example.com", "b@example.com"], ["c@example.com"])
    result = run_cli(config(server, tmp_path, mirror_max_removal_fraction=0.8), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(members(server, VIP)) == {"a@example.com", "b@example.com"}


def test_an_incremental_extract_removes_nothing_and_fails(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP, CHURN))
    seed(server, VIP, "left@example.com")
    messages = segments(["a@example.com", "b@example.com"], ["c@example.com"], full=False)
    result = run_cli(config(server, tmp_path), messages, tmp_path)
    assert result.returncode == 1
    assert (
        "Nothing was removed from list ViP001 (sync_mode mirror): stream 'vip' did not arrive as a full "
        "extract (the tap sent no ACTIVATE_VERSION for it)" in result.stderr
    )
    assert set(members(server, VIP)) == {"left@example.com", "a@example.com", "b@example.com"}
    assert [r for r in server.recorded if r.method == "DELETE"] == []


def test_a_list_fed_by_a_full_and_an_incremental_stream_is_not_mirrored(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "left@example.com")
    messages = [
        schema("vip"),
        schema("vip_changes"),
        activate("vip"),
        record("vip", id=1, email="a@example.com"),
        record("vip_changes", id=2, email="b@example.com"),
        state(1),
    ]
    overrides = {"stream_lists": {"vip": VIP, "vip_changes": VIP}}
    result = run_cli(config(server, tmp_path, **overrides), messages, tmp_path)
    assert result.returncode == 1
    assert "stream 'vip_changes' did not arrive as a full extract" in result.stderr
    assert "left@example.com" in members(server, VIP)


def test_a_list_that_read_no_records_is_left_alone(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP, CHURN))
    seed(server, CHURN, "still@example.com")
    result = run_cli(config(server, tmp_path), segments(["a@example.com"], []), tmp_path)
    assert result.returncode == 0, result.stderr
    assert (
        "Nothing was removed from list ChuRN2 (sync_mode mirror): no records for it were read in this run"
        in result.stderr
    )
    assert set(members(server, CHURN)) == {"still@example.com"}


def test_a_run_at_the_profile_limit_removes_nothing_in_either_mode(sandbox_factory, tmp_path):
    for on_limit in ("truncate", "fail"):
        server = sandbox_factory(lists=(VIP, CHURN))
        seed(server, VIP, "left@example.com")
        messages = segments(["a@example.com", "b@example.com", "c@example.com"], ["d@example.com"])
        overrides = {"max_profiles_per_run": 2, "on_limit_exceeded": on_limit}
        result = run_cli(config(server, tmp_path, **overrides), messages, tmp_path)
        assert result.returncode == (0 if on_limit == "truncate" else 1), result.stderr
        assert "left@example.com" in members(server, VIP), on_limit
        assert [r for r in server.recorded if r.method in {"DELETE", "GET"} and "profiles" in r.path] == []


def test_a_failed_run_removes_nothing(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP, CHURN), cancel_domains=("cancelled.example",))
    seed(server, VIP, "left@example.com")
    messages = segments(["a@example.com", "x@cancelled.example"], ["c@example.com"])
    result = run_cli(config(server, tmp_path), messages, tmp_path)
    assert result.returncode == 1
    assert "was cancelled" in result.stderr
    assert "left@example.com" in members(server, VIP)
    assert [r for r in server.recorded if r.method == "DELETE"] == []
    assert report(tmp_path)["outcome"] == "failed"


def test_an_interrupted_run_removes_nothing(sandbox_factory, live, tmp_path):
    server = sandbox_factory(lists=(VIP, CHURN), job_delay=0.05)
    seed(server, VIP, "left@example.com")
    target = live(config(server, tmp_path, batch_size_rows=1))
    target.send(segments(["a@example.com"], ["c@example.com"])[:-1])
    target.wait_for(lambda: target.stderr.count("complete: 1 profiles imported") == 2)
    target.process.send_signal(signal.SIGTERM)
    assert target.wait(timeout=30) == 143
    assert "left@example.com" in members(server, VIP)
    assert [r for r in server.recorded if r.method == "DELETE"] == []
    assert report(tmp_path)["outcome"] == "interrupted"


def test_a_renamed_stream_is_still_a_full_extract(sandbox_factory, tmp_path):
    """ACTIVATE_VERSION names the tap's stream; its records arrive under the stream map's alias."""
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "left@example.com", "a@example.com")
    messages = [schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com"), state(1)]
    overrides = {"stream_lists": {"vips": VIP}, "stream_maps": {"vip": {"__alias__": "vips"}}}
    result = run_cli(config(server, tmp_path, **overrides), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(members(server, VIP)) == {"a@example.com"}


def test_a_tap_that_stops_part_way_removes_nothing(sandbox_factory, tmp_path):
    """A Singer SDK tap sends ACTIVATE_VERSION first and a STATE once the stream is done: a tap
    that fails part way leaves records after its last STATE, and the end of input looks the same."""
    server = sandbox_factory(lists=(VIP, CHURN))
    seed(server, VIP, "left@example.com")
    messages = segments(["a@example.com", "b@example.com"], ["c@example.com"])[:-1]  # no final STATE
    result = run_cli(config(server, tmp_path), messages, tmp_path)
    assert result.returncode == 1
    assert (
        "stream 'churn_risk' ended without a STATE or ACTIVATE_VERSION after its last record" in result.stderr
    )
    assert "left@example.com" in members(server, VIP)
    # An ACTIVATE_VERSION after the records (as classic Singer taps send at the end) closes a stream too.
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "left@example.com")
    messages = [schema("vip"), record("vip", id=1, email="a@example.com"), activate("vip")]
    result = run_cli(config(server, tmp_path, stream_lists={"vip": VIP}), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(members(server, VIP)) == {"a@example.com"}


def test_a_person_sent_again_in_a_later_batch_does_not_loosen_the_guard(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, *[f"old{i}@example.com" for i in range(4)])
    repeats = ["a@example.com", "b@example.com"] * 3
    messages = [schema("vip"), activate("vip"),
                *[record("vip", id=i, email=email) for i, email in enumerate(repeats)], state(1)]  # fmt: skip
    result = run_cli(
        config(server, tmp_path, stream_lists={"vip": VIP}, batch_size_rows=1), messages, tmp_path
    )
    assert result.returncode == 1
    assert "would remove 4 of its 6 members (67%)" in result.stderr
    assert len(members(server, VIP)) == 6


def test_members_whose_records_the_reader_rejects_are_kept_in_their_normalised_form(
    sandbox_factory, tmp_path
):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "nan@example.com", "u@xn--bcher-kva.de", "left@example.com",
         *[f"p{i}@example.com" for i in range(4)])  # fmt: skip
    lines = [
        schema("vip", properties={"id": {"type": "integer"}, "email": {"type": "string"}}),
        activate("vip"),
    ]
    lines += [record("vip", id=i, email=f"p{i}@example.com") for i in range(4)]
    lines += [record("vip", id="not a number", email="u@b\u00fccher.de"), state(1)]
    text = (
        singer_text(lines[:-1])
        + '{"type": "RECORD", "stream": "vip", "record": {"id": 9, "email": "nan@example.com", "n": NaN}}\n'
    )
    text += singer_text(lines[-1:])
    result = run_cli_text(config(server, tmp_path, stream_lists={"vip": VIP}), text, tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(members(server, VIP)) == {"nan@example.com", "u@xn--bcher-kva.de",
                                         *[f"p{i}@example.com" for i in range(4)]}  # fmt: skip
    assert report(tmp_path)["counts"]["rejected_by_reason"] == {
        "schema_violation": 1,
        "unrepresentable_number": 1,
    }


def test_a_list_whose_records_were_all_rejected_is_never_emptied(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "b@example.com")
    messages = [
        schema("vip"),
        activate("vip"),
        record("vip", id=1, email="bad"),
        record("vip", id=2),
        state(1),
    ]
    overrides = {"stream_lists": {"vip": VIP}, "mirror_max_removal_fraction": 1}
    result = run_cli(config(server, tmp_path, **overrides), messages, tmp_path)
    assert result.returncode == 1
    assert "none of this run's records for it could be sent, and mirror never empties a list" in result.stderr
    assert len(members(server, VIP)) == 2


def test_a_large_list_is_read_page_by_page_and_removed_a_thousand_at_a_time(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, *[f"old{i}@example.com" for i in range(1100)])
    current = [f"now{i}@example.com" for i in range(1150)]
    messages = [
        schema("vip"),
        activate("vip"),
        *[record("vip", id=i, email=e) for i, e in enumerate(current)],
        state(1),
    ]
    result = run_cli(config(server, tmp_path, stream_lists={"vip": VIP}), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(members(server, VIP)) == set(current)
    pages = [r for r in server.recorded if r.method == "GET" and r.path.endswith("/profiles")]
    assert len(pages) == 23  # 2,250 members, 100 a page
    removals = [r for r in server.recorded if r.method == "DELETE"]
    assert [len(r.body["data"]) for r in removals] == [1000, 100]
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(removals)]
    assert all(gap >= 0.4 for gap in gaps), "removals are paced within 150 a minute"
