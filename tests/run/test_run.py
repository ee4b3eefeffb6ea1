"""The run's own rules: the limit, dedupe across batches, and what counts where (dry run, no HTTP)."""

import pytest

from target_klaviyo.delivery.batch import PendingProfile
from target_klaviyo.errors import ProfileLimitReached
from target_klaviyo.records.profile import Reject
from target_klaviyo.run.run import ExportRun
from target_klaviyo.settings.settings import Settings


def export_run(**config) -> ExportRun:
    return ExportRun(Settings.from_config({"api_key": "k", "list_id": "L", "dry_run": True, **config}))


def add(run: ExportRun, email: str, **fields) -> None:
    record = {"email": email, **fields}
    run.record_read()
    run.add(run.mapper.map(record), "s", record, record, run.settings.list_id or "")


def test_limit_counts_distinct_profiles_only():
    run = export_run(max_profiles_per_run=2, on_limit_exceeded="truncate")
    for email in ["a@x.io", "a@x.io", "b@x.io", "c@x.io", "B@x.io"]:
        add(run, email)
    assert run.limit_reached
    assert run.report.distinct_profiles == 2
    assert run.report.skipped_over_limit == 1


def test_zero_means_no_limit():
    run = export_run(max_profiles_per_run=0)
    for i in range(1000):
        add(run, f"p{i}@x.io")
    assert run.report.distinct_profiles == 1000
    assert not run.limit_reached


def test_later_record_wins_and_earlier_is_counted_as_deduplicated():
    run = export_run()
    add(run, "a@example.com", plan="free")
    add(run, "A@Example.com", plan="pro")
    assert run.report.deduplicated == 1
    [held] = run.batcher.held()
    assert held.record["plan"] == "pro"


def test_a_profile_already_sent_is_sent_again_and_counted():
    run = export_run()
    add(run, "a@example.com", plan="free")
    run.send_pending()
    add(run, "a@example.com", plan="pro")
    run.send_pending()
    assert run.report.sent_again == 1
    assert run.report.deduplicated == 0
    assert run.report.exported == 2
    assert run.report.distinct_profiles == 1


def test_the_limit_in_fail_mode_sends_what_is_held_and_explains_the_way_out():
    run = export_run(max_profiles_per_run=2)
    add(run, "a@x.io")
    add(run, "b@x.io")
    with pytest.raises(ProfileLimitReached) as caught:
        add(run, "c@x.io")
    assert run.report.exported == 2
    assert run.report.skipped_over_limit == 1
    assert "max_profiles_per_run (2 distinct profiles)" in str(caught.value)
    assert "on_limit_exceeded to truncate" in str(caught.value)


def test_a_run_ends_once_with_the_outcome_of_what_stopped_it():
    run = export_run()
    with pytest.raises(ValueError, match="boom"), run.guard():
        raise ValueError("boom")
    assert run.report.outcome == "failed"
    with pytest.raises(ValueError, match="again"), run.guard():
        raise ValueError("again")
    assert run.report.outcome == "failed"
    run.finish()
    assert run.report.outcome == "failed"


def test_a_dry_run_accounts_for_state_but_writes_none(capsys):
    run = export_run()
    add(run, "a@x.io")
    run.add_state({"position": 1})
    run.finish()
    assert run.report.outcome == "complete"
    assert run.report.unaccounted == 0
    assert capsys.readouterr().out == ""


def test_what_a_background_thread_reports_after_the_end_stays_out_of_the_report(tmp_path):
    run = export_run(rejects_path=str(tmp_path / "rejects.jsonl"))
    record = {"email": "late@example.com"}
    item = PendingProfile.of(run.mapper.map(record), "s", record, run.ledger.open_record(), list_id="L")
    run.finish()
    run.outcomes.rejected(item, Reject("rejected_by_klaviyo", "too late"))
    assert run.report.rejected_total == 0
    assert (
        not (tmp_path / "rejects.jsonl").exists() or "late@" not in (tmp_path / "rejects.jsonl").read_text()
    )
