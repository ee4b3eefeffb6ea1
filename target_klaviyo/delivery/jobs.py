"""The life of a bulk profile import job: split, submit, wait, and account for failures.

A batch of profiles becomes as few jobs as Klaviyo's limits allow (10,000 profiles
and 5 MB a job). A profile Klaviyo refuses at submission (a 400 that points at it)
is rejected and the rest are submitted again; a profile that fails while the job
runs is read back from the job's import errors. Either way it ends in the rejects,
with Klaviyo's own words, and the run goes on.
"""

from __future__ import annotations

import json
import logging
import re
import time
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from target_klaviyo.delivery.subscriptions import Subscriber

# delivery/pipeline.py imports JobCancelled from here.
from target_klaviyo.errors import JobCancelled as JobCancelled
from target_klaviyo.errors import KlaviyoApiError, KlaviyoError
from target_klaviyo.klaviyo import endpoints
from target_klaviyo.klaviyo.endpoints import IMPORT_JOB, IMPORT_JOB_CREATE
from target_klaviyo.klaviyo.http import KlaviyoClient
from target_klaviyo.klaviyo.paging import Paging, pages
from target_klaviyo.klaviyo.refused import dig, profile_position, split_refused
from target_klaviyo.reader import record_from_line
from target_klaviyo.records.mapping import Consent, Profile, Reject

logger = logging.getLogger("target_klaviyo.delivery.jobs")

MAX_PROFILES_PER_JOB = 10_000
MAX_JOB_BYTES = 5_000_000
ENVELOPE_BYTES = 512
POLL_DELAYS = (0.2, 0.3, 0.5, 1.0, 1.0, 2.0)
MAX_JOB_WAIT = 3600.0
JOB_STATUSES = {"queued", "processing", "complete", "cancelled"}
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


def unexpected_answer(request: str, what: str) -> KlaviyoError:
    return KlaviyoError(f"Klaviyo answered {request} without {what}; the run stops rather than guess.")


@dataclass(slots=True)
class PendingProfile:
    """A profile on its way to Klaviyo: what is sent, and where it came from (for the rejects file).

    ``source`` is the Singer line the record came in on when the reader had it (a line
    is a third of the memory of the record as Python objects, and is read again only
    for a reject), else the record. ``epoch`` is where the record stood among the
    tap's STATE messages (:class:`target_klaviyo.run.state.StateLedger`). ``attributes``
    is kept only in a dry run, which describes what it would send. ``list_id`` is the
    list the profile goes to (its stream's). ``consent`` is the record's email marketing
    consent (see :attr:`Profile.consent`), sent as a subscription once the profile is imported.
    """

    key: str
    encoded: bytes
    stream: str
    source: dict[str, Any] | str
    epoch: int = 0
    attributes: dict[str, Any] | None = None
    list_id: str = ""
    order: int = 0  # when the run took it in: the order of a person's records across lists
    consent: Consent | None = None
    # The address as imported, for the subscription (the key is lower case; Klaviyo keeps the case).
    email: str = ""

    @classmethod
    def of(
        cls,
        profile: Profile,
        stream: str,
        source: dict[str, Any] | str,
        epoch: int = 0,
        *,
        list_id: str = "",
        order: int = 0,
        describe: bool = False,
    ) -> PendingProfile:
        attributes = profile.resource["attributes"] if describe else None
        email = profile.resource["attributes"]["email"] if profile.consent is not None else ""
        return cls(
            profile.key,
            profile.encoded,
            stream,
            source,
            epoch,
            attributes,
            list_id,
            order,
            profile.consent,
            email,
        )

    @property
    def record(self) -> dict[str, Any]:
        return record_of(self.source)


@dataclass(slots=True)
class SentProfile:
    """A profile of a job Klaviyo accepted, as needed to reject it: made from :class:`SubmittedJob`."""

    key: str
    stream: str
    source: dict[str, Any] | str
    epoch: int

    @property
    def record(self) -> dict[str, Any]:
        return record_of(self.source)


def record_of(source: dict[str, Any] | str) -> dict[str, Any]:
    """The record as the sink received it, read again from its line if that is what was kept."""
    return source if isinstance(source, dict) else record_from_line(source)


