"""The run's lifecycle through the real CLI: jobs in flight, STATE as batches are confirmed,
failures of one job among several, SIGTERM/SIGINT, SIGKILL and resume."""

from __future__ import annotations

import json
import signal
import time

import pytest
from support import (
    base_config,
    bulk_jobs,
    customers,
    members,
    record,
    run_cli,
    schema,
    state,
)


def accepted_jobs(server) -> int:
    return sum(1 for r in bulk_jobs(server) if r.status == 202)


def job_emails(job) -> list[str]:
    return [p["attributes"]["email"] for p in job.body["data"]["attributes"]["profiles"]["data"]]


def test_a_state_is_written_while_the_tap_is_still_running(sandbox_factory, live, tmp_path):
    server = sandbox_factory(job_delay=0.2)
    target = live(base_config(server, batch_size_rows=5))
    target.send([schema(), *customers(5), state(5), *customers(2, start=5)])
    target.wait_for(lambda: target.states, timeout=20)
    assert target.states == [state(5)["value"]]
    assert {f"person{i}@example.com" for i in range(5)} <= set(members(server))
    target.send([state(7)])
    target.close_input()
    assert target.wait() == 0, target.stderr
    assert target.states == [state(5)["value"], state(7)["value"]]


def test_state_is_held_back_until_every_earlier_job_is_final(sandbox_factory, live, tmp_path):
    server = sandbox_factory(job_delay=1.0)
    target = live(base_config(server, batch_size_rows=2, max_jobs_in_flight=4))
    target.send([schema(), *customers(2), state(2), *customers(2, start=2), state(4)])
    target.wait_for(lambda: accepted_jobs(server) == 2)
    time.sleep(0.3)
    assert target.states == [], "both jobs are still running in Klaviyo"
    target.wait_for(lambda: len(target.states) == 2)
    assert len(members(server)) == 4
    target.close_input()
    assert target.wait() == 0, target.stderr


def test_a_failed_job_stops_state_there_while_later_jobs_still_count(sandbox_factory, tmp_path):
    server = sandbox_factory(job_delay=0.5, cancel_domains=("cancel.example.org",))
    report_path = tmp_path / "report.json"
    config = base_config(server, batch_size_rows=2, max_jobs_in_flight=5, report_path=str(report_path))
    messages = [
        schema(),
        *customers(2),
        state(2),
        *customers(1, start=2),
        record(id=3, email="held@cancel.example.org"),
        state(4),
        *customers(2, start=4),
        state(6),
    ]
    result = run_cli(config, messages, tmp_path)
    assert result.returncode == 1
    assert "was cancelled before it completed" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.states == [state(2)["value"]]
    report = json.loads(report_path.read_text())
    assert report["outcome"] == "failed"
    assert report["counts"]["exported"] == 4
    assert report["counts"]["unaccounted"] == 2
    assert set(members(server)) == {f"person{i}@example.com" for i in (0, 1, 4, 5)}


def test_jobs_in_flight_never_exceed_the_bound_and_reach_it(sandbox_factory, tmp_path):
    server = sandbox_factory(job_delay=0.4)
    config = base_config(server, batch_size_rows=1, max_jobs_in_flight=2)
    result = run_cli(config, [schema(), *customers(6), state(6)], tmp_path)
    assert result.returncode == 0, result.stderr
    in_flight, highest = 0, 0
    settled: set[str] = set()
    for request in server.recorded:
        if request.spec_path == "/api/profile-bulk-import-jobs" and request.status == 202:
            in_flight += 1
            highest = max(highest, in_flight)
        elif request.spec_path == "/api/profile-bulk-import-jobs/{job_id}" and request.status == 200:
            job_id = request.response["data"]["id"]
            if request.response["data"]["attributes"]["status"] == "complete" and job_id not in settled:
                settled.add(job_id)
                in_flight -= 1
    assert highest == 2
    assert len(settled) == 6
    assert result.states == [state(6)["value"]]


