"""The life of a bulk profile import job: split, submit, wait, and account for failures.

A batch of profiles becomes as few jobs as Klaviyo's limits allow (10,000 profiles
and 5 MB a job). A profile Klaviyo refuses at submission (a 400 that points at it)
is rejected and the rest are submitted again; a profile that fails while the job
runs is read back from the job's import errors. Either way it ends in the rejects,
with Klaviyo's own words, and the run goes on.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from target_klaviyo.client import KlaviyoApiError, KlaviyoClient, KlaviyoError
from target_klaviyo.mapping import Profile, Reject
from target_klaviyo.report import RunReport

logger = logging.getLogger("target_klaviyo.jobs")

JOBS_PATH = "/api/profile-bulk-import-jobs"
MAX_PROFILES_PER_JOB = 10_000
MAX_JOB_BYTES = 5_000_000
ENVELOPE_BYTES = 512
POLL_DELAYS = (0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0)
MAX_JOB_WAIT = 3600.0
IMPORT_ERRORS_PAGE_SIZE = 100
PROFILE_POINTER = re.compile(r"^/data/attributes/profiles/data/(\d+)(?:/|$)")


@dataclass
class PendingProfile:
    """A profile waiting to be sent, with the record it came from (for the rejects file)."""

    profile: Profile
    stream: str
    record: dict[str, Any]

    @property
    def encoded(self) -> bytes:
        return self.profile.encoded


def split_for_jobs(pending: list[PendingProfile]) -> Iterator[list[PendingProfile]]:
    """Group profiles into job-sized chunks, in order, by count and by bytes."""
    chunk: list[PendingProfile] = []
    size = ENVELOPE_BYTES
    for item in pending:
        item_size = len(item.encoded) + 1
        if chunk and (len(chunk) == MAX_PROFILES_PER_JOB or size + item_size > MAX_JOB_BYTES):
            yield chunk
            chunk, size = [], ENVELOPE_BYTES
        chunk.append(item)
        size += item_size
    if chunk:
        yield chunk


def job_body(list_id: str, chunk: list[PendingProfile]) -> bytes:
    """The JSON:API body of a job, assembled from profiles serialised once."""
    profiles = b",".join(item.encoded for item in chunk)
    lists = json.dumps([{"type": "list", "id": list_id}]).encode()
    return (
        b'{"data":{"type":"profile-bulk-import-job","attributes":{"profiles":{"data":['
        + profiles
        + b']}},"relationships":{"lists":{"data":'
        + lists
        + b"}}}}"
    )


@dataclass
class SubmittedJob:
    id: str
    chunk: list[PendingProfile]


class BulkImporter:
    """Sends batches of profiles into one list and waits until Klaviyo has accepted them."""

    def __init__(
        self,
        client: KlaviyoClient,
        list_id: str,
        report: RunReport,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.list_id = list_id
        self.report = report
        self._sleep = sleep

    def import_batch(self, pending: list[PendingProfile]) -> None:
        """Submit every job of the batch, then wait for each; returns once all are final."""
        started = time.monotonic()
        submitted = [job for chunk in split_for_jobs(pending) for job in self._submit(chunk)]
        for job in submitted:
            self._settle(job)
        self.report.import_seconds += time.monotonic() - started

    def _submit(self, chunk: list[PendingProfile]) -> list[SubmittedJob]:
        """Create a job, dropping the profiles Klaviyo points at until it accepts the rest."""
        while chunk:
            try:
                answer = self.client.post(JOBS_PATH, job_body(self.list_id, chunk))
            except KlaviyoApiError as error:
                if error.status == 413 and len(chunk) > 1:
                    middle = len(chunk) // 2
                    return self._submit(chunk[:middle]) + self._submit(chunk[middle:])
                chunk = self._without_refused(chunk, error)
                continue
            job_id = (answer or {}).get("data", {}).get("id")
            if not job_id:
                raise KlaviyoError(f"Klaviyo accepted POST {JOBS_PATH} but returned no job id.")
            self.report.job_ids.append(job_id)
            self.report.jobs_in_flight += 1
            logger.info("Submitted import job %s with %d profiles.", job_id, len(chunk))
            return [SubmittedJob(job_id, chunk)]
        return []

    def _without_refused(self, chunk: list[PendingProfile], error: KlaviyoApiError) -> list[PendingProfile]:
        """Reject the profiles a 400 names; re-raise when it names anything else."""
        if error.status == 413:
            self._reject(
                chunk[0], Reject("profile_too_large", error.errors[0].detail if error.errors else str(error))
            )
            return []
        refused: dict[int, str] = {}
        for detail in error.errors:
            match = PROFILE_POINTER.match(detail.pointer or "")
            if error.status != 400 or match is None or int(match.group(1)) >= len(chunk):
                raise error
            refused.setdefault(int(match.group(1)), f"{detail.code}: {detail.detail} ({detail.pointer})")
        if not refused:
            raise error
        for position, detail in refused.items():
            self._reject(chunk[position], Reject("rejected_by_klaviyo", detail))
        logger.warning(
            "Klaviyo refused %d profile(s) of a job; submitting the other %d again.",
            len(refused),
            len(chunk) - len(refused),
        )
        return [item for position, item in enumerate(chunk) if position not in refused]

    def _settle(self, job: SubmittedJob) -> None:
        attributes = self._wait(job.id)
        self.report.jobs_in_flight -= 1
        if attributes["status"] == "cancelled":
            raise KlaviyoError(
                f"Klaviyo import job {job.id} was cancelled before it completed; "
                "the run stops so that no profile is lost unnoticed."
            )
        failed = int(attributes.get("failed_count") or 0)
        matched = self._reject_import_errors(job) if failed else 0
        unmatched = max(0, failed - matched)
        for _ in range(unmatched):
            self.report.reject(
                "",
                None,
                Reject(
                    "rejected_by_klaviyo",
                    f"Import job {job.id} reported a failed profile without an import error that names it.",
                ),
            )
        imported = len(job.chunk) - matched - unmatched
        self.report.exported += imported
        logger.info(
            "Import job %s complete: %d profiles imported, %d failed.", job.id, imported, matched + unmatched
        )

    def _wait(self, job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + MAX_JOB_WAIT
        for attempt in itertools.count():
            attributes = self.client.get(f"{JOBS_PATH}/{job_id}")["data"]["attributes"]
            if attributes["status"] in {"complete", "cancelled"}:
                return attributes
            if time.monotonic() > deadline:
                break
            self.report.tick()
            self._sleep(POLL_DELAYS[min(attempt, len(POLL_DELAYS) - 1)])
        raise KlaviyoError(f"Klaviyo import job {job_id} did not finish within {MAX_JOB_WAIT:.0f} seconds.")

    def _reject_import_errors(self, job: SubmittedJob) -> int:
        """Turn each import error into a reject of the profile it names; returns how many matched."""
        by_email = {item.profile.key: item for item in job.chunk}
        matched = 0
        for error in self._import_errors(job.id):
            attributes = error.get("attributes", {})
            item = self._profile_for(attributes, job.chunk, by_email)
            if item is None:
                continue
            detail = f"{attributes.get('code', 'error')}: {attributes.get('detail', '')}".strip()
            self._reject(item, Reject("rejected_by_klaviyo", detail))
            by_email.pop(item.profile.key, None)
            matched += 1
        return matched

    def _import_errors(self, job_id: str) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"page[size]": IMPORT_ERRORS_PAGE_SIZE}
        while True:
            page = self.client.get(f"{JOBS_PATH}/{job_id}/import-errors", params)
            yield from page.get("data", [])
            next_link = (page.get("links") or {}).get("next")
            cursor = parse_qs(urlsplit(next_link).query).get("page[cursor]") if next_link else None
            if not cursor:
                return
            params = {"page[size]": IMPORT_ERRORS_PAGE_SIZE, "page[cursor]": cursor[0]}

    @staticmethod
    def _profile_for(
        attributes: dict[str, Any], chunk: list[PendingProfile], by_email: dict[str, PendingProfile]
    ) -> PendingProfile | None:
        match = PROFILE_POINTER.match((attributes.get("source") or {}).get("pointer") or "")
        if match and int(match.group(1)) < len(chunk):
            item = chunk[int(match.group(1))]
            if item.profile.key in by_email:
                return item
        payload = attributes.get("original_payload") or {}
        email = (payload.get("attributes") or payload).get("email")
        return by_email.get(email.strip().lower()) if isinstance(email, str) else None

    def _reject(self, item: PendingProfile, reject: Reject) -> None:
        self.report.reject(item.stream, item.record, reject)


def describe_dry_run(list_id: str, pending: list[PendingProfile]) -> Iterator[str]:
    """What ``import_batch`` would send, without personal data: sizes and attribute names."""
    for chunk in split_for_jobs(pending):
        names = sorted(
            {name for item in chunk for name in _attribute_names(item.profile.resource["attributes"])}
        )
        yield (
            f"Dry run: would submit an import job of {len(chunk)} profiles "
            f"({len(job_body(list_id, chunk)):,} bytes) to list {list_id}, "
            f"with attributes: {', '.join(names)}."
        )


def _attribute_names(attributes: dict[str, Any]) -> Iterator[str]:
    for name, value in attributes.items():
        if name in {"location", "properties"} and isinstance(value, dict):
            yield from (f"{name}.{key}" for key in value)
        else:
            yield name
