"""Bulk import job lifecycle against the sandbox: splitting, refusals, polling, import errors."""

import dataclasses
import json
import time

import pytest
from support import API_KEY, LIST_ID, assert_requests_match_spec, bulk_jobs, members

from klaviyo_sandbox import spec
from target_klaviyo.delivery import batch as batch_module
from target_klaviyo.delivery import jobs
from target_klaviyo.delivery.batch import (
    PendingProfile,
    SentProfile,
    job_body,
    split_for_jobs,
)
from target_klaviyo.delivery.dry_run import describe_dry_run
from target_klaviyo.delivery.jobs import BulkImporter, SubmittedJob
from target_klaviyo.errors import JobCancelled, KlaviyoApiError, KlaviyoError
from target_klaviyo.klaviyo import endpoints, http
from target_klaviyo.klaviyo.http import KlaviyoClient
from target_klaviyo.records.mapping import ProfileMapper
from target_klaviyo.records.profile import Reject
from target_klaviyo.run.report import RunReport
from target_klaviyo.settings.settings import Settings

MAPPER = ProfileMapper(Settings.from_config({"api_key": "k", "list_id": LIST_ID}))


def pending(email: str, **extra) -> PendingProfile:
    record = {"email": email, **extra}
    return PendingProfile.of(MAPPER.map(record), "customers", record, list_id=LIST_ID, describe=True)


class Recorder:
    """JobEvents that count into a report, as the run does."""

    def __init__(self, report: RunReport) -> None:
        self.report = report
        self.done: list[tuple[str, int, int]] = []

    def job_posting(self, chunk: list[PendingProfile]) -> int:
        return 0

    def job_submitted(self, job: SubmittedJob) -> None:
        self.report.job_submitted(job.id)

    def rejected(self, item: PendingProfile, reject: Reject) -> None:
        self.report.reject(item.stream, item.record, reject)

    def job_done(
        self,
        job: SubmittedJob,
        imported_epochs: list[int],
        unmatched_failures: int,
        subscribed: int,
        confirmed: list[int],
    ) -> None:
        self.report.count_exported(len(imported_epochs) - unmatched_failures, job.list_id)
        self.report.count_subscribed(subscribed, job.list_id)
        self.report.job_settled()
        self.done.append((job.id, len(imported_epochs), unmatched_failures))

    def value_dropped(self, item: SentProfile, reject: Reject) -> None:
        self.report.reject(item.stream, item.record, reject, counted=False)


def importer(server, report=None) -> BulkImporter:
    client = KlaviyoClient(server.url, API_KEY, "2026-07-15")
    return BulkImporter(client, Recorder(report or RunReport()))


def import_all(bulk: BulkImporter, items: list[PendingProfile], list_id: str = LIST_ID) -> list[SubmittedJob]:
    """Submit the items, then poll and settle each job in order, as the settling thread does."""
    submitted = [job for chunk in split_for_jobs(items) for job in bulk.submit(list_id, chunk)]
    for job in submitted:
        while (attributes := bulk.poll(job)) is None:
            time.sleep(max(0.0, job.next_poll - time.monotonic()))
        bulk.settle(job, attributes)
    return submitted


def test_split_by_count():
    chunks = list(split_for_jobs([pending(f"p{i}@example.com") for i in range(7)], 3))
    assert [len(chunk) for chunk in chunks] == [3, 3, 1]
    assert [len(chunk) for chunk in split_for_jobs([pending("a@example.com")] * 10_001)] == [10_000, 1]


def test_split_by_bytes_keeps_every_body_under_5_mb():
    items = [pending(f"p{i}@example.com", blob="x" * 90_000) for i in range(120)]
    chunks = list(split_for_jobs(items))
    assert len(chunks) > 1
    assert sum(len(chunk) for chunk in chunks) == 120
    assert all(len(job_body(LIST_ID, chunk)) <= batch_module.MAX_JOB_BYTES for chunk in chunks)
    assert [item for chunk in chunks for item in chunk] == items


def test_job_body_is_valid_json_api_for_the_spec():
    body = json.loads(job_body(LIST_ID, [pending("a@example.com", plan="pro"), pending("b@example.com")]))
    assert spec.request_validator("/api/profile-bulk-import-jobs", "post").first_error(body) is None
    assert body["data"]["relationships"]["lists"]["data"] == [{"type": "list", "id": LIST_ID}]
    assert [p["attributes"]["email"] for p in body["data"]["attributes"]["profiles"]["data"]] == [
        "a@example.com",
        "b@example.com",
    ]