def test_a_person_in_a_running_job_waits_for_it_so_the_later_record_wins(sandbox_factory, tmp_path):
    server = sandbox_factory(job_delay=0.5)
    messages = [
        schema(),
        record(id=1, email="same@example.com", plan="first"),
        record(id=2, email="same@example.com", plan="second"),
    ]
    result = run_cli(base_config(server, batch_size_rows=1, max_jobs_in_flight=5), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert members(server)["same@example.com"]["properties"]["plan"] == "second"
    _first, second = bulk_jobs(server)
    first_done = next(
        i
        for i, r in enumerate(server.recorded)
        if r.spec_path == "/api/profile-bulk-import-jobs/{job_id}"
        and r.response["data"]["attributes"]["status"] == "complete"
    )
    assert server.recorded.index(second) > first_done


def test_a_person_in_a_running_job_holds_back_only_that_person(sandbox_factory, tmp_path):
    """Others go on in new jobs while the person's earlier job runs; the person follows it."""
    server = sandbox_factory(job_delay=1.0)
    messages = [
        schema(),
        record(id=1, email="same@example.com", plan="first"),
        record(id=2, email="b@example.com"),
        record(id=3, email="same@example.com", plan="second"),
        *[record(id=10 + i, email=f"p{i}@example.com") for i in range(4)],
    ]
    result = run_cli(base_config(server, batch_size_rows=2, max_jobs_in_flight=5), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert members(server)["same@example.com"]["properties"]["plan"] == "second"
    jobs = bulk_jobs(server)
    emails = [
        [p["attributes"]["email"] for p in job.body["data"]["attributes"]["profiles"]["data"]] for job in jobs
    ]
    assert emails[:3] == [
        ["same@example.com", "b@example.com"],
        ["p0@example.com", "p1@example.com"],
        ["p2@example.com", "p3@example.com"],
    ]
    assert emails[3:] == [["same@example.com"]]
    first_done = next(
        i
        for i, r in enumerate(server.recorded)
        if r.spec_path == "/api/profile-bulk-import-jobs/{job_id}"
        and r.response["data"]["attributes"]["status"] == "complete"
    )
    assert server.recorded.index(jobs[2]) < first_done, "the others did not wait for the first job"
    assert server.recorded.index(jobs[3]) > first_done


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_job_stops_within_the_grace_time(sandbox_factory, live, tmp_path, signum, code):
    server = sandbox_factory(job_delay=30)
    report_path = tmp_path / "report.json"
    config = base_config(server, batch_size_rows=1000, stop_grace_seconds=2, report_path=str(report_path))
    target = live(config)
    target.send([schema(), *customers(3000), state(3000)])
    target.wait_for(lambda: target.stderr.count("Submitted import job") == 3)
    signalled = time.monotonic()
    target.process.send_signal(signum)
    assert target.wait(timeout=2 + 5) == code
    assert time.monotonic() - signalled < 2 + 5
    assert target.states == [], "no job finished, so no STATE may be written"
    assert "Traceback" not in target.stderr
    assert f"Stopping on {signal.Signals(signum).name}" in target.stderr
    report = json.loads(report_path.read_text())
    assert report["outcome"] == "interrupted"
    assert report["counts"]["read"] == 3000
    assert report["counts"]["unaccounted"] == 3000
    assert "Run interrupted: 3,000 records read" in target.stderr


def test_jobs_that_finish_within_the_grace_time_are_confirmed(sandbox_factory, live, tmp_path):
    server = sandbox_factory(job_delay=1.0)
    report_path = tmp_path / "report.json"
    config = base_config(server, batch_size_rows=100, stop_grace_seconds=20, report_path=str(report_path))
    target = live(config)
    target.send([schema(), *customers(100), state(100), *customers(50, start=100)])
    target.wait_for(lambda: "Submitted import job" in target.stderr)
    target.process.send_signal(signal.SIGTERM)
    assert target.wait(timeout=20 + 5) == 143
    assert target.states == [state(100)["value"]]
    report = json.loads(report_path.read_text())
    assert report["outcome"] == "interrupted"
    assert report["counts"]["exported"] == 100
    assert report["counts"]["unaccounted"] == report["counts"]["read"] - 100, "held, never sent"
    assert len(members(server)) == 100


def test_a_second_signal_exits_at_once(sandbox_factory, live, tmp_path):
    server = sandbox_factory(job_delay=60)
    target = live(base_config(server, batch_size_rows=10, stop_grace_seconds=60))
    target.send([schema(), *customers(10)])
    target.wait_for(lambda: "Submitted import job" in target.stderr)
    target.process.send_signal(signal.SIGTERM)
    target.wait_for(lambda: "Waiting up to 60 s" in target.stderr)
    signalled = time.monotonic()
    target.process.send_signal(signal.SIGTERM)
    assert target.wait(timeout=10) == 143
    assert time.monotonic() - signalled < 5
    assert "Second termination signal: exiting at once." in target.stderr


def test_sigkill_then_resume_resends_at_most_the_jobs_in_flight(sandbox_factory, live, tmp_path):
    batch, total, in_flight = 500, 6000, 2
    server = sandbox_factory(job_delay=0.4)
    config = base_config(server, batch_size_rows=batch, max_jobs_in_flight=in_flight, max_profiles_per_run=0)

    def stream(start: int) -> list[dict]:
        messages = [schema()]
        for position in range(start, total, batch):
            messages += [*customers(batch, start=position), state(position + batch)]
        return messages

    first = live(config)
    first.send(stream(0)[: 1 + 8 * (batch + 1)])  # four of the twelve batches, and more waiting
    first.wait_for(lambda: len(first.states) >= 2)
    first.process.send_signal(signal.SIGKILL)
    first.wait()
    resume_from = first.states[-1]["bookmarks"]["customers"]["position"]
    sent_first = {email for job in bulk_jobs(server) if job.status == 202 for email in job_emails(job)}
    before = len(bulk_jobs(server))

    result = run_cli(config, stream(resume_from), tmp_path)
    assert result.returncode == 0, result.stderr
    sent_again = {
        email for job in bulk_jobs(server)[before:] if job.status == 202 for email in job_emails(job)
    } & sent_first
    assert len(sent_again) <= in_flight * batch
    assert len(members(server)) == total
    assert result.states[-1] == state(total)["value"]