class JobEvents(Protocol):
    """What becomes of the profiles of a job; the run implements it and does the accounting."""

    def job_submitted(self, job_id: str) -> None: ...

    def rejected(self, item: PendingProfile | SentProfile, reject: Reject) -> None: ...

    def job_done(
        self, job: SubmittedJob, imported_epochs: list[int], unmatched_failures: int, subscribed: int
    ) -> None: ...

    def value_dropped(self, item: SentProfile, reject: Reject) -> None: ...

    def superseded(self, list_id: str, key: str, order: int) -> bool:
        """Whether a later record of this person for this list was read after the one taken at ``order``."""
        ...


def split_for_jobs(
    pending: list[PendingProfile], most: int = MAX_PROFILES_PER_JOB
) -> Iterator[list[PendingProfile]]:
    """Group profiles into job-sized chunks of at most ``most`` profiles and Klaviyo's bytes, in order."""
    chunk: list[PendingProfile] = []
    size = ENVELOPE_BYTES
    for item in pending:
        item_size = len(item.encoded) + 1
        if chunk and (len(chunk) >= most or size + item_size > MAX_JOB_BYTES):
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


class Sources:
    """Where a job's profiles came from, for the rejects file, in a fraction of the memory.

    Lines (from the reader) are kept as one zlib-compressed text, about a sixth of
    their size, and decompressed only if Klaviyo rejects one of them; records (from a
    stream map) are kept as they are.
    """

    def __init__(self, sources: list[dict[str, Any] | str]) -> None:
        self._records: list[dict[str, Any] | str] | None = None
        self._compressed = b""
        if all(isinstance(source, str) for source in sources):
            text = "\n".join(source.rstrip("\n") for source in sources)  # type: ignore[union-attr]
            self._compressed = zlib.compress(text.encode("utf-8", "surrogatepass"), 1)
        else:
            self._records = sources

    def __getitem__(self, position: int) -> dict[str, Any] | str:
        if self._records is None:
            text = zlib.decompress(self._compressed).decode("utf-8", "surrogatepass")
            self._records = list[dict[str, Any] | str](text.split("\n"))
        return self._records[position]


class SubmittedJob:
    """A job Klaviyo accepted and has not finished; ``polls`` and ``next_poll`` pace its polling.

    Jobs in flight hold many thousands of profiles, so a job keeps its profiles as
    columns (keys, streams, STATE epochs, compressed sources), not their JSON, and
    makes a :class:`SentProfile` only for one Klaviyo rejects.
    """

    def __init__(self, job_id: str, chunk: list[PendingProfile], list_id: str = "") -> None:
        self.id = job_id
        self.list_id = list_id
        self.keys = [item.key for item in chunk]
        self.epochs = array("q", [item.epoch for item in chunk])
        self._streams = [item.stream for item in chunk]
        self._sources = Sources([item.source for item in chunk])
        self.consents = {
            position: (item.email, item.consent, item.order)
            for position, item in enumerate(chunk)
            if item.consent is not None
        }
        self.submitted_at = time.monotonic()
        self.polls = 0
        self.next_poll = self.submitted_at + POLL_DELAYS[0]

    @property
    def size(self) -> int:
        return len(self.keys)

    def profile(self, position: int) -> SentProfile:
        return SentProfile(
            self.keys[position], self._streams[position], self._sources[position], self.epochs[position]
        )

    def polled(self, now: float) -> None:
        """It was not finished at ``now``: ask again a little later each time."""
        self.polls += 1
        self.next_poll = now + POLL_DELAYS[min(self.polls, len(POLL_DELAYS) - 1)]


