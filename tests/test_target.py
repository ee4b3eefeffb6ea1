"""Failure paths of a whole run, in process so that retry waits can be skipped."""

from __future__ import annotations

import json
import re

import pytest
from streams import SEGMENT_MAPPING, segment_messages
from support import base_config, customers, members, run_in_process, schema, state

from klaviyo_sandbox import FaultPlan
from target_klaviyo.errors import ErrorDetail, KlaviyoApiError, KlaviyoError
from target_klaviyo.target import TargetKlaviyo

JOBS = "POST /api/profile-bulk-import-jobs"


def test_api_errors_after_retries_fail_the_run_without_state(sandbox_factory, no_sleep, capsys, tmp_path):
    server = sandbox_factory(job_delay=0, faults=FaultPlan(server_error=1.0, operations=frozenset({JOBS})))
    config = base_config(server, report_path=str(tmp_path / "report.json"))
    with pytest.raises(KlaviyoApiError, match=r"Klaviyo answered 50\d to POST /api/profile-bulk-import-jobs"):
        run_in_process(config, [schema(), *customers(3), state(3)])
    assert capsys.readouterr().out == ""
    assert json.loads((tmp_path / "report.json").read_text())["outcome"] == "failed"
    assert members(server) == {}


def test_transient_faults_everywhere_are_absorbed(sandbox_factory, no_sleep, capsys):
    plan = FaultPlan(server_error=0.25, throttle=0.15, drop=0.1, seed=3)
    server = sandbox_factory(job_delay=0, faults=plan)
    target = run_in_process(base_config(server, batch_size_rows=4), [schema(), *customers(20), state(20)])
    assert len(members(server)) == 20
    assert target.run.report.exported == 20
    assert json.loads(capsys.readouterr().out) == state(20)["value"]
    assert no_sleep, "the faults should have caused retries"


def test_a_state_after_a_failure_is_never_written(sandbox_factory, no_sleep, capsys):
    server = sandbox_factory(job_delay=0, faults=FaultPlan(server_error=1.0, operations=frozenset({JOBS})))
    with pytest.raises(KlaviyoApiError):
        run_in_process(base_config(server, batch_size_rows=2), [schema(), state(0), *customers(4), state(4)])
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line) == state(0)["value"], "no record stood before state 0"


def progress_lines(sandbox_factory, monkeypatch, caplog, job_delay: float) -> list[str]:
    """The progress lines of a three-record run, with a progress line allowed at every chance."""
    from target_klaviyo.run import report

    monkeypatch.setattr(report, "PROGRESS_INTERVAL", 0.0)
    server = sandbox_factory(job_delay=job_delay)
    with caplog.at_level("INFO"):
        run_in_process(base_config(server), [schema(), *customers(3)])
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("Progress: ")]


def test_progress_lines_during_a_run(sandbox_factory, monkeypatch, caplog):
    progress = progress_lines(sandbox_factory, monkeypatch, caplog, job_delay=0)
    assert progress
    assert progress[-1].startswith("Progress: 3 records read")


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (401, "Klaviyo rejected the API key (401)"),
        (403, "Klaviyo rejected the API key (403)"),
        (404, "no list with id"),
    ],
)
def test_connection_check_names_the_problem(sandbox, monkeypatch, status, words):
    target = TargetKlaviyo(config=base_config(sandbox), parse_env_config=False)

    def refuse(path, params=None, budget=None):
        raise KlaviyoApiError("GET", path, status, [ErrorDetail("x", "refused", None)])

    monkeypatch.setattr(target.run.client, "get", refuse)
    with pytest.raises(KlaviyoError) as caught:
        target.run.start()
    assert words in str(caught.value)
    assert not isinstance(caught.value, KlaviyoApiError)


def test_connection_check_passes_other_errors_through(sandbox, monkeypatch):
    target = TargetKlaviyo(config=base_config(sandbox), parse_env_config=False)

    def fail(path, params=None, budget=None):
        raise KlaviyoApiError("GET", path, 400, [])

    monkeypatch.setattr(target.run.client, "get", fail)
    with pytest.raises(KlaviyoApiError, match="400"):
        target.run.start()


