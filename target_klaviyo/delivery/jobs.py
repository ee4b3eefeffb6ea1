"""The life of a bulk profile import job: submit, wait, and account for failures.

A batch of profiles becomes as few jobs as Klaviyo's limits allow
(:mod:`target_klaviyo.delivery.batch` cuts them). A profile Klaviyo refuses at submission (a 400 that points at it)
is rejected and the rest are submitted again; a profile that fails while the job
runs is read back from the job's import errors. Either way it ends in the rejects,
with Klaviyo's own words, and the run goes on.
"""

from __future__ import annotations

import logging
import re
import time
from array import array
from collections.abc import Iterator
from typing import Any, Protocol

from target_klaviyo.delivery.batch import PendingProfile, SentProfile, Sources, job_body
from target_klaviyo.delivery.subscriptions import Subscriber
from target_klaviyo.errors import JobCancelled, KlaviyoApiError, KlaviyoError
from target_klaviyo.klaviyo import endpoints
from target_klaviyo.klaviyo.endpoints import IMPORT_JOB, IMPORT_JOB_CREATE
from target_klaviyo.klaviyo.http import KlaviyoClient
from target_klaviyo.klaviyo.paging import Paging, pages
from target_klaviyo.klaviyo.refused import dig, profile_position, split_refused
from target_klaviyo.records.profile import Reject

logger = logging.getLogger(
    "target_klaviyo.jobs"
)  # the name its lines had before the modules moved into rooms: users' log filters keep working

POLL_DELAYS = (0.2, 0.3, 0.5, 1.0, 1.0, 2.0)
MAX_JOB_WAIT = 3600.0
JOB_STATUSES = {"queued", "processing", "complete", "cancelled"}
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


def unexpected_answer(request: str, what: str) -> KlaviyoError:
    return KlaviyoError(f"Klaviyo answered {request} without {what}; the run stops rather than guess.")


class JobEvents(Protocol):
    """What becomes of the profiles of a job; the run implements it and does the accounting."""

    def job_posting(self, chunk: list[PendingProfile]) -> int:
        """These profiles are about to be posted as a job: from the POST on, Klaviyo may hold them.
        Returns the moment that was recorded (the ledger's claims; 0 without a ledger)."""
        ...

    def job_submitted(self, job: SubmittedJob) -> None: ...

    def rejected(self, item: PendingProfile | SentProfile, reject: Reject) -> None: ...

    def job_done(
        self,
        job: SubmittedJob,
        imported_epochs: list[int],
        unmatched_failures: int,
        subscribed: int,
        confirmed: list[int],
    ) -> None:
        """A job settled. ``confirmed`` are the positions of the profiles Klaviyo holds as sent: imported,
        and with their consent sent if they had one (all or nothing when a failure is not named)."""
        ...

    def value_dropped(self, item: SentProfile, reject: Reject) -> None: ...

    def superseded(self, list_id: str, key: str, order: int) -> bool:
        """Whether a later record of this person for this list was read after the one taken at ``order``."""
        ...


class SubmittedJob:
    """A job Klaviyo accepted and has not finished; ``polls`` and ``next_poll`` pace its polling.

    Jobs in flight hold many thousands of profiles, so a job keeps its profiles as
    columns (keys, streams, STATE epochs, compressed sources), not their JSON, and
    makes a :class:`SentProfile` only for one Klaviyo rejects.
    """

    def __init__(
        self, job_id: str, chunk: list[PendingProfile], list_id: str = "", claimed_at: int = 0
    ) -> None:
        self.id = job_id
        self.list_id = list_id
        self.claimed_at = claimed_at  # when the ledger recorded what the job gives (JobEvents.job_posting)
        self.keys = [item.key for item in chunk]
        self.epochs = array("q", [item.epoch for item in chunk])
        self._streams = [item.stream for item in chunk]
        # With a ledger, what each profile's digest is (16 bytes each), to record it once confirmed,
        # and the phone number and external id it gives the person (2 x 16 bytes, zeros for none).
        self._digests = b"".join(item.digest for item in chunk)
        self._identifiers = b"".join(item.identifiers for item in chunk)
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

    def digest(self, position: int) -> bytes:
        return self._digests[16 * position : 16 * position + 16]

    def identifiers(self, position: int) -> bytes:
        """The ledger's names of the phone number and external id sent for this profile (32 bytes), or b""."""
        return self._identifiers[32 * position : 32 * position + 32]

    def stream(self, position: int) -> str:
        return self._streams[position]

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
        # Before the POST, not after Klaviyo's answer: a failure or a kill between the two must not
        # leave Klaviyo holding values the ledger never heard of. Profiles Klaviyo then refuses were
        # recorded for nothing, which only holds their values back (hostile review 14).
        claimed_at = self.events.job_posting(chunk) if chunk else 0
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
            # A job id is logged and written to the report: one that holds the key is no job id.
            if (
                not isinstance(job_id, str)
                or not JOB_ID.match(job_id)
                or self.client.hide_key(job_id) != job_id
            ):
                raise KlaviyoError(
                    f"Klaviyo accepted POST {IMPORT_JOB_CREATE.path} but returned no job id of the form it documents."
                )
            job = SubmittedJob(job_id, chunk, list_id, claimed_at)
            self.events.job_submitted(job)
            logger.info("Submitted import job %s with %d profiles.", job_id, len(chunk))
            return [job]
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
        refusals = _Refusals(job, self.events)
        consenting = []
        for position, (email, consent, order) in job.consents.items():
            if position in rejected:
                continue
            if self.events.superseded(job.list_id, job.keys[position], order):
                # The person's later record in this run decides: its own job subscribes them if it
                # consents too, and a later "no consent" is never overridden by an earlier "yes".
                refusals.subscription_refused(
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
        subscribed = self.subscriber.subscribe(job.list_id, consenting, refusals)
        # A failure Klaviyo does not name could be anyone's: then nobody of the job is confirmed.
        confirmed = (
            []
            if unmatched
            else [p for p in range(job.size) if p not in rejected and p not in refusals.positions]
        )
        self.events.job_done(job, imported, unmatched, subscribed, confirmed)
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
            words = f"{attributes.get('code', 'error')}: {attributes.get('detail', '')}"
            detail = self.client.hide_key(words).strip()[:1000]
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
        self.positions: set[int] = set()  # whose consent was not sent for now: not confirmed as sent

    def subscription_refused(self, position: int, reject: Reject) -> None:
        # An unsubscribe that stands in Klaviyo is the answer to this very profile, and would be again:
        # the profile is confirmed as it is (new consent, with a later date, changes its digest).
        if reject.reason != "unsubscribed_in_klaviyo":
            self.positions.add(position)
        self.events.value_dropped(self.job.profile(position), reject)