class BulkImporter:
    """Creates, polls and settles bulk import jobs.

    ``submit`` runs on the submitting thread and ``poll``/``settle`` on the settling
    thread, each with its own client, so that neither waits on the other's
    connections.
    """

    def __init__(self, client: KlaviyoClient, events: JobEvents) -> None:
        self.client = client
        self.events = events
        self.subscriber = Subscriber(client)

    def submit(self, list_id: str, chunk: list[PendingProfile]) -> list[SubmittedJob]:
        """Create a job, dropping the profiles Klaviyo points at until it accepts the rest."""
        while chunk:
            try:
                answer = self.client.post(IMPORT_JOB_CREATE.path, job_body(list_id, chunk))
            except KlaviyoApiError as error:
                if error.status == 413 and len(chunk) > 1:
                    middle = len(chunk) // 2
                    return self.submit(list_id, chunk[:middle]) + self.submit(list_id, chunk[middle:])
                chunk = self._without_refused(chunk, error)
                continue
            job_id = dig(answer, "data", "id")
            if not isinstance(job_id, str) or not JOB_ID.match(job_id):
                raise KlaviyoError(
                    f"Klaviyo accepted POST {IMPORT_JOB_CREATE.path} but returned no job id of the form it documents."
                )
            self.events.job_submitted(job_id)
            logger.info("Submitted import job %s with %d profiles.", job_id, len(chunk))
            return [SubmittedJob(job_id, chunk, list_id)]
        return []

    def _without_refused(self, chunk: list[PendingProfile], error: KlaviyoApiError) -> list[PendingProfile]:
        """Reject the profiles a 400 names; re-raise when it names anything else."""
        if error.status == 413:
            too_large = error.errors[0].detail if error.errors else str(error)
            self.events.rejected(chunk[0], Reject("profile_too_large", too_large))
            return []
        refused, rest = split_refused(error, chunk)
        for position, detail_text in refused.items():
            self.events.rejected(chunk[position], Reject("rejected_by_klaviyo", detail_text))
        logger.warning(
            "Klaviyo refused %d profile(s) of a job; submitting the other %d again.",
            len(refused),
            len(chunk) - len(refused),
        )
        return rest

    def poll(self, job: SubmittedJob) -> dict[str, Any] | None:
        """The job's attributes once it is complete or cancelled; None while it runs."""
        path = IMPORT_JOB.at(job_id=job.id)
        request = f"GET {path}"
        attributes = dig(self.client.get(path), "data", "attributes")
        if not isinstance(attributes, dict) or attributes.get("status") not in JOB_STATUSES:
            raise unexpected_answer(request, "a job status it documents")
        failed = attributes.get("failed_count") or 0
        if not isinstance(failed, int) or isinstance(failed, bool) or not 0 <= failed <= job.size:
            raise unexpected_answer(request, "a failed_count between 0 and the job's size")
        if attributes["status"] in {"complete", "cancelled"}:
            return attributes
        now = time.monotonic()
        if now - job.submitted_at > MAX_JOB_WAIT:
            raise KlaviyoError(
                f"Klaviyo import job {job.id} did not finish within {MAX_JOB_WAIT:.0f} seconds."
            )
        job.polled(now)
        return None

    def settle(self, job: SubmittedJob, attributes: dict[str, Any]) -> None:
        """Account for every profile of a finished job: imported, or rejected with Klaviyo's words."""
        if attributes["status"] == "cancelled":
            raise JobCancelled(
                f"Klaviyo import job {job.id} was cancelled before it completed; "
                "the run stops so that no profile is lost unnoticed."
            )
        failed = int(attributes.get("failed_count") or 0)
        rejected = self._reject_import_errors(job) if failed else set()
        unmatched = max(0, failed - len(rejected))
        imported = [epoch for position, epoch in enumerate(job.epochs) if position not in rejected]
        consenting = []
        for position, (email, consent, order) in job.consents.items():
            if position in rejected:
                continue
            if self.events.superseded(job.list_id, job.keys[position], order):
                # The person's later record in this run decides: its own job subscribes them if it
                # consents too, and a later "no consent" is never overridden by an earlier "yes".
                _Refusals(job, self.events).subscription_refused(
                    position,
                    Reject(
                        "consent_superseded",
                        "A later record of this person in this run decides their consent; this "
                        "record's consent was not sent.",
                    ),
                )
                continue
            consenting.append((position, email, consent))
        if unmatched and consenting:
            # Klaviyo says some profiles failed without naming them: any consenting one may be among
            # them (not imported, so not a member), and doubt means no subscription.
            refusals = _Refusals(job, self.events)
            for position, _, _ in consenting:
                refusals.subscription_refused(
                    position,
                    Reject(
                        "consent_not_checked",
                        f"Import job {job.id} reported failed profiles without naming them, so this "
                        "profile may not have been imported; no subscription was sent.",
                    ),
                )
            consenting = []
        subscribed = self.subscriber.subscribe(job.list_id, consenting, _Refusals(job, self.events))
        self.events.job_done(job, imported, unmatched, subscribed)
        logger.info(
            "Import job %s complete: %d profiles imported, %d failed%s.",
            job.id,
            len(imported) - unmatched,
            failed,
            f", {subscribed} subscribed to email marketing" if consenting else "",
        )

    def _reject_import_errors(self, job: SubmittedJob) -> set[int]:
        """Turn each import error into a reject of the profile it names; returns their positions."""
        by_email = {key: position for position, key in enumerate(job.keys)}
        rejected: set[int] = set()
        for error in self._import_errors(job.id, job.size):
            attributes = error.get("attributes")
            if not isinstance(attributes, dict):
                continue
            position = self._position_for(attributes, job.size, by_email)
            if position is None or position in rejected:
                continue
            detail = f"{attributes.get('code', 'error')}: {attributes.get('detail', '')}".strip()[:1000]
            self.events.rejected(job.profile(position), Reject("rejected_by_klaviyo", detail))
            rejected.add(position)
        return rejected

    def _import_errors(self, job_id: str, job_size: int) -> Iterator[dict[str, Any]]:
        """Every page of a job's import errors: no more pages than the job has profiles for."""
        endpoint = endpoints.IMPORT_ERRORS
        path = endpoint.at(id=job_id)
        size = endpoint.page_size
        paging = Paging(
            fault=lambda what: unexpected_answer(f"GET {path}", what),
            repeated="an end to its pages of import errors",
            endless="an end to its pages of import errors",
            next_not_text="a next link that is text",
            most_pages=job_size // size + 2,
        )
        for page in pages(lambda params: self.client.get(path, params), {"page[size]": size}, paging):
            errors = page.get("data", []) if isinstance(page, dict) else None
            if not isinstance(errors, list) or not all(isinstance(error, dict) for error in errors):
                raise unexpected_answer(f"GET {path}", "a list of import errors")
            yield from errors

    @staticmethod
    def _position_for(attributes: dict[str, Any], size: int, by_email: dict[str, int]) -> int | None:
        position = profile_position(dig(attributes, "source", "pointer"), size)
        if position is not None:
            return position
        email = dig(attributes, "original_payload", "attributes", "email") or dig(
            attributes, "original_payload", "email"
        )
        return by_email.get(email.strip().lower()) if isinstance(email, str) else None