def test_import_waits_for_completion_and_counts(sandbox_factory):
    server = sandbox_factory(job_delay=0.3)
    report = RunReport()
    [job] = import_all(importer(server, report), [pending("a@example.com"), pending("b@example.com")])
    assert job.polls >= 1
    assert report.exported == 2
    assert set(members(server)) == {"a@example.com", "b@example.com"}
    assert len(report.job_ids) == 1
    assert report.jobs_in_flight == 0
    polls = [r for r in server.recorded if r.spec_path == "/api/profile-bulk-import-jobs/{job_id}"]
    assert [r.response["data"]["attributes"]["status"] for r in polls][-1] == "complete"
    assert len(polls) >= 2
    assert_requests_match_spec(server)


def test_a_refused_profile_is_rejected_and_the_rest_resubmitted(sandbox_factory, tmp_path):
    server = sandbox_factory(refuse_domains=("refused.example.org",))
    report = RunReport(tmp_path / "rejects.jsonl")
    batch = [pending("a@example.com"), pending("bad@refused.example.org"), pending("c@example.com")]
    import_all(importer(server, report), batch)
    report.close()
    assert set(members(server)) == {"a@example.com", "c@example.com"}
    assert report.exported == 2
    assert report.rejected == {"rejected_by_klaviyo": 1}
    [line] = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert line["record"]["email"] == "bad@refused.example.org"
    assert "Invalid email address" in line["detail"]
    assert "/data/attributes/profiles/data/1/attributes/email" in line["detail"]
    assert [r.status for r in bulk_jobs(server)] == [400, 202]


def test_a_batch_of_only_refused_profiles_sends_no_job(sandbox_factory):
    server = sandbox_factory(refuse_domains=("refused.example.org",))
    report = RunReport()
    import_all(importer(server, report), [pending("x@refused.example.org"), pending("y@refused.example.org")])
    assert report.rejected == {"rejected_by_klaviyo": 2}
    assert report.job_ids == []


def test_import_errors_become_rejects_with_klaviyos_detail(sandbox_factory, tmp_path, monkeypatch):
    monkeypatch.setattr(endpoints, "IMPORT_ERRORS", dataclasses.replace(endpoints.IMPORT_ERRORS, page_size=2))
    server = sandbox_factory(fail_domains=("bounce.example.net",))
    report = RunReport(tmp_path / "rejects.jsonl")
    batch = [pending(f"ok{i}@example.com") for i in range(3)] + [
        pending(f"fail{i}@bounce.example.net") for i in range(5)
    ]
    import_all(importer(server, report), batch)
    report.close()
    assert report.exported == 3
    assert report.rejected == {"rejected_by_klaviyo": 5}
    lines = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert sorted(line["record"]["email"] for line in lines) == [
        f"fail{i}@bounce.example.net" for i in range(5)
    ]
    assert all("email domain does not accept mail" in line["detail"] for line in lines)
    pages = [r for r in server.recorded if r.spec_path == "/api/profile-bulk-import-jobs/{id}/import-errors"]
    assert len(pages) == 3


def test_an_api_key_klaviyo_echoes_never_reaches_the_rejects_file(sandbox_factory, tmp_path, monkeypatch):
    """Found by the hostile review of issue 16: Klaviyo's words are quoted in reject lines."""
    server = sandbox_factory(fail_domains=("bounce.example.net",), refuse_domains=("refused.example.org",))
    bulk = importer(server, report := RunReport(tmp_path / "rejects.jsonl"))
    errors = bulk._import_errors

    def echoing(job_id: str, size: int):
        for error in errors(job_id, size):
            error["attributes"]["detail"] += f" (key {API_KEY})"
            yield error

    monkeypatch.setattr(bulk, "_import_errors", echoing)
    parse = http.parse_errors
    monkeypatch.setattr(
        http,
        "parse_errors",
        lambda response, secret="": [
            dataclasses.replace(e, detail=f"{e.detail} {API_KEY}") for e in parse(response, secret)
        ],
    )
    import_all(
        bulk, [pending("ok@example.com"), pending("x@bounce.example.net"), pending("y@refused.example.org")]
    )
    report.close()
    text = (tmp_path / "rejects.jsonl").read_text()
    assert report.rejected == {"rejected_by_klaviyo": 2}
    assert API_KEY not in text
    assert text.count("[api key]") == 2


