"""stream_lists: one tap, several segment streams, each into its own Klaviyo list."""

from __future__ import annotations

import json

from support import API_KEY, LIST_ID, bulk_jobs, members, record, run_cli, schema

VIP, CHURN = "ViP001", "ChuRN2"


def config(server, tmp_path, **overrides):
    return {
        "api_key": API_KEY,
        "api_url": server.url,
        "stream_lists": {"vip": VIP, "churn_risk": CHURN},
        "report_path": str(tmp_path / "report.json"),
        **overrides,
    }


def run_segments(sandbox_factory, tmp_path, *records, **overrides):
    """Run the vip and churn_risk streams' records into their two lists; returns the sandbox."""
    server = sandbox_factory(lists=(VIP, CHURN))
    messages = [schema("vip"), schema("churn_risk"), *records]
    result = run_cli(config(server, tmp_path, **overrides), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    return server


def test_two_streams_go_to_two_lists(sandbox_factory, tmp_path):
    server = run_segments(
        sandbox_factory,
        tmp_path,
        record("vip", id=1, email="ada@example.com", plan="vip"),
        record("churn_risk", id=2, email="bob@example.com", plan="free"),
        record("vip", id=3, email="both@example.com", plan="vip"),
        record("churn_risk", id=4, email="both@example.com", plan="churning"),
    )
    assert set(members(server, VIP)) == {"ada@example.com", "both@example.com"}
    assert set(members(server, CHURN)) == {"bob@example.com", "both@example.com"}
    assert members(server, LIST_ID) == {}
    # One person in two lists is one profile, and the later record is applied last.
    assert members(server, CHURN)["both@example.com"]["properties"]["plan"] == "churning"
    counts = json.loads((tmp_path / "report.json").read_text())["counts"]
    assert counts["distinct_profiles"] == 3
    assert counts["exported"] == 4
    assert counts["sent_again"] == 0
    report = json.loads((tmp_path / "report.json").read_text())
    new = {"unchanged": 0, "ledger": {"new": 2, "changed": 0, "due": 0}}
    assert report["lists"] == {
        CHURN: {"exported": 2, "subscribed": 0, **new},
        VIP: {"exported": 2, "subscribed": 0, **new},
    }
    assert report["lists_touched"] == sorted([CHURN, VIP])
    lists_of_jobs = [job.body["data"]["relationships"]["lists"]["data"][0]["id"] for job in bulk_jobs(server)]
    assert set(lists_of_jobs) == {VIP, CHURN}


def test_streams_not_named_go_to_list_id(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP, CHURN))
    messages = [schema("vip"), schema("customers"), record("vip", id=1, email="a@example.com"),
                record("customers", id=2, email="b@example.com")]  # fmt: skip
    result = run_cli(config(server, tmp_path, list_id=LIST_ID), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(members(server, VIP)) == {"a@example.com"}
    assert set(members(server, LIST_ID)) == {"b@example.com"}


def test_a_stream_without_a_list_is_a_configuration_error_before_its_records(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP, CHURN))
    messages = [schema("vip"), schema("others"), record("vip", id=1, email="a@example.com")]
    result = run_cli(config(server, tmp_path), messages, tmp_path)
    assert result.returncode == 1
    assert "Stream 'others' has no Klaviyo list: add it to stream_lists, or set list_id" in result.stderr
    assert "Traceback" not in result.stderr
    assert bulk_jobs(server) == []


def test_every_list_is_checked_before_any_profile_is_sent(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=(VIP,))
    messages = [schema("vip"), record("vip", id=1, email="a@example.com")]
    result = run_cli(config(server, tmp_path), messages, tmp_path)
    assert result.returncode == 1
    assert (
        f"Klaviyo has no list with id {CHURN!r} for this API key: check the stream_lists setting."
        in result.stderr
    )
    assert bulk_jobs(server) == []


def test_the_limit_counts_people_across_lists(sandbox_factory, tmp_path):
    server = run_segments(
        sandbox_factory,
        tmp_path,
        record("vip", id=1, email="a@example.com"),
        record("churn_risk", id=2, email="a@example.com"),
        record("churn_risk", id=3, email="b@example.com"),
        max_profiles_per_run=1,
        on_limit_exceeded="truncate",
    )
    assert set(members(server, VIP)) == {"a@example.com"}
    assert set(members(server, CHURN)) == {"a@example.com"}
    counts = json.loads((tmp_path / "report.json").read_text())["counts"]
    assert counts["skipped_over_limit"] == 1


def test_a_person_in_two_lists_gets_their_later_record_last(sandbox_factory, tmp_path):
    """Without holding the later record back, the lists' jobs would be sent in list order."""
    server = run_segments(
        sandbox_factory,
        tmp_path,
        record("vip", id=1, email="a@example.com"),
        record("churn_risk", id=2, email="both@example.com", plan="earlier"),
        record("vip", id=3, email="both@example.com", plan="later"),
    )
    assert members(server, VIP)["both@example.com"]["properties"]["plan"] == "later"
    assert set(members(server, CHURN)) == {"both@example.com"}


def test_a_person_in_three_lists_is_in_all_three(sandbox_factory, tmp_path):
    server = run_segments(
        sandbox_factory,
        tmp_path,
        schema("customers"),
        record("vip", id=1, email="all@example.com", plan="one"),
        record("churn_risk", id=2, email="all@example.com", plan="two"),
        record("customers", id=3, email="all@example.com", plan="three"),
        list_id=LIST_ID,
    )
    for list_id in (VIP, CHURN, LIST_ID):
        assert set(members(server, list_id)) == {"all@example.com"}
    assert members(server, LIST_ID)["all@example.com"]["properties"]["plan"] == "three"