class _Refusals:
    """A refused subscription, reported against the job's profile (which stays exported)."""

    def __init__(self, job: SubmittedJob, events: JobEvents) -> None:
        self.job = job
        self.events = events

    def subscription_refused(self, position: int, reject: Reject) -> None:
        self.events.value_dropped(self.job.profile(position), reject)


def describe_dry_run(pending: list[PendingProfile]) -> Iterator[str]:
    """What would be sent, list by list, without personal data: sizes and attribute names."""
    by_list: dict[str, list[PendingProfile]] = {}
    for item in pending:
        by_list.setdefault(item.list_id, []).append(item)
    for list_id, items in by_list.items():
        for chunk in split_for_jobs(items):
            names = sorted({name for item in chunk for name in _attribute_names(item.attributes or {})})
            consents = [item.consent for item in chunk if item.consent is not None]
            subscribe = (
                f", and subscribe {len(consents)} of them to email marketing "
                f"({sum(1 for consent in consents if consent.at)} with a consent date, as a historical import)"
                if consents
                else ""
            )
            yield (
                f"Dry run: would submit an import job of {len(chunk)} profiles "
                f"({len(job_body(list_id, chunk)):,} bytes) to list {list_id}, "
                f"with attributes: {', '.join(names)}{subscribe}."
            )


def _attribute_names(attributes: dict[str, Any]) -> Iterator[str]:
    for name, value in attributes.items():
        if name in {"location", "properties"} and isinstance(value, dict):
            yield from (f"{name}.{key}" for key in value)
        else:
            yield name
