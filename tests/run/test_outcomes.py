"""The accountant: what a worker thread reports while the run ends is dropped, never half-written."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

from target_klaviyo.delivery.batch import PendingProfile, record_of
from target_klaviyo.records.profile import Reject
from target_klaviyo.run.outcomes import Outcomes
from target_klaviyo.run.report import RunReport
from target_klaviyo.run.run import ExportRun
from target_klaviyo.run.state import StateLedger
from target_klaviyo.settings.settings import Settings


def test_a_reject_arriving_while_the_run_ends_stays_out_of_both_the_report_and_the_rejects_file(
    tmp_path: Path,
) -> None:
    rejects, report_path = tmp_path / "rejects.jsonl", tmp_path / "report.json"
    settings = Settings.from_config(
        {
            "api_key": "k",
            "list_id": "L",
            "dry_run": True,
            "rejects_path": str(rejects),
            "report_path": str(report_path),
        }
    )
    run = ExportRun(settings)
    reading, ended = threading.Event(), threading.Event()

    class ReadWhileTheRunEnds(PendingProfile):
        """Its record is read back (from its line, in a real run) while the main thread ends the run."""

        @property
        def record(self) -> dict[str, Any]:
            reading.set()
            assert ended.wait(10), "the main thread did not end the run"
            return record_of(self.source)

    record = {"email": "late@example.com"}
    profile = run.mapper.map(record)
    assert not isinstance(profile, Reject)
    item = ReadWhileTheRunEnds(
        profile.key, profile.encoded, "s", record, run.ledger.open_record(), list_id="L"
    )
    # Stands in for the settling thread, which reports a profile Klaviyo failed.
    worker = threading.Thread(
        target=run.outcomes.rejected, args=(item, Reject("rejected_by_klaviyo", "too late")), name="settle"
    )
    worker.start()
    assert reading.wait(10)
    run.finish()  # the main thread ends the run while the worker is between its check and its write
    ended.set()
    worker.join(10)
    assert not worker.is_alive()
    lines = rejects.read_text().splitlines() if rejects.exists() else []
    counted = json.loads(report_path.read_text())["counts"]["rejected"]
    assert len(lines) == counted == run.report.rejected_total == 0
    assert run.outcomes.late == 1


def test_a_reject_the_reading_thread_reports_after_the_end_reopens_nothing(tmp_path):
    report = RunReport(rejects_path=tmp_path / "rejects.jsonl")
    report.start_rejects()
    outcomes = Outcomes(report, StateLedger(io.StringIO()), lambda key, order: False)
    outcomes.close("failed")
    outcomes.reject("people", {"id": 1}, Reject("missing_email", "no email"))
    assert report.rejected_total == 0
    assert (tmp_path / "rejects.jsonl").read_text() == ""
    assert outcomes.late == 1