def test_a_job_id_that_holds_the_api_key_is_refused_in_one_sentence(sandbox_factory, monkeypatch):
    """Found by the second hostile review of issue 16: job ids are logged and reported."""
    bulk = importer(sandbox_factory(), RunReport())
    monkeypatch.setattr(bulk.client, "post", lambda path, body: {"data": {"id": API_KEY}})
    with pytest.raises(KlaviyoError, match="returned no job id of the form it documents") as raised:
        import_all(bulk, [pending("a@example.com")])
    assert API_KEY not in str(raised.value)


def test_a_request_level_error_is_not_blamed_on_profiles(sandbox):
    client = KlaviyoClient(sandbox.url, API_KEY, "2026-07-15")
    with pytest.raises(KlaviyoApiError, match="404"):
        import_all(BulkImporter(client, Recorder(RunReport())), [pending("a@example.com")], "NoSuchList")


def test_dry_run_description_names_attributes_not_values():
    lines = list(describe_dry_run([pending("secret.person@example.com", plan="pro")]))
    assert len(lines) == 1
    assert "1 profiles" in lines[0]
    assert "email, properties.plan" in lines[0]
    assert "secret.person" not in lines[0]


def test_a_body_klaviyo_finds_too_large_is_split_and_retried(sandbox, monkeypatch):
    monkeypatch.setattr(batch_module, "MAX_JOB_BYTES", 20_000_000)
    report = RunReport()
    batch = [pending(f"p{i}@example.com", blob="x" * 90_000) for i in range(60)]
    import_all(importer(sandbox, report), batch)
    assert report.exported == 60
    assert [r.status for r in bulk_jobs(sandbox)] == [413, 202, 202]
    assert len(members(sandbox)) == 60


def test_a_cancelled_job_is_a_failure_and_counts_nothing(sandbox_factory):
    server = sandbox_factory(cancel_domains=("cancel.example.org",))
    report = RunReport()
    recorder = Recorder(report)
    bulk = BulkImporter(KlaviyoClient(server.url, API_KEY, "2026-07-15"), recorder)
    with pytest.raises(JobCancelled, match="was cancelled before it completed"):
        import_all(bulk, [pending("a@example.com"), pending("b@cancel.example.org")])
    assert report.exported == 0
    assert recorder.done == []


def test_a_job_still_running_is_polled_again_later(sandbox_factory):
    server = sandbox_factory(job_delay=5)
    bulk = importer(server)
    [job] = bulk.submit(LIST_ID, [pending("a@example.com")])
    assert bulk.poll(job) is None
    assert bulk.poll(job) is None
    assert job.polls == 2
    assert job.next_poll - time.monotonic() == pytest.approx(jobs.POLL_DELAYS[2], abs=0.1)


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"data": {}},
        {"data": {"attributes": {}}},
        {"data": {"attributes": {"status": "exploded"}}},
        {"data": {"attributes": {"status": "complete", "failed_count": "many"}}},
        {"data": {"attributes": {"status": "complete", "failed_count": 99}}},
        {"data": []},
    ],
)
def test_a_job_answer_of_an_unexpected_shape_is_one_sentence_naming_the_request(sandbox, monkeypatch, answer):
    bulk = importer(sandbox)
    [job] = bulk.submit(LIST_ID, [pending("a@example.com")])
    monkeypatch.setattr(bulk.client, "get", lambda path, params=None: answer)
    with pytest.raises(KlaviyoError) as caught:
        bulk.poll(job)
    assert str(caught.value).startswith(
        f"Klaviyo answered GET /api/profile-bulk-import-jobs/{job.id} without "
    )


def test_import_errors_of_an_unexpected_shape_are_one_sentence(sandbox_factory, monkeypatch):
    server = sandbox_factory(fail_domains=("bounce.example.net",))
    bulk = importer(server)
    [job] = bulk.submit(LIST_ID, [pending("a@bounce.example.net")])
    while (attributes := bulk.poll(job)) is None:
        time.sleep(0.05)
    monkeypatch.setattr(bulk.client, "get", lambda path, params=None: {"data": "not a list"})
    with pytest.raises(KlaviyoError, match="/import-errors without a list of import errors"):
        bulk.settle(job, attributes)
