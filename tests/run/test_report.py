import datetime
import json

from target_klaviyo.records.profile import Reject
from target_klaviyo.run.report import RunReport


def test_rejects_file_holds_reason_detail_and_record(tmp_path):
    path = tmp_path / "out" / "rejects.jsonl"
    report = RunReport(path)
    when = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    report.reject("customers", {"email": None, "at": when}, Reject("missing_email", "no email"))
    report.reject("customers", {"email": "a@example.com"}, Reject("invalid_phone", "bad"), counted=False)
    report.reject("customers", {"email": "b@example.com"}, Reject("over_limit", "skipped"))
    report.close()
    [only] = (json.loads(line) for line in path.read_text().splitlines())
    assert only["reason"] == "missing_email"
    assert only["record"] == {"email": None, "at": "2026-01-01T00:00:00+00:00"}
    assert report.rejected == {"missing_email": 1}
    assert report.attributes_dropped == {"invalid_phone": 1}, "a dropped value is counted, not a line"
    assert report.skipped_over_limit == 1, "a record skipped over the limit is counted, not a line"


def test_rejects_file_holds_this_runs_rejects_only(tmp_path):
    path = tmp_path / "rejects.jsonl"
    for count in (3, 1, 0):
        report = RunReport(path)
        report.start_rejects()
        for _ in range(count):
            report.reject("s", {}, Reject("missing_email", "x"))
        report.close()
        assert len(path.read_text().splitlines()) == count == report.rejected_total


def test_no_rejects_file_without_rejects(tmp_path):
    report = RunReport(tmp_path / "rejects.jsonl")
    report.close()
    assert not (tmp_path / "rejects.jsonl").exists()


def test_accounting_and_summary():
    report = RunReport()
    report.read = 10
    report.exported = 5
    report.deduplicated = 2
    report.reject("s", {}, Reject("missing_email", "x"))
    report.reject("s", {}, Reject("over_limit", "x"))
    assert report.unaccounted == 1
    report.reject("s", {}, Reject("invalid_email", "x"))
    assert report.unaccounted == 0
    report.outcome = "complete"
    summary = report.summary()
    assert summary.startswith(
        "Run complete: 10 records read = 5 exported, 2 deduplicated, 2 rejected (invalid_email 1, "
        "missing_email 1), 1 skipped over the profile limit; 0 distinct people sent"
    ), "the records read are the sum of what became of them"


def test_the_summary_adds_up_with_one_number_format():
    report = RunReport()
    report.read, report.exported, report.sent_again, report.distinct_profiles = 49_365, 49_360, 1_152, 48_208
    for _ in range(5):
        report.reject("s", {}, Reject("invalid_email", "x"))
    report.job_ids += ["J"] * 5
    summary = report.summary()
    assert "49,365 records read = 49,360 exported (1,152 of them sent again" in summary
    assert "48,208 distinct people sent in 5 import job(s)" in summary
    assert report.read == report.exported + report.rejected_total


def test_report_file(tmp_path):
    report = RunReport()
    report.read = 1
    report.job_ids.append("JOB1")
    report.outcome = "complete"
    report.write(tmp_path / "report.json")
    written = json.loads((tmp_path / "report.json").read_text())
    assert written["counts"]["read"] == 1
    assert written["job_ids"] == ["JOB1"]
    assert written["outcome"] == "complete"
    assert written["timings"]["seconds"] >= 0


def test_progress_line_every_interval(monkeypatch, caplog):
    from target_klaviyo.run import report as report_module

    monkeypatch.setattr(report_module, "PROGRESS_INTERVAL", 0.0)
    report = RunReport()
    report.read = 50
    report.exported = 40
    report.job_ids += ["J1", "J2"]
    report.jobs_in_flight = 1
    with caplog.at_level("INFO", logger="target_klaviyo.report"):
        report.tick()
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("Progress: 50 records read (")
    assert "40 profiles exported" in line
    assert "import jobs 1 done and 1 in flight" in line


def test_no_progress_line_before_the_interval(caplog):
    report = RunReport()
    with caplog.at_level("INFO", logger="target_klaviyo.report"):
        report.tick()
    assert caplog.records == []


def test_the_rejects_file_and_the_report_are_private(tmp_path):
    import os
    import stat

    old = os.umask(0)
    try:
        report = RunReport(tmp_path / "out" / "rejects.jsonl")
        report.reject("s", {"email": "a@example.com"}, Reject("invalid_email", "bad"))
        report.close()
        report.write(tmp_path / "out" / "report.json")
    finally:
        os.umask(old)
    for name in ("rejects.jsonl", "report.json"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o600, name


def test_a_reject_whose_record_cannot_be_json_is_still_written(tmp_path):
    from decimal import Decimal

    report = RunReport(tmp_path / "rejects.jsonl")
    report.reject(
        "s", {"n": Decimal("1e999999999"), "nan": Decimal("NaN")}, Reject("unrepresentable_number", "x")
    )
    report.reject("s", {"f": float("nan")}, Reject("unrepresentable_number", "y"))
    report.close()
    first, second = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert first["record"] == {"n": "1E+999999999", "nan": "NaN"}
    assert second["record"] is None
    assert "cannot be written as JSON" in second["detail"]
