"""Bulk import job lifecycle against the sandbox: splitting, refusals, import errors."""

import json

import pytest
from support import API_KEY, LIST_ID, assert_requests_match_spec, bulk_jobs, members

from target_klaviyo import jobs
from target_klaviyo.client import KlaviyoApiError, KlaviyoClient, KlaviyoError
from target_klaviyo.jobs import BulkImporter, PendingProfile, describe_dry_run, job_body, split_for_jobs
from target_klaviyo.mapping import ProfileMapper
from target_klaviyo.report import RunReport
from target_klaviyo.sandbox import spec
from target_klaviyo.settings import Settings

MAPPER = ProfileMapper(Settings.from_config({"api_key": "k", "list_id": LIST_ID}))


def pending(email: str, **extra) -> PendingProfile:
    record = {"email": email, **extra}
    return PendingProfile(MAPPER.map(record), "customers", record)


def importer(server, report=None) -> BulkImporter:
    client = KlaviyoClient(server.url, API_KEY, "2026-07-15")
    return BulkImporter(client, LIST_ID, report or RunReport())


def test_split_by_count(monkeypatch):
    monkeypatch.setattr(jobs, "MAX_PROFILES_PER_JOB", 3)
    chunks = list(split_for_jobs([pending(f"p{i}@example.com") for i in range(7)]))
    assert [len(chunk) for chunk in chunks] == [3, 3, 1]


def test_split_by_bytes_keeps_every_body_under_5_mb():
    items = [pending(f"p{i}@example.com", blob="x" * 90_000) for i in range(120)]
    chunks = list(split_for_jobs(items))
    assert len(chunks) > 1
    assert sum(len(chunk) for chunk in chunks) == 120
    assert all(len(job_body(LIST_ID, chunk)) <= jobs.MAX_JOB_BYTES for chunk in chunks)
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
    importer(server, report).import_batch([pending("a@example.com"), pending("b@example.com")])
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
    importer(server, report).import_batch(batch)
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
    importer(server, report).import_batch(
        [pending("x@refused.example.org"), pending("y@refused.example.org")]
    )
    assert report.rejected == {"rejected_by_klaviyo": 2}
    assert report.job_ids == []


def test_import_errors_become_rejects_with_klaviyos_detail(sandbox_factory, tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "IMPORT_ERRORS_PAGE_SIZE", 2)
    server = sandbox_factory(fail_domains=("bounce.example.net",))
    report = RunReport(tmp_path / "rejects.jsonl")
    batch = [pending(f"ok{i}@example.com") for i in range(3)] + [
        pending(f"fail{i}@bounce.example.net") for i in range(5)
    ]
    importer(server, report).import_batch(batch)
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


def test_a_request_level_error_is_not_blamed_on_profiles(sandbox):
    client = KlaviyoClient(sandbox.url, API_KEY, "2026-07-15")
    with pytest.raises(KlaviyoApiError, match="404"):
        BulkImporter(client, "NoSuchList", RunReport()).import_batch([pending("a@example.com")])


def test_dry_run_description_names_attributes_not_values():
    lines = list(describe_dry_run(LIST_ID, [pending("secret.person@example.com", plan="pro")]))
    assert len(lines) == 1
    assert "1 profiles" in lines[0]
    assert "email, properties.plan" in lines[0]
    assert "secret.person" not in lines[0]


def test_a_body_klaviyo_finds_too_large_is_split_and_retried(sandbox, monkeypatch):
    monkeypatch.setattr(jobs, "MAX_JOB_BYTES", 20_000_000)
    report = RunReport()
    batch = [pending(f"p{i}@example.com", blob="x" * 90_000) for i in range(60)]
    importer(sandbox, report).import_batch(batch)
    assert report.exported == 60
    assert [r.status for r in bulk_jobs(sandbox)] == [413, 202, 202]
    assert len(members(sandbox)) == 60


def test_a_cancelled_job_stops_the_run(sandbox, monkeypatch):
    client = KlaviyoClient(sandbox.url, API_KEY, "2026-07-15")
    monkeypatch.setattr(
        client,
        "get",
        lambda path, params=None: {"data": {"attributes": {"status": "cancelled", "failed_count": 0}}},
    )
    with pytest.raises(KlaviyoError, match="was cancelled before it completed"):
        BulkImporter(client, LIST_ID, RunReport()).import_batch([pending("a@example.com")])
