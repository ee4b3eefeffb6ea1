"""sync_mode mirror through the real CLIs: target-klaviyo plans, target-klaviyo-mirror removes,
each list ends up holding exactly the run's profiles, and nothing is removed whenever the run
may not have seen the whole segment."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from support import (
    API_KEY,
    MIRROR_BIN,
    TARGET_BIN,
    activate,
    apply_plan,
    assert_requests_match_spec,
    environment_without_settings,
    ledger_path,
    members,
    record,
    run_cli,
    run_cli_text,
    schema,
    seed,
    singer_text,
    state,
)

VIP, CHURN = "ViP001", "ChuRN2"


def config(server, tmp_path, **overrides):
    return {
        "api_key": API_KEY,
        "api_url": server.url,
        "stream_lists": {"vip": VIP, "churn_risk": CHURN},
        "sync_mode": "mirror",
        "mirror_scope": "list",  # every member not in the segment (tests/integration/test_mirror_synced.py: synced)
        "report_path": str(tmp_path / "report.json"),
        "mirror_plan_path": str(tmp_path / "plan" / "mirror-plan.json"),
        "ledger_path": ledger_path(server),
        **overrides,
    }


def plan_file(tmp_path) -> Path:
    return tmp_path / "plan" / "mirror-plan.json"


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
    seed(server, CHURN, "cy@example.com", "dee@example.com", "gone@example.com", "ada@example.com")
    vip = ["ada@example.com", "bob@example.com", "new@example.com", "kept@refused.example"]
    churn = ["cy@example.com", "dee@example.com", "eve@example.com"]
    messages = segments(vip, churn)
    messages.insert(-1, record("vip", id="not a number", email="bad@example.com"))  # fails its schema
    result = run_cli(config(server, tmp_path), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    # The run only plans: nobody is removed until the pipeline has succeeded.
    assert "left@example.com" in members(server, VIP)
    assert "Planned to remove 1 of the 5 members list ViP001 had before this run" in result.stderr
    assert "3 members of 2 list(s) planned for removal" in result.stderr
    run = report(tmp_path)
    assert run["lists"][VIP]["mirror"] == {
        "outcome": "planned",
        "members_before": 5,
        "to_remove": 1,
        "kept_without_email": 0,
    }
    assert run["counts"]["rejected_by_reason"] == {"rejected_by_klaviyo": 1, "schema_violation": 1}
    assert plan_file(tmp_path).stat().st_mode & 0o777 == 0o600
    applied = apply_plan(tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert "Removed 1 of the 5 members list ViP001 had before the run (sync_mode mirror)." in applied.stderr
    # Klaviyo refused kept@refused.example this time, and bad@example.com's record was rejected, but
    # both emails were in the segment: their members are kept.
    assert set(members(server, VIP)) == {"ada@example.com", "bob@example.com", "new@example.com",
                                         "kept@refused.example", "bad@example.com"}  # fmt: skip
    assert set(members(server, CHURN)) == {"cy@example.com", "dee@example.com", "eve@example.com"}
    assert server.store.get_profile(before["left@example.com"]) is not None, "profiles stay in Klaviyo"
    run = report(tmp_path)
    assert run["counts"]["removed"] == 3
    assert run["lists"][CHURN]["removed"] == 2
    assert run["lists"][VIP]["mirror"]["outcome"] == "mirrored"
    assert not plan_file(tmp_path).exists(), "a plan is used once"
    again = apply_plan(tmp_path)
    assert again.returncode == 1
    assert "There is no mirror plan at" in again.stderr
    assert "Traceback" not in again.stderr
    removals = [r for r in server.recorded if r.method == "DELETE"]
    assert {r.path.split("/")[3] for r in removals} == {VIP, CHURN}
    assert_requests_match_spec(server)
    assert API_KEY not in result.stderr + applied.stderr + again.stderr


def test_a_dry_run_counts_the_removals_and_changes_nothing(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP, CHURN))
    seed(server, VIP, "ada@example.com", "b@example.com", "left@example.com", "also-left@example.com")
    seed(server, CHURN, "cy@example.com")
    vip = ["ada@example.com", "b@example.com", "c@example.com", "d@example.com"]
    result = run_cli(config(server, tmp_path, dry_run=True), segments(vip, ["cy@example.com"]), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Dry run: would remove 2 of the 4 members list ViP001 had before this run" in result.stderr
    assert "Dry run: would remove 0 of the 1 members list ChuRN2 had before this run" in result.stderr
    assert set(members(server, VIP)) == {
        "ada@example.com",
        "b@example.com",
        "left@example.com",
        "also-left@example.com",
    }
    assert [r.method for r in server.recorded if r.method != "GET"] == []
    assert report(tmp_path)["lists"][VIP]["mirror"] == {
        "outcome": "dry run",
        "members_before": 4,
        "to_remove": 2,
        "kept_without_email": 0,
    }
    assert "2 members of 2 list(s) would be removed by mirroring" in result.stderr
    assert not plan_file(tmp_path).exists()


def test_a_run_that_would_remove_too_much_plans_nothing_and_fails(sandbox_factory, tmp_path):
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
        "Mirroring list ViP001 would remove 6 of the 6 members it had before this run (100%), more than "
        "mirror_max_removal_fraction (50%): nothing was removed from it" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not plan_file(tmp_path).exists(), "a failed run leaves no plan, for any list"
    assert set(members(server, VIP)) == {*old, "a@example.com", "b@example.com"}
    assert "gone@example.com" in members(server, CHURN)
    run = report(tmp_path)
    assert run["outcome"] == "failed"
    assert run["lists"][VIP]["mirror"]["outcome"] == "refused: over mirror_max_removal_fraction"
    # STATE still covers the exported profiles: they were confirmed before the plan.
    assert result.states == [state("end")["value"]]


def test_the_guard_measures_the_list_as_it_was_before_the_run(sandbox_factory, tmp_path):
    """100 new people for a list of 100: removing all 100 originals is 100%, not 50% of 200."""
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, *[f"old{i}@example.com" for i in range(10)])
    new = [f"new{i}@example.com" for i in range(10)]
    overrides = {"stream_lists": {"vip": VIP}}
    messages = [
        schema("vip"),
        activate("vip"),
        *[record("vip", id=i, email=e) for i, e in enumerate(new)],
        state(1),
    ]
    result = run_cli(config(server, tmp_path, **overrides), messages, tmp_path)
    assert result.returncode == 1
    assert "would remove 10 of the 10 members it had before this run (100%)" in result.stderr
    result = run_cli(config(server, tmp_path, mirror_max_removal_fraction=1, **overrides), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert apply_plan(tmp_path).returncode == 0
    assert set(members(server, VIP)) == set(new)


def test_an_incremental_extract_plans_nothing_and_fails(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP, CHURN))
    seed(server, VIP, "left@example.com")
    messages = segments(["a@example.com", "b@example.com"], ["c@example.com"], full=False)
    result = run_cli(config(server, tmp_path), messages, tmp_path)
    assert result.returncode == 1
    assert (
        "Nothing will be removed from list ViP001 (sync_mode mirror): stream 'vip' did not arrive as a full "
        "extract (the tap sent no ACTIVATE_VERSION before its records)" in result.stderr
    )
    assert set(members(server, VIP)) == {"left@example.com", "a@example.com", "b@example.com"}
    assert not plan_file(tmp_path).exists()


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
    assert not plan_file(tmp_path).exists()


def test_a_list_that_read_no_records_is_left_alone(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP, CHURN))
    seed(server, CHURN, "still@example.com")
    result = run_cli(config(server, tmp_path), segments(["a@example.com"], []), tmp_path)
    assert result.returncode == 0, result.stderr
    assert (
        "Nothing will be removed from list ChuRN2 (sync_mode mirror): stream 'churn_risk' sent no records "
        "in this run" in result.stderr
    )
    assert list(json.loads(plan_file(tmp_path).read_text())["lists"]) == [VIP]
    assert apply_plan(tmp_path).returncode == 0
    assert set(members(server, CHURN)) == {"still@example.com"}


def test_a_run_at_the_profile_limit_removes_nothing_in_either_mode(sandbox_factory, tmp_path):
    for on_limit in ("truncate", "fail"):
        server = sandbox_factory(lists=(VIP, CHURN))
        seed(server, VIP, "left@example.com")
        messages = segments(["a@example.com", "b@example.com", "c@example.com"], ["d@example.com"])
        overrides = {"max_profiles_per_run": 2, "on_limit_exceeded": on_limit}
        result = run_cli(config(server, tmp_path, **overrides), messages, tmp_path)
        assert result.returncode == (0 if on_limit == "truncate" else 1), result.stderr
        assert [r for r in server.recorded if r.method == "GET" and r.path.endswith("/profiles")] == []
        if on_limit == "truncate":
            assert json.loads(plan_file(tmp_path).read_text())["lists"] == {}, (
                "an empty plan replaces any older one"
            )
            assert apply_plan(tmp_path).returncode == 0
        else:
            assert not plan_file(tmp_path).exists()
        assert "left@example.com" in members(server, VIP), on_limit


def test_a_failed_run_leaves_no_plan_not_even_an_older_one(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP, CHURN), cancel_domains=("cancelled.example",))
    seed(server, VIP, "left@example.com", "a@example.com")
    assert (
        run_cli(config(server, tmp_path), segments(["a@example.com"], ["c@example.com"]), tmp_path).returncode
        == 0
    )
    assert plan_file(tmp_path).exists()  # planned, and (say) never applied
    messages = segments(["a@example.com", "x@cancelled.example"], ["c@example.com"])
    result = run_cli(config(server, tmp_path), messages, tmp_path)
    assert result.returncode == 1
    assert "was cancelled" in result.stderr
    assert not plan_file(tmp_path).exists()
    assert "left@example.com" in members(server, VIP)
    assert report(tmp_path)["outcome"] == "failed"


def test_an_interrupted_run_leaves_no_plan(sandbox_factory, live, tmp_path):
    server = sandbox_factory(lists=(VIP, CHURN), job_delay=0.05)
    seed(server, VIP, "left@example.com")
    target = live(config(server, tmp_path, batch_size_rows=1))
    target.send(segments(["a@example.com"], ["c@example.com"])[:-1])
    target.wait_for(lambda: target.stderr.count("complete: 1 profiles imported") == 2)
    target.process.send_signal(signal.SIGTERM)
    assert target.wait(timeout=30) == 143
    assert not plan_file(tmp_path).exists()
    assert "left@example.com" in members(server, VIP)
    assert report(tmp_path)["outcome"] == "interrupted"


def test_a_renamed_stream_is_still_a_full_extract(sandbox_factory, tmp_path):
    """ACTIVATE_VERSION names the tap's stream; its records arrive under the stream map's alias."""
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "left@example.com", "a@example.com")
    messages = [schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com"), state(1)]
    overrides = {"stream_lists": {"vips": VIP}, "stream_maps": {"vip": {"__alias__": "vips"}}}
    result = run_cli(config(server, tmp_path, **overrides), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert apply_plan(tmp_path).returncode == 0
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
    assert "would remove 4 of the 4 members it had before this run (100%)" in result.stderr


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
    text = singer_text(lines[:-1])
    text += '{"type": "RECORD", "stream": "vip", "record": {"id": 9, "email": "nan@example.com", "n": NaN}}\n'
    text += singer_text(lines[-1:])
    result = run_cli_text(config(server, tmp_path, stream_lists={"vip": VIP}), text, tmp_path)
    assert result.returncode == 0, result.stderr
    assert apply_plan(tmp_path).returncode == 0
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
    # max_reject_fraction 1: with it, the rejects alone would fail the run before mirror is asked.
    overrides = {"stream_lists": {"vip": VIP}, "mirror_max_removal_fraction": 1, "max_reject_fraction": 1}
    result = run_cli(config(server, tmp_path, **overrides), messages, tmp_path)
    assert result.returncode == 1
    assert (
        "Klaviyo accepted none of this run's profiles for it, and mirror never empties a list"
        in result.stderr
    )
    assert len(members(server, VIP)) == 2


def test_a_rejected_record_keeps_every_address_anywhere_in_it(sandbox_factory, tmp_path):
    """Found by the hostile review of issue 16: addresses under ``Email`` while email_property is
    ``email`` are rejected (missing_email), and were then planned for removal."""
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "churn0@example.com", "churn1@example.com", "left@example.com")
    messages = [
        schema("vip"),
        activate("vip"),
        record("vip", id=1, email="a@example.com"),
        record("vip", id=2, email=None, Email="churn0@example.com"),
        record("vip", id=3, notes={"contact": ["Churn One <CHURN1@example.com>"]}),
        record("vip", id=4, first_name="nobody"),  # no address anywhere: keeps no one
        state(1),
    ]
    overrides = {"stream_lists": {"vip": VIP}, "mirror_max_removal_fraction": 1, "max_reject_fraction": 1}
    result = run_cli(config(server, tmp_path, **overrides), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert apply_plan(tmp_path).returncode == 0
    assert set(members(server, VIP)) == {"a@example.com", "churn0@example.com", "churn1@example.com"}
    assert report(tmp_path)["counts"]["rejected"] == 3


def test_a_large_list_is_read_page_by_page_and_removed_a_thousand_at_a_time(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(
        server,
        VIP,
        *[f"old{i}@example.com" for i in range(1100)],
        *[f"now{i}@example.com" for i in range(1150)],
    )
    current = [f"now{i}@example.com" for i in range(1150)]
    messages = [
        schema("vip"),
        activate("vip"),
        *[record("vip", id=i, email=e) for i, e in enumerate(current)],
        state(1),
    ]
    result = run_cli(config(server, tmp_path, stream_lists={"vip": VIP}), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    pages = [r for r in server.recorded if r.method == "GET" and r.path.endswith("/profiles")]
    assert len(pages) == 23  # 2,250 members, 100 a page
    assert apply_plan(tmp_path).returncode == 0
    assert set(members(server, VIP)) == set(current)
    removals = [r for r in server.recorded if r.method == "DELETE"]
    assert [len(r.body["data"]) for r in removals] == [1000, 100]
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(removals)]
    assert all(gap >= 0.4 for gap in gaps), "removals are paced within 150 a minute"


def two_streams_one_list(**overrides):
    return {
        "stream_lists": {"segment_a": VIP, "segment_b": VIP},
        "mirror_max_removal_fraction": 1,
        **overrides,
    }


def test_a_list_fed_by_two_streams_keeps_the_people_of_a_stream_that_sent_nothing(sandbox_factory, tmp_path):
    """segment_b sends only its SCHEMA, a full extract of 0 rows, or does not appear at all."""
    a_people, b_people = ["a1@example.com", "a2@example.com"], ["b1@example.com", "b2@example.com"]
    inputs = {
        "schema only": [schema("segment_a"), schema("segment_b"), activate("segment_a")],
        "zero rows": [schema("segment_a"), schema("segment_b"), activate("segment_a"), activate("segment_b")],
        "absent": [schema("segment_a"), activate("segment_a")],
    }
    for case, head in inputs.items():
        server = sandbox_factory(lists=(VIP,))
        seed(server, VIP, *a_people, *b_people, "left@example.com")
        messages = [*head, *[record("segment_a", id=i, email=e) for i, e in enumerate(a_people)], state(1)]
        result = run_cli(config(server, tmp_path, **two_streams_one_list()), messages, tmp_path)
        assert result.returncode == 1, (case, result.stderr)  # the only list: a run that mirrors nothing
        assert (
            "Nothing will be removed from list ViP001 (sync_mode mirror): stream 'segment_b'" in result.stderr
        )
        assert not plan_file(tmp_path).exists()
        assert apply_plan(tmp_path).returncode == 1
        assert set(members(server, VIP)) == {*a_people, *b_people, "left@example.com"}, case


def test_a_resumed_full_table_sync_removes_nobody(sandbox_factory, tmp_path):
    """singer-io taps resume an interrupted full-table sync with the remaining rows and send
    ACTIVATE_VERSION only at the end: the rows sent before the interruption are not in the input."""
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "first@example.com", "second@example.com", "rest@example.com")
    messages = [
        schema("vip"),
        record("vip", id=3, email="rest@example.com"),
        activate("vip"),
        state(1),
    ]
    overrides = {"stream_lists": {"vip": VIP}, "mirror_max_removal_fraction": 1}
    result = run_cli(config(server, tmp_path, **overrides), messages, tmp_path)
    assert result.returncode == 1
    assert "sent ACTIVATE_VERSION only after some of its records" in result.stderr
    assert apply_plan(tmp_path).returncode == 1
    assert len(members(server, VIP)) == 3


def test_a_run_klaviyo_refused_whole_never_empties_the_list(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,), fail_domains=("bounce.example",))
    seed(server, VIP, "old1@example.com", "old2@example.com")
    messages = [schema("vip"), activate("vip"),
                *[record("vip", id=i, email=f"n{i}@bounce.example") for i in range(3)], state(1)]  # fmt: skip
    overrides = {"stream_lists": {"vip": VIP}, "mirror_max_removal_fraction": 1, "max_reject_fraction": 1}
    result = run_cli(config(server, tmp_path, **overrides), messages, tmp_path)
    assert result.returncode == 1
    assert "Klaviyo accepted none of this run's profiles for it" in result.stderr
    assert apply_plan(tmp_path).returncode == 1
    assert {"old1@example.com", "old2@example.com"} <= set(members(server, VIP))


def test_under_an_alias_a_record_the_reader_rejects_still_keeps_its_member(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "nan@example.com", "left@example.com")
    lines = [schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com")]
    text = singer_text(lines)
    text += '{"type": "RECORD", "stream": "vip", "record": {"id": 9, "email": "nan@example.com", "n": NaN}}\n'
    text += singer_text([state(1)])
    overrides = {"stream_lists": {"vips": VIP}, "stream_maps": {"vip": {"__alias__": "vips"}}}
    result = run_cli_text(config(server, tmp_path, **overrides), text, tmp_path)
    assert result.returncode == 0, result.stderr
    assert apply_plan(tmp_path).returncode == 0
    assert set(members(server, VIP)) == {"a@example.com", "nan@example.com"}


def test_members_without_an_email_are_never_removed(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    phone_only = server.store.upsert_profile({"phone_number": "+14155552671"})[0]
    server.store.add_members(VIP, [phone_only])
    seed(server, VIP, "a@example.com", "left@example.com")
    messages = [schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com"), state(1)]
    result = run_cli(config(server, tmp_path, stream_lists={"vip": VIP}), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 members without an email are kept" in result.stderr
    assert report(tmp_path)["lists"][VIP]["mirror"]["kept_without_email"] == 1
    applied = apply_plan(tmp_path)
    assert applied.returncode == 0, applied.stderr
    rows = server.store.members(VIP)
    assert {row["id"] for row in rows if "email" not in row["attributes"]} == {phone_only}
    assert {row["attributes"]["email"] for row in rows if "email" in row["attributes"]} == {"a@example.com"}


def mirror_with_config(config_path: Path, *, cwd: Path | None = None, env: dict | None = None):
    return subprocess.run(
        [str(MIRROR_BIN), "--config", str(config_path)],
        capture_output=True,
        text=True,
        env={**environment_without_settings(), **(env or {})},
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_two_loaders_never_share_a_plan_and_each_applies_only_its_own(sandbox_factory, tmp_path):
    """Default plan paths, one working directory (a Meltano project): loader B's plan, from a run
    whose tap crashed, is never carried out by loader A's apply step."""
    server = sandbox_factory(lists=(VIP, CHURN))
    seed(server, VIP, "a@example.com", "left-a@example.com")
    seed(server, CHURN, "b@example.com", "left-b@example.com")
    configs = {}
    for name, (stream, list_id, email) in {"a": ("vip", VIP, "a@example.com"),
                                           "b": ("churn_risk", CHURN, "b@example.com")}.items():  # fmt: skip
        folder = tmp_path / name
        folder.mkdir()
        cfg = {
            **config(server, tmp_path, stream_lists={stream: list_id}),
            "report_path": str(folder / "r.json"),
        }
        del cfg["mirror_plan_path"]
        messages = [schema(stream), activate(stream), record(stream, id=1, email=email), state(1)]
        assert run_cli(cfg, messages, folder, cwd=tmp_path).returncode == 0
        configs[name] = folder / "config.json"
    plans = sorted((tmp_path / ".target-klaviyo" / "mirror").glob("*.json"))
    assert len(plans) == 2, "one default plan per loader config"
    assert (tmp_path / ".target-klaviyo" / "mirror").stat().st_mode & 0o777 == 0o700
    applied = mirror_with_config(configs["a"], cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert set(members(server, VIP)) == {"a@example.com"}
    assert set(members(server, CHURN)) == {"b@example.com", "left-b@example.com"}, "B's plan was not applied"
    # A config for other lists refuses the plan it finds at its mirror_plan_path.
    other = json.loads(configs["b"].read_text())
    other["mirror_plan_path"] = str(next(p for p in plans if p.exists()))
    other["stream_lists"] = {"x": "OtHeR1"}
    (tmp_path / "other.json").write_text(json.dumps(other))
    refused = mirror_with_config(tmp_path / "other.json", cwd=tmp_path)
    assert refused.returncode == 1
    assert "was made by a loader whose api_url, list_id or stream_lists differ" in refused.stderr
    assert "left-b@example.com" in members(server, CHURN)


def test_the_plan_never_decides_where_the_key_goes(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    listener = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "left@example.com")
    messages = [schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com"), state(1)]
    assert run_cli(config(server, tmp_path, stream_lists={"vip": VIP}), messages, tmp_path).returncode == 0
    plan = json.loads(plan_file(tmp_path).read_text())
    plan_file(tmp_path).write_text(json.dumps({**plan, "api_url": listener.url}))
    tampered = apply_plan(tmp_path)
    assert tampered.returncode == 1
    assert "was made for another api_url" in tampered.stderr
    assert listener.recorded == []
    assert "left@example.com" in members(server, VIP)


def test_a_run_that_fails_at_its_first_line_still_deletes_the_plan(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP, CHURN))
    seed(server, VIP, "left@example.com", "a@example.com")
    good = segments(["a@example.com"], ["c@example.com"])
    for bad_input in ("not json\n", '{"type": "BATCH", "stream": "vip", "encoding": {}, "manifest": []}\n'):
        assert run_cli(config(server, tmp_path), good, tmp_path).returncode == 0
        assert plan_file(tmp_path).exists()
        failed = run_cli_text(config(server, tmp_path), bad_input + singer_text(good), tmp_path)
        assert failed.returncode == 1
        assert not plan_file(tmp_path).exists()
        assert apply_plan(tmp_path).returncode == 1
    assert "left@example.com" in members(server, VIP)


def test_a_plan_copied_aside_and_replayed_after_a_newer_run_is_refused(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "comes-back@example.com")
    cfg = config(server, tmp_path, stream_lists={"vip": VIP})
    first = [schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com"), state(1)]
    assert run_cli(cfg, first, tmp_path).returncode == 0
    copy = plan_file(tmp_path).read_bytes()
    newer = [*first[:3], record("vip", id=2, email="comes-back@example.com"), state(2)]
    assert run_cli(cfg, newer, tmp_path).returncode == 0
    plan_file(tmp_path).write_bytes(copy)
    replayed = apply_plan(tmp_path)
    assert replayed.returncode == 1
    assert "is not from the latest mirror run of this config" in replayed.stderr
    assert "comes-back@example.com" in members(server, VIP)


def test_output_paths_never_collide_or_destroy(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com")
    messages = [schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com"), state(1)]
    report_path = str(tmp_path / "report.json")
    for overrides in ({"mirror_plan_path": report_path}, {"rejects_path": str(plan_file(tmp_path))}):
        result = run_cli(config(server, tmp_path, stream_lists={"vip": VIP}, **overrides), messages, tmp_path)
        assert result.returncode == 1
        assert "name the same file; give each its own" in result.stderr
    precious = tmp_path / "keep" / "customers.json"
    precious.parent.mkdir(mode=0o700)
    precious.write_text('{"not": "a plan"}')
    result = run_cli(
        config(server, tmp_path, stream_lists={"vip": VIP}, mirror_plan_path=str(precious)),
        messages,
        tmp_path,
    )
    assert result.returncode == 1
    assert "holds a file target-klaviyo did not write" in result.stderr
    assert "Traceback" not in result.stderr
    assert precious.read_text() == '{"not": "a plan"}'
    assert server.recorded == [], "refused before any input and any request"


def test_applying_is_exclusive_and_exact_when_interrupted_and_run_again(sandbox_factory, tmp_path):
    from klaviyo_sandbox.faults import FaultPlan

    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", *[f"old{i}@example.com" for i in range(2500)])
    messages = [schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com"), state(1)]
    cfg = config(server, tmp_path, stream_lists={"vip": VIP}, mirror_max_removal_fraction=1)
    assert run_cli(cfg, messages, tmp_path).returncode == 0
    # Each removal takes a second: the apply is surely still going when the checks below are done.
    server.settings.faults = FaultPlan(
        latency=1.0, operations=frozenset({"DELETE /api/lists/{id}/relationships/profiles"})
    )
    first = subprocess.Popen(
        [str(MIRROR_BIN), "--config", str(tmp_path / "config.json")],
        stderr=subprocess.PIPE,
        text=True,
        env=environment_without_settings(),
    )
    deadline = time.monotonic() + 30
    while not [r for r in server.recorded if r.method == "DELETE"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    concurrent = apply_plan(tmp_path)
    assert concurrent.returncode == 1
    assert "Another target-klaviyo mirror run or target-klaviyo-mirror is using" in concurrent.stderr
    first.send_signal(signal.SIGTERM)
    _, stderr = first.communicate(timeout=30)
    assert first.returncode == 130, stderr
    partial = report(tmp_path)
    removed_so_far = partial["lists"][VIP]["removed"]
    assert removed_so_far in {0, 1000, 2000}, "only requests Klaviyo confirmed count"
    assert partial["lists"][VIP]["mirror"]["outcome"].startswith(
        f"partly mirrored: {removed_so_far:,} of 2,500"
    )
    assert partial["mirror_plan"] == "partly applied"
    # A request Klaviyo carried out but never confirmed may have removed more: it is sent again.
    assert len(members(server, VIP)) <= 2501 - removed_so_far
    server.settings.faults = FaultPlan()
    again = apply_plan(tmp_path)
    assert again.returncode == 0, again.stderr
    final = report(tmp_path)
    assert final["counts"]["removed"] == 2500
    assert final["lists"][VIP]["removed"] == 2500
    assert final["lists"][VIP]["mirror"]["outcome"] == "mirrored"
    assert set(members(server, VIP)) == {"a@example.com"}
    removals = [r for r in server.recorded if r.method == "DELETE"]
    assert len(removals) <= 4, "3 requests, and at most the one cut off is sent again"


# Found by the hostile review of the mirror change: each must hold.


def test_a_record_the_reader_rejects_keeps_its_member_whatever_the_stream_map_renames(
    sandbox_factory, tmp_path
):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "b@example.com", "keep@example.com")
    overrides = {
        "mirror_max_removal_fraction": 1,
        "stream_lists": {"vip": VIP},
        "stream_maps": {"vip": {"email": "EMAIL", "EMAIL": "__NULL__"}},
    }
    lines = [
        schema("vip", properties={"id": {"type": "integer"}, "EMAIL": {"type": "string"}, "n": {}}),
        activate("vip"),
        record("vip", id=1, EMAIL="a@example.com"),
    ]
    text = singer_text(lines)
    text += '{"type":"RECORD","stream":"vip","record":{"id":4,"EMAIL":"keep@example.com","n":NaN}}\n'
    result = run_cli_text(config(server, tmp_path, **overrides), text, tmp_path)
    assert result.returncode == 0, result.stderr
    assert apply_plan(tmp_path).returncode == 0
    assert set(members(server, VIP)) == {"a@example.com", "keep@example.com"}


def test_two_tap_streams_under_one_name_are_each_required_whole(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a1@example.com", "old1@example.com")
    overrides = {
        "stream_lists": {"seg": VIP},
        "stream_maps": {"a": {"__alias__": "seg"}, "b": {"__alias__": "seg"}},
    }
    messages = [schema("a"), schema("b"), activate("a"), record("a", id=1, email="a1@example.com"),
                record("b", id=3, email="changed@example.com"), state(1)]  # fmt: skip
    result = run_cli(config(server, tmp_path, **overrides), messages, tmp_path)
    assert result.returncode == 1
    assert "stream 'b' did not arrive as a full extract" in result.stderr
    assert "old1@example.com" in members(server, VIP)


def test_loaders_that_route_differently_to_the_same_list_never_share_a_plan(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "b@example.com", "c@example.com", "d@example.com")
    base = {
        "api_key": API_KEY,
        "api_url": server.url,
        "sync_mode": "mirror",
        "mirror_max_removal_fraction": 1,
    }
    a = {**base, "stream_lists": {"vip": VIP}}
    b = {**base, "list_id": VIP}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    (tmp_path / "a" / "config.json").write_text(json.dumps(a))
    partial = [schema("other"), activate("other"), record("other", id=1, email="a@example.com"), state(1)]
    assert (
        run_cli(b, partial, tmp_path / "b", cwd=tmp_path).returncode == 0
    )  # B's tap died; B's apply never runs
    applied = mirror_with_config(tmp_path / "a" / "config.json", cwd=tmp_path)
    assert applied.returncode == 1
    assert "There is no mirror plan at" in applied.stderr
    assert len(members(server, VIP)) == 4


def test_under_meltano_a_plan_is_applied_only_by_the_meltano_run_that_made_it(sandbox_factory, tmp_path):
    """The same loader in two overlapping meltano runs: run 2's plan is not run 1's to apply."""
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "left@example.com")
    messages = [schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com"), state(1)]
    cfg = config(server, tmp_path, stream_lists={"vip": VIP})
    second = {"MELTANO_PARENT_CONTEXT_UUID": "01a23494-2113-700e-a440-000000000002"}
    assert run_cli(cfg, messages, tmp_path, extra_env=second).returncode == 0
    first = mirror_with_config(
        tmp_path / "config.json", env={"MELTANO_PARENT_CONTEXT_UUID": "01a23494-1d16-73a9-853b-000000000001"}
    )
    assert first.returncode == 1
    assert "was made in another meltano run than this one" in first.stderr
    by_hand = mirror_with_config(tmp_path / "config.json")
    assert by_hand.returncode == 1
    assert "left@example.com" in members(server, VIP)
    own = mirror_with_config(tmp_path / "config.json", env=second)
    assert own.returncode == 0, own.stderr
    assert set(members(server, VIP)) == {"a@example.com"}


def test_the_files_beside_a_plan_are_never_taken_for_ours(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    messages = [schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com"), state(1)]
    folder = tmp_path / "pp"
    folder.mkdir(mode=0o700)
    (folder / "notes.progress").write_text("my important notes\n")
    cfg = config(server, tmp_path, stream_lists={"vip": VIP}, mirror_plan_path=str(folder / "notes"))
    result = run_cli(cfg, messages, tmp_path)
    assert result.returncode == 1
    assert "holds a file target-klaviyo did not write" in result.stderr
    assert (folder / "notes.progress").read_text() == "my important notes\n"


def test_a_special_file_at_the_plan_path_is_refused_not_read(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "left@example.com")
    messages = [schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com"), state(1)]
    assert run_cli(config(server, tmp_path, stream_lists={"vip": VIP}), messages, tmp_path).returncode == 0
    plan_file(tmp_path).unlink()
    os.mkfifo(plan_file(tmp_path), 0o600)
    applied = apply_plan(tmp_path)
    assert applied.returncode == 1
    assert "is not a regular file" in applied.stderr
    assert "left@example.com" in members(server, VIP)


def test_a_dry_run_config_never_applies_a_plan(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "left@example.com")
    messages = [schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com"), state(1)]
    assert run_cli(config(server, tmp_path, stream_lists={"vip": VIP}), messages, tmp_path).returncode == 0
    (tmp_path / "dry.json").write_text(
        json.dumps(config(server, tmp_path, stream_lists={"vip": VIP}, dry_run=True))
    )
    applied = mirror_with_config(tmp_path / "dry.json")
    assert applied.returncode == 1
    assert "dry_run, so target-klaviyo-mirror removes nobody" in applied.stderr
    assert "left@example.com" in members(server, VIP)


# Found by the second hostile review.


def test_a_long_unreadable_record_still_keeps_its_member(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "ok@example.com", "big@example.com")
    lines = [schema("vip", properties={"id": {}, "email": {}, "tags": {}, "n": {}}), activate("vip"),
             record("vip", id=0, email="ok@example.com")]  # fmt: skip
    text = singer_text(lines)
    tags = ",".join(["1"] * 150_000)
    text += (
        '{"type":"RECORD","stream":"vip","record":{"email":"big@example.com","tags":['
        + tags
        + '],"n":NaN}}\n'
    )
    overrides = {"stream_lists": {"vip": VIP}, "mirror_max_removal_fraction": 1}
    assert run_cli_text(config(server, tmp_path, **overrides), text, tmp_path).returncode == 0
    assert apply_plan(tmp_path).returncode == 0
    assert set(members(server, VIP)) == {"ok@example.com", "big@example.com"}


def test_an_address_written_in_any_common_form_keeps_its_member(sandbox_factory, tmp_path):
    forms = ["Big Person <big0@example.com>", "<mailto:big1@example.com>", '"big2@example.com"',
             "big3@example.com;", "big4@example.com\u200b", "\ufeffbig5@example.com",
             "mailto:big6@example.com?subject=hi", ["big7@example.com"]]  # fmt: skip
    server = sandbox_factory(lists=(VIP,))
    emails = [f"big{i}@example.com" for i in range(len(forms))]
    seed(server, VIP, "ok@example.com", *emails)
    messages = [schema("vip", properties={"id": {}, "email": {}}), activate("vip"),
                record("vip", id=0, email="ok@example.com"),
                *[record("vip", id=i + 1, email=form) for i, form in enumerate(forms)], state(1)]  # fmt: skip
    overrides = {"stream_lists": {"vip": VIP}, "mirror_max_removal_fraction": 1, "max_reject_fraction": 1}
    result = run_cli(config(server, tmp_path, **overrides), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert apply_plan(tmp_path).returncode == 0
    assert set(members(server, VIP)) >= {"ok@example.com", *emails}


def test_an_incremental_bookmark_outweighs_an_activate_version(sandbox_factory, tmp_path):
    """singer-io tap-mysql sends ACTIVATE_VERSION before every incremental sync's rows."""
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "still1@example.com", "still2@example.com")
    bookmark = {"type": "STATE", "value": {"bookmarks": {"vip": {
        "replication_key": "updated_at", "replication_key_value": "2026-12-01", "version": 1700000000}}}}  # fmt: skip
    messages = [schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com"), bookmark]
    result = run_cli(config(server, tmp_path, stream_lists={"vip": VIP}), messages, tmp_path)
    assert result.returncode == 1
    assert "stream 'vip' has an incremental bookmark (in the tap's STATE" in result.stderr
    assert apply_plan(tmp_path).returncode == 1
    assert len(members(server, VIP)) == 3


def test_a_plan_path_two_loaders_share_never_lets_one_apply_the_others_plan(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "b@example.com", "c@example.com", "d@example.com")
    shared = str(tmp_path / "plan" / "shared.json")
    base = {"api_key": API_KEY, "api_url": server.url, "sync_mode": "mirror", "mirror_max_removal_fraction": 1,
            "mirror_plan_path": shared}  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps({**base, "stream_lists": {"vip": VIP}}))
    partial = [schema("other"), activate("other"), record("other", id=1, email="a@example.com"), state(1)]
    (tmp_path / "b").mkdir()
    assert run_cli({**base, "list_id": VIP}, partial, tmp_path / "b").returncode == 0  # B's tap died
    applied = mirror_with_config(tmp_path / "a.json")
    assert applied.returncode == 1
    assert "was made by a loader whose api_url, list_id or stream_lists differ" in applied.stderr
    assert len(members(server, VIP)) == 4


def test_a_member_held_in_another_unicode_form_is_kept(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    decomposed = "jose\u0301@example.com"
    seed(server, VIP, decomposed, "left@example.com", "a@example.com")
    messages = [schema("vip"), activate("vip"), record("vip", id=1, email="jos\u00e9@example.com"),
                record("vip", id=2, email="a@example.com"), state(1)]  # fmt: skip
    assert run_cli(config(server, tmp_path, stream_lists={"vip": VIP}), messages, tmp_path).returncode == 0
    assert apply_plan(tmp_path).returncode == 0
    assert decomposed in members(server, VIP)
    assert "left@example.com" not in members(server, VIP)


HELD_FORMS = ["ann\u200b@example.com", "ann@example.com.", "Ann <ann@example.com>", "mailto:ann@example.com",
              '"ann@example.com"', "ann@example.com;", "ann@exa\u00admple.com", "ANN@EXAMPLE.COM\ufeff"]  # fmt: skip


def test_a_member_klaviyo_holds_in_an_unclean_form_is_read_as_the_records_are(sandbox_factory, tmp_path):
    # Found by the seventh hostile review: a signup form or another tool may store an address so.
    server = sandbox_factory(lists=(VIP,))
    held = seed(server, VIP, *HELD_FORMS, "left@example.com", "bob@example.com")
    messages = [schema("vip"), activate("vip"), record("vip", id="not a number", email="ann@example.com"),
                record("vip", id=2, email="bob@example.com"), state(1)]  # fmt: skip
    cfg = config(
        server, tmp_path, stream_lists={"vip": VIP}, mirror_max_removal_fraction=1, max_reject_fraction=1
    )
    result = run_cli(cfg, messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert apply_plan(tmp_path).returncode == 0
    after = {row["id"] for row in server.store.members(VIP, 0, 100)}
    assert after == {held[form] for form in [*HELD_FORMS, "bob@example.com"]}, "only left@example.com left"


# Found by the third hostile review.


def bookmark_state(bookmarks: dict, syncing: str | None = None) -> dict:
    return {"type": "STATE", "value": {"currently_syncing": syncing, "bookmarks": bookmarks}}


def mirror_and_apply(server, tmp_path, messages):
    cfg = config(server, tmp_path, stream_lists={"vip": VIP}, mirror_max_removal_fraction=1)
    return run_cli(cfg, messages, tmp_path), apply_plan(tmp_path)


def test_an_incremental_bookmark_under_the_taps_stream_id_outweighs_activate_version(
    sandbox_factory, tmp_path
):
    """singer-io tap-mysql names the stream 'vip' and keys its bookmark by tap_stream_id 'shop-vip'."""
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "still1@example.com", "still2@example.com")
    incremental = {"shop-vip": {"replication_key": "updated_at", "replication_key_value": "2026-12-01"}}
    messages = [bookmark_state(incremental, "shop-vip"), schema("vip"), activate("vip"),
                record("vip", id=1, email="a@example.com"), bookmark_state(incremental, "shop-vip")]  # fmt: skip
    run, applied = mirror_and_apply(server, tmp_path, messages)
    assert run.returncode == 1
    assert "stream 'vip' has an incremental bookmark" in run.stderr
    assert applied.returncode == 1
    assert len(members(server, VIP)) == 3


def test_a_resumed_initial_full_table_sync_removes_nobody(sandbox_factory, tmp_path):
    """tap-mysql resuming an interrupted initial sync sends ACTIVATE_VERSION first, then the rows
    after last_pk_fetched; its first STATE, before any record, says so."""
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "row1@example.com", "row2@example.com", "row3@example.com", "row4@example.com")
    resuming = {"vip": {"version": 1700000000, "last_pk_fetched": {"id": 2}, "max_pk_values": {"id": 4}}}
    messages = [bookmark_state(resuming, "vip"), schema("vip"), activate("vip"),
                record("vip", id=3, email="row3@example.com"), record("vip", id=4, email="row4@example.com"),
                bookmark_state({"vip": {"version": 1700000000, "initial_full_table_complete": True}})]  # fmt: skip
    run, applied = mirror_and_apply(server, tmp_path, messages)
    assert run.returncode == 1
    assert "stream 'vip' resumes an interrupted full-table sync" in run.stderr
    assert applied.returncode == 1
    assert len(members(server, VIP)) == 4


def test_a_structured_email_or_a_record_that_is_not_an_object_keeps_its_member(sandbox_factory, tmp_path):
    forms = ['{"address": "big0@example.com"}', '[["big1@example.com"]]', '[{"email": "big2@example.com"}]']
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "ok@example.com", "big0@example.com", "big1@example.com", "big2@example.com",
         "big3@example.com", "big4@example.com")  # fmt: skip
    text = singer_text([schema("vip", properties={"id": {}, "email": {}}), activate("vip"),
                        record("vip", id=0, email="ok@example.com")])  # fmt: skip
    text += "".join(
        '{"type":"RECORD","stream":"vip","record":{"id":%d,"email":%s}}\n' % (i + 1, form)  # noqa: UP031
        for i, form in enumerate(forms)
    )
    text += '{"type":"RECORD","stream":"vip","record":["big3@example.com"]}\n'
    text += '{"type":"RECORD","stream":"vip","record":"big4@example.com"}\n'
    text += singer_text([state(1)])
    overrides = {"stream_lists": {"vip": VIP}, "mirror_max_removal_fraction": 1, "max_reject_fraction": 1}
    result = run_cli_text(config(server, tmp_path, **overrides), text, tmp_path)
    assert result.returncode == 0, result.stderr
    assert apply_plan(tmp_path).returncode == 0
    assert len(members(server, VIP)) == 6


def test_a_later_upsert_run_of_the_same_loader_voids_the_plan(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "b@example.com")
    cfg = config(server, tmp_path, stream_lists={"vip": VIP}, mirror_max_removal_fraction=1)
    head = [schema("vip"), activate("vip")]
    assert (
        run_cli(cfg, [*head, record("vip", id=1, email="a@example.com"), state(1)], tmp_path).returncode == 0
    )
    (tmp_path / "u").mkdir()
    # With the ledger on, the upsert run is refused at the list's lock (tests/integration/test_ledger.py);
    # without it, the two runs overlap, and the plan must not survive.
    upsert = {**cfg, "sync_mode": "upsert", "use_ledger": False}
    assert (
        run_cli(
            upsert, [*head, record("vip", id=2, email="b@example.com"), state(2)], tmp_path / "u"
        ).returncode
        == 0
    )
    assert not plan_file(tmp_path).exists()
    assert apply_plan(tmp_path).returncode == 1
    assert "b@example.com" in members(server, VIP)


def test_a_plan_made_outside_meltano_is_not_applied_inside_a_meltano_run(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "b@example.com")
    cfg = config(server, tmp_path, stream_lists={"vip": VIP}, mirror_max_removal_fraction=1)
    messages = [schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com"), state(1)]
    assert run_cli(cfg, messages, tmp_path).returncode == 0
    inside = mirror_with_config(tmp_path / "config.json", env={"MELTANO_PARENT_CONTEXT_UUID": "0" * 8})
    assert inside.returncode == 1
    assert "b@example.com" in members(server, VIP)


def test_a_progress_line_of_any_shape_is_sent_again_never_a_traceback(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "b@example.com")
    cfg = config(server, tmp_path, stream_lists={"vip": VIP}, mirror_max_removal_fraction=1)
    messages = [schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com"), state(1)]
    assert run_cli(cfg, messages, tmp_path).returncode == 0
    run_id = json.loads(plan_file(tmp_path).read_text())["run_id"]
    progress = plan_file(tmp_path).with_name("mirror-plan.json.progress")
    lines = [{"request": 1e999, "removed": 1}, {"request": 0, "removed": 999}, {"request": -1, "removed": 1}]
    progress.write_text("".join(json.dumps({"run_id": run_id, "list": VIP, **line}) + "\n" for line in lines))
    progress.chmod(0o600)
    applied = apply_plan(tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert "Traceback" not in applied.stderr
    assert report(tmp_path)["lists"][VIP]["removed"] == 1, "a progress line of another size does not count"
    assert set(members(server, VIP)) == {"a@example.com"}


# Found by the fourth hostile review.


def test_an_upsert_run_during_a_mirror_run_voids_the_plan_that_run_writes(sandbox_factory, live, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "b@example.com")
    cfg = config(server, tmp_path, stream_lists={"vip": VIP}, mirror_max_removal_fraction=1)
    head = [schema("vip"), activate("vip")]
    mirroring = live(cfg)
    mirroring.send([*head, record("vip", id=1, email="a@example.com")])
    mirroring.wait_for(lambda: "Connected to Klaviyo" in mirroring.stderr)
    (tmp_path / "u").mkdir()
    # With the ledger on, the upsert run is refused at the list's lock (tests/integration/test_ledger.py);
    # without it, the two runs overlap, and the plan must not survive.
    upsert = {**cfg, "sync_mode": "upsert", "use_ledger": False}
    assert (
        run_cli(
            upsert, [*head, record("vip", id=2, email="b@example.com"), state(2)], tmp_path / "u"
        ).returncode
        == 0
    )
    mirroring.send([state(1)])
    mirroring.close_input()
    assert mirroring.wait() == 0, mirroring.stderr
    applied = apply_plan(tmp_path)
    assert applied.returncode == 1
    assert "is not from the latest mirror run of this config" in applied.stderr
    assert "b@example.com" in members(server, VIP)


def test_a_run_whose_config_fails_its_checks_still_supersedes_the_plan(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "b@example.com")
    cfg = config(server, tmp_path, stream_lists={"vip": VIP}, mirror_max_removal_fraction=1)
    messages = [schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com"), state(1)]
    assert run_cli(cfg, messages, tmp_path).returncode == 0
    (tmp_path / "bad").mkdir()
    for bad in ({"max_jobs_in_flight": 0}, {"default_phone_region": "XX"}):
        assert run_cli({**cfg, **bad}, messages, tmp_path / "bad").returncode == 1
    applied = apply_plan(tmp_path)
    assert applied.returncode == 1
    assert "b@example.com" in members(server, VIP)


def test_a_deeply_nested_report_at_apply_is_a_warning_and_the_plan_is_used(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "b@example.com")
    cfg = config(server, tmp_path, stream_lists={"vip": VIP}, mirror_max_removal_fraction=1)
    messages = [schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com"), state(1)]
    assert run_cli(cfg, messages, tmp_path).returncode == 0
    (tmp_path / "report.json").write_text("[" * 100_000 + "]" * 100_000)
    applied = apply_plan(tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert "Traceback" not in applied.stderr
    assert "The run's report could not be updated with the removals (RecursionError)." in applied.stderr
    assert not plan_file(tmp_path).exists()


# Found by the fifth hostile review.


def test_a_failed_run_supersedes_the_plan_whatever_the_spelling_or_source_of_its_config(
    sandbox_factory, tmp_path
):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "b@example.com")
    messages = [schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com"), state(1)]
    padded = {"api_key": API_KEY, "api_url": server.url, "list_id": f" {VIP} ", "sync_mode": "mirror",
              "mirror_max_removal_fraction": 1}  # fmt: skip
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    assert run_cli(padded, messages, tmp_path / "a", cwd=tmp_path).returncode == 0
    failing = {**padded, "property_mapping": {"nosuch": "x"}}
    assert run_cli(failing, messages, tmp_path / "b", cwd=tmp_path).returncode == 1
    assert mirror_with_config(tmp_path / "a" / "config.json", cwd=tmp_path).returncode == 1
    environ = {"TARGET_KLAVIYO_API_KEY": API_KEY, "TARGET_KLAVIYO_API_URL": server.url,
               "TARGET_KLAVIYO_LIST_ID": VIP, "TARGET_KLAVIYO_SYNC_MODE": "mirror",
               "TARGET_KLAVIYO_MIRROR_MAX_REMOVAL_FRACTION": "1",
               "TARGET_KLAVIYO_MIRROR_PLAN_PATH": str(tmp_path / "plan" / "env.json")}  # fmt: skip

    def target(extra: dict) -> int:
        return subprocess.run(
            [str(TARGET_BIN), "--config", "ENV"], input=singer_text(messages), capture_output=True, text=True,
            env={**environment_without_settings(), **environ, **extra}, timeout=120, check=False,
        ).returncode  # fmt: skip

    assert target({}) == 0
    assert (tmp_path / "plan" / "env.json").exists()
    assert target({"TARGET_KLAVIYO_MAX_JOBS_IN_FLIGHT": "0"}) == 1
    applied = subprocess.run(
        [str(MIRROR_BIN), "--config", "ENV"], capture_output=True, text=True,
        env={**environment_without_settings(), **environ}, timeout=120, check=False,
    )  # fmt: skip
    assert applied.returncode == 1
    assert "b@example.com" in members(server, VIP)


# Found by the sixth hostile review.


def test_a_run_whose_final_state_cannot_be_written_leaves_no_plan(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "b@example.com")
    cfg = config(server, tmp_path, stream_lists={"vip": VIP}, mirror_max_removal_fraction=1)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "in.jsonl").write_text(
        singer_text([schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com"), state(1)])
    )
    command = f"{TARGET_BIN} --config {tmp_path}/config.json < {tmp_path}/in.jsonl | true; echo rc=${{PIPESTATUS[0]}}"
    closed = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, env=environment_without_settings(), timeout=120,
        check=False,
    )  # fmt: skip
    assert "rc=1" in closed.stdout, closed.stderr
    assert not plan_file(tmp_path).exists(), "the plan is the run's last word, after its STATE"
    assert apply_plan(tmp_path).returncode == 1
    assert "b@example.com" in members(server, VIP)


def plan_and_apply_while_throttled(sandbox_factory, tmp_path):
    """A mirror run plans to remove b; target-klaviyo-mirror starts and keeps retrying its removal
    (every DELETE throttled) until finish_apply: the window in which a newer run may start."""
    from klaviyo_sandbox.faults import FaultPlan

    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "b@example.com")
    cfg = config(server, tmp_path, stream_lists={"vip": VIP}, mirror_max_removal_fraction=1)
    messages = [schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com"), state(1)]
    assert run_cli(cfg, messages, tmp_path).returncode == 0
    server.settings.faults = FaultPlan(
        throttle=1.0, operations=frozenset({"DELETE /api/lists/{id}/relationships/profiles"})
    )
    applying = subprocess.Popen(
        [str(MIRROR_BIN), "--config", str(tmp_path / "config.json")], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=environment_without_settings(),
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not any(r.method == "DELETE" for r in server.recorded):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return server, cfg, applying


def finish_apply(server, applying):
    """Lift the throttling and let the apply end; its stdout and stderr."""
    from klaviyo_sandbox.faults import FaultPlan

    server.settings.faults = FaultPlan()
    return applying.communicate(timeout=120)


def test_a_newer_run_stops_an_apply_that_is_still_retrying(sandbox_factory, tmp_path):
    server, cfg, applying = plan_and_apply_while_throttled(sandbox_factory, tmp_path)
    (tmp_path / "u").mkdir()
    upsert = [schema("vip"), record("vip", id=2, email="b@example.com"), state(2)]
    assert run_cli({**cfg, "sync_mode": "upsert"}, upsert, tmp_path / "u").returncode == 0
    _, stderr = finish_apply(server, applying)
    assert applying.returncode == 1
    assert "A newer run of this loader started while" in stderr
    assert "b@example.com" in members(server, VIP)


# Found by the seventh hostile review.


def test_an_address_in_bytes_that_are_not_utf8_keeps_its_member(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "b\u00e9@example.com", "left@example.com")
    overrides = {"stream_lists": {"vip": VIP}, "mirror_max_removal_fraction": 1, "max_reject_fraction": 1}
    text = singer_text([schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com"),
                        record("vip", id=2, email="bXXX@example.com"), state(1)])  # fmt: skip
    latin1 = text.encode().replace(b"bXXX", b"b\xe9")  # Latin-1, as an old source writes it
    result = run_cli_text(config(server, tmp_path, **overrides), latin1, tmp_path)
    assert result.returncode == 0, result.stderr
    assert apply_plan(tmp_path).returncode == 0
    assert set(members(server, VIP)) == {"a@example.com", "b\u00e9@example.com"}


def test_a_failed_run_whose_variables_cannot_be_parsed_still_supersedes_the_plan(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "b@example.com")
    messages = [schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com"), state(1)]
    environ = {**environment_without_settings(), "TARGET_KLAVIYO_API_KEY": API_KEY,
               "TARGET_KLAVIYO_API_URL": server.url, "TARGET_KLAVIYO_LIST_ID": VIP,
               "TARGET_KLAVIYO_SYNC_MODE": "mirror", "TARGET_KLAVIYO_MIRROR_MAX_REMOVAL_FRACTION": "1",
               "TARGET_KLAVIYO_MIRROR_PLAN_PATH": str(tmp_path / "plan" / "env.json")}  # fmt: skip

    def target(extra: dict) -> int:
        return subprocess.run(
            [str(TARGET_BIN), "--config", "ENV"], input=singer_text(messages), capture_output=True, text=True,
            env={**environ, **extra}, timeout=120, check=False,
        ).returncode  # fmt: skip

    for unparsable in ({"TARGET_KLAVIYO_MAX_JOBS_IN_FLIGHT": "abc"}, {"TARGET_KLAVIYO_DRY_RUN": "ture"}):
        assert target({}) == 0
        assert target(unparsable) == 1
        assert not (tmp_path / "plan" / "env.json").exists(), unparsable
    assert "b@example.com" in members(server, VIP)


# Found by the eighth hostile review.


def test_an_address_beside_bytes_that_are_not_utf8_keeps_its_member(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    seed(server, VIP, "a@example.com", "m\u00fcller@example.com")
    overrides = {"stream_lists": {"vip": VIP}, "mirror_max_removal_fraction": 1, "max_reject_fraction": 1}
    text = singer_text([schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com"),
                        record("vip", id=2, email="NAME <m\u00fcller@example.com>"), state(1)])  # fmt: skip
    mixed = text.encode().replace(b"NAME", b"M\xfcller")  # a Latin-1 name beside a UTF-8 address
    result = run_cli_text(config(server, tmp_path, **overrides), mixed, tmp_path)
    assert result.returncode == 0, result.stderr
    assert apply_plan(tmp_path).returncode == 0
    assert "m\u00fcller@example.com" in members(server, VIP)
    odd = singer_text([schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com")])
    odd += '{"type":"RECORD","stream":"vip","record":{"id":2,"email":"\\udce9\\ud800 c@example.com"}}\n'
    odd_result = run_cli_text(config(server, tmp_path, **overrides), odd + singer_text([state(1)]), tmp_path)
    assert "Traceback" not in odd_result.stderr


def test_a_mirror_run_that_finds_an_apply_going_on_stops_it(sandbox_factory, tmp_path):
    server, cfg, applying = plan_and_apply_while_throttled(sandbox_factory, tmp_path)
    head = [schema("vip"), activate("vip"), record("vip", id=1, email="a@example.com")]
    (tmp_path / "next").mkdir()
    later = run_cli(cfg, [*head, record("vip", id=2, email="b@example.com"), state(2)], tmp_path / "next")
    assert later.returncode == 1
    assert "Another target-klaviyo mirror run or target-klaviyo-mirror is using" in later.stderr
    _, stderr = finish_apply(server, applying)
    assert applying.returncode == 1
    assert "A newer run of this loader started while" in stderr
    assert "b@example.com" in members(server, VIP)


# Found by the ninth hostile review.


def test_an_incremental_bookmark_under_a_field_name_or_bookmark_properties_outweighs_activate_version(
    sandbox_factory, tmp_path
):
    """tap-salesforce sends ACTIVATE_VERSION at every incremental sync, bookmarked by field name."""
    for incremental_schema in (False, True):
        server = sandbox_factory(lists=(VIP,))
        seed(server, VIP, "a@example.com", "b@example.com", "c@example.com", "d@example.com")
        contact = schema("Contact")
        if incremental_schema:
            contact["bookmark_properties"] = ["SystemModstamp"]
            bookmark: dict = {"version": 1}
        else:
            bookmark = {"version": 1, "SystemModstamp": "2026-11-01T00:00:00.000000Z"}
        messages = [bookmark_state({"Contact": bookmark}), contact, activate("Contact"),
                    record("Contact", id=1, email="a@example.com"), record("Contact", id=2, email="b@example.com"),
                    bookmark_state({"Contact": bookmark})]  # fmt: skip
        result = run_cli(config(server, tmp_path, stream_lists={"Contact": VIP}), messages, tmp_path)
        assert result.returncode == 1, incremental_schema
        assert "stream 'Contact' has an incremental bookmark" in result.stderr
        assert apply_plan(tmp_path).returncode == 1
        assert len(members(server, VIP)) == 4