def test_a_lost_answer_to_a_job_creation_is_retried_and_counted_once(sandbox_factory, no_sleep, capsys):
    plan = FaultPlan(lost_answer=0.4, seed=2, operations=frozenset({JOBS}))
    server = sandbox_factory(job_delay=0, faults=plan)
    target = run_in_process(base_config(server, batch_size_rows=2), [schema(), *customers(10), state(10)])
    created = [
        r for r in server.recorded if r.spec_path == "/api/profile-bulk-import-jobs" and r.status == 202
    ]
    report = target.run.report
    assert len(created) > len(report.job_ids), "some job was created twice: its first answer was lost"
    assert report.exported == 10
    assert report.unaccounted == 0
    assert report.retried == len(created) - len(report.job_ids)
    assert len(members(server)) == 10
    assert json.loads(capsys.readouterr().out) == state(10)["value"]


def test_progress_lines_while_waiting_for_jobs(sandbox_factory, monkeypatch, caplog):
    progress = progress_lines(sandbox_factory, monkeypatch, caplog, job_delay=1.5)
    assert any("import jobs 0 done and 1 in flight" in line for line in progress)


JOB_POSITION = re.compile(r"/data/\d+")


def run_segment(sandbox_factory, tmp_path, name: str, **overrides) -> dict:
    """Run a generated segment (rejects, repeats, metadata keys) and collect what it produced.

    Klaviyo refuses profiles at one domain when a job is submitted and fails those at
    another while it runs, so rejects are also written for profiles held and in flight.
    """
    server = sandbox_factory(refuse_domains=("example.se",), fail_domains=("shop.example.co.uk",))
    messages = list(segment_messages(3_000, seed=5, state_every=700))
    for message in messages[1:200:7]:
        if message["type"] == "RECORD":
            message["record"]["_sdc_extracted_at"] = "2026-11-28T06:00:00+00:00"
            message["record"]["_sdc_custom"] = 1
            message["record"]["LifetimeValue"] = "lots"  # against the schema
    directory = tmp_path / name
    directory.mkdir()
    config = base_config(
        server,
        **SEGMENT_MAPPING,
        batch_size_rows=500,
        rejects_path=str(directory / "rejects.jsonl"),
        report_path=str(directory / "report.json"),
        **overrides,
    )
    target = run_in_process(config, messages)
    report = json.loads((directory / "report.json").read_text())
    counts = report["counts"]
    # Which repeats of a person are merged before sending and which are sent again depends on
    # which jobs are still running at each drain, a matter of timing; the outcome does not.
    return {
        "plain_streams": dict(target._plain_streams),
        "counts": {
            key: value
            for key, value in counts.items()
            if key not in {"exported", "deduplicated", "sent_again"}
        },
        # Jobs are submitted and settled on two threads, so rejects arrive in either order, and a
        # profile's place in its job (in Klaviyo's pointer) depends on who was held back.
        "rejects": sorted(
            (
                {
                    key: JOB_POSITION.sub("/data/N", value) if key == "detail" else value
                    for key, value in json.loads(line).items()
                    if key != "rejected_at"
                }
                for line in (directory / "rejects.jsonl").read_text().splitlines()
            ),
            key=lambda reject: json.dumps(reject, sort_keys=True),
        ),
        "members": members(server),
    }


def test_the_record_lane_does_what_the_sdks_record_path_does(sandbox_factory, tmp_path):
    """A stream map that changes nothing sends records through the SDK's own path: same outcome."""
    lane = run_segment(sandbox_factory, tmp_path, "lane")
    sdk = run_segment(sandbox_factory, tmp_path, "sdk", stream_maps={"customers": {"Plan": "Plan"}})
    assert list(lane.pop("plain_streams")) == ["customers"]
    assert sdk.pop("plain_streams") == {}
    assert lane["counts"]["rejected"] > 50
    assert lane["counts"]["rejected_by_reason"]["schema_violation"] > 20
    assert lane["counts"]["rejected_by_reason"]["rejected_by_klaviyo"] > 500
    assert any(reject["record"].get("_sdc_extracted_at") is None for reject in lane["rejects"])
    assert lane == sdk
