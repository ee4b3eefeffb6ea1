"""One run of the target, from the connection check to the report: its only owner.

Streams are drained separately by the SDK, but they all feed one Klaviyo list, so
the profiles waiting to be sent, the set already seen, the per-run limit, the jobs
in flight, the STATE ledger and the report live here, once. Sinks and jobs tell
the run what happened; the run counts it. Holding the waiting profiles in one
place is what lets the later record for an email win even when the two records
came from different streams.

A run ends exactly once, through :meth:`ExportRun.finish` (all input read) or
:meth:`ExportRun.guard` (anything that stops it early), with one of the
outcomes ``complete``, ``failed``, ``interrupted`` or ``stopped at the profile
limit``; the report and the summary line are written then.
"""

from __future__ import annotations

import difflib
import logging
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any

from target_klaviyo.delivery.jobs import (
    MAX_PROFILES_PER_JOB,
    BulkImporter,
    PendingProfile,
    SentProfile,
    SubmittedJob,
    describe_dry_run,
    split_for_jobs,
)
from target_klaviyo.delivery.pipeline import JobPipeline
from target_klaviyo.errors import RunError
from target_klaviyo.klaviyo.http import ConnectionFailed, KlaviyoApiError, KlaviyoClient, KlaviyoError
from target_klaviyo.mirror.plan_file import ListPlan, PlanFiles, meltano_run
from target_klaviyo.mirror.planner import Mirror, MirrorRefused
from target_klaviyo.records.mapping import ProfileMapper
from target_klaviyo.records.profile import Profile, Reject
from target_klaviyo.run.report import RunReport
from target_klaviyo.run.seen import HashTable, hash64
from target_klaviyo.run.state import StateLedger
from target_klaviyo.run.stop import RunInterrupted, StopSignal
from target_klaviyo.settings.settings import Settings

logger = logging.getLogger("target_klaviyo.run.run")
# The connection check retries for at most this long: a wrong api_url is said within 15 s, while
# requests later in the run keep the client's long budget for Klaviyo's passing troubles.
CHECK_BUDGET = 8.0


class Admission(Enum):
    NEW = "new"
    REPEAT = "repeat"
    OVER_LIMIT = "over_limit"


class ProfileLimitReached(KlaviyoError):
    """``on_limit_exceeded: fail`` and a profile beyond ``max_profiles_per_run`` arrived."""


class TooManyRejects(RunError):
    """More than ``max_reject_fraction`` of the run's records were rejected; the rest were exported."""


class ExportRun:
    def __init__(self, settings: Settings, aliases: Callable[[str], list[str]] | None = None) -> None:
        """``aliases`` gives the names a tap's stream has after the stream maps (see :meth:`bad_record`)."""
        self.settings = settings
        self._aliases = aliases or (lambda stream: [stream])
        self.mapper = ProfileMapper(settings)
        self.report = RunReport(settings.rejects_path, dry_run=settings.dry_run)
        self.ledger = StateLedger(emit=not settings.dry_run)
        self.stop = StopSignal()
        self.client: KlaviyoClient | None = None
        self.pipeline: JobPipeline | None = None
        self._clients: list[KlaviyoClient] = []
        # Mirror mode reads lists even in a dry run (to say what it would remove).
        self.mirror = (
            Mirror(settings.email_path, settings.max_removal_fraction, settings.stream_lists)
            if settings.mirror
            else None
        )
        self.plan_files: PlanFiles | None = None
        if self.mirror is not None:
            # Before any input is read, however early the run fails later: no older plan outlives
            # this run, and this run is the one a plan must come from (mirror_plan.py).
            self.plan_files = PlanFiles(settings.mirror_plan_path)
            self.plan_files.prepare()
            try:
                self.plan_files.lock("target-klaviyo")
            except RunError:
                # An apply (or another run) holds the plan: this run fails, but it is the loader's
                # latest, so an apply in progress stops before its next request.
                self.plan_files.void()
                raise
            self.report.run_id = self.plan_files.start_run()
        else:
            # A newer run of the same loader, in upsert mode, voids a plan an earlier mirror run left.
            PlanFiles(settings.mirror_plan_path).void()
        if not settings.dry_run or self.mirror is not None:
            self.client = self._client()
            self._clients.append(self.client)
        if not settings.dry_run:
            assert self.client is not None
            settler_client = self._client()
            self.pipeline = JobPipeline(
                BulkImporter(self.client, self),
                BulkImporter(settler_client, self),
                settings.max_jobs_in_flight,
                self.stop,
                self.report.tick,
            )
            self._clients.append(settler_client)
        self.limit_reached = False
        self._started = False
        self._ended = False
        self._books_closed = False  # the report is final: what jobs report after that is not counted
        # Emails seen and phone owners, as 64-bit hashes in compact tables (see seen.py).
        self._profiles = HashTable(with_values=False)
        self._pending: dict[tuple[str, str], PendingProfile] = {}
        self._phone_owner = HashTable(with_values=True)
        self._external_owner = HashTable(with_values=True)
        # With several lists, which lists each person was sent to (else the people are that).
        self._memberships = HashTable(with_values=False) if len(settings.lists) > 1 else None
        self._taken = 0
        self._streams: set[str] = set()  # every stream whose SCHEMA arrived (after the stream maps)
        self._plans: list[ListPlan] | None = None  # mirror mode: what the run will write to its plan
        # Per person and list, the order of their latest record, for people with more than one
        # (read by the settling thread: single dict operations are atomic).
        self._later_records: dict[int, int] = {}
        self.report.start_rejects()  # the rejects file holds this run's rejects only

    def _client(self) -> KlaviyoClient:
        settings = self.settings
        return KlaviyoClient(
            settings.api_url,
            settings.api_key,
            settings.api_revision,
            on_retry=self.report.count_retry,
            waiting=self.stop.waiting,
        )

    # Start

    def start(self) -> None:
        """Fail fast, before any profile is sent, on a rejected key or a missing list (once per run)."""
        if self._started:
            return
        self._started = True
        if self.client is None:
            return
        for list_id in self.settings.lists:
            self._check_list(list_id)

    def _check_list(self, list_id: str) -> None:
        assert self.client is not None
        setting = "list_id" if list_id == self.settings.list_id else "stream_lists"
        try:
            params = {"additional-fields[list]": "profile_count"} if self.mirror is not None else None
            answer = self.client.get(f"/api/lists/{list_id}", params, budget=CHECK_BUDGET)
        except ConnectionFailed as failed:
            msg = (
                f"Cannot reach Klaviyo at api_url {self.settings.api_url}: {failed.cause}; check the "
                "api_url setting, and that this machine can reach it."
            )
            raise KlaviyoError(msg) from None
        except KlaviyoApiError as error:
            if error.status in {401, 403}:
                msg = (
                    f"Klaviyo rejected the API key ({error.status}): check the api_key setting "
                    f"and that the key has the {self._scopes()} scopes."
                )
                raise KlaviyoError(msg) from None
            if error.status == 404:
                msg = (
                    f"Klaviyo has no list with id {list_id!r} for this API key: check the {setting} setting."
                )
                raise KlaviyoError(msg) from None
            raise
        logger.info("Connected to Klaviyo at %s; list %s found.", self.settings.api_url, list_id)
        count = ((answer.get("data") or {}).get("attributes") or {}).get("profile_count")
        if self.mirror is not None and isinstance(count, int) and not isinstance(count, bool):
            self.mirror.members_before[list_id] = count  # the removal guard's measure

    def _scopes(self) -> str:
        """The scopes this run's settings need, for the sentence that says a key lacks them."""
        scopes = ["lists:write", "profiles:write"]
        if self.mirror is not None or self.settings.consent_path is not None:
            scopes += ["lists:read", "profiles:read"]
        if self.settings.consent_path is not None:
            scopes.append("subscriptions:write")
        return ", ".join(scopes[:-1]) + " and " + scopes[-1]

    # Records

    def record_read(self) -> None:
        """A record arrived; stop here if settling jobs in the background failed."""
        self.report.count_read()
        self.report.tick()
        if self.pipeline is not None:
            self.pipeline.raise_failure()

    def reject(self, stream: str, record: Any, reject: Reject) -> None:
        """A record that will not be exported; it is final at once."""
        self.report.reject(stream, record, reject)
        self._later_rejected(record)

    def list_for(self, stream: str) -> str:
        """The list a stream goes to; a stream with none is a configuration error, before its records."""
        list_id = self.settings.list_for(stream)
        if list_id is None:
            msg = (
                f"Stream {stream!r} has no Klaviyo list: add it to stream_lists, or set list_id "
                "for the streams stream_lists does not name."
            )
            raise RunError(msg)
        self._streams.add(stream)
        if self.mirror is not None:
            self.mirror.routed(stream, list_id)
        return list_id

    def add(
        self,
        profile: Profile,
        stream: str,
        record: dict[str, Any],
        source: dict[str, Any] | str,
        list_id: str,
    ) -> None:
        """Count a mapped profile towards the limit and hold it for the next batch of its list.

        ``source`` is what held and sent profiles keep to write a reject later: the
        record, or the line it came in on (see :class:`PendingProfile`).
        """
        seen_before = hash64(profile.key) in self._profiles
        admission = self._admit(profile.key, list_id)
        if admission is Admission.OVER_LIMIT:
            limit = self.settings.max_profiles
            detail = f"The run already has max_profiles_per_run ({limit:,}) profiles."
            self.report.reject(stream, record, Reject("over_limit", detail))
            if self.settings.on_limit_exceeded == "fail":
                self._stop_at_limit()
            return
        profile = self._one_person_per_phone(profile)
        for dropped in profile.dropped:
            self.report.reject(stream, record, dropped, counted=False)
        epoch = self.ledger.open_record()
        self._taken += 1
        if seen_before:
            # A later record of someone already taken (for any list: consent is the profile's):
            # an earlier job's consent must not outvote it.
            self._later_records[hash64(profile.key)] = self._taken
        item = PendingProfile.of(
            profile, stream, source, epoch, list_id=list_id, order=self._taken, describe=self.pipeline is None
        )
        self._hold(item, admission)

    def _one_person_per_phone(self, profile: Profile) -> Profile:
        """Klaviyo identifies people by phone and external id too: one already given to another
        email in this run is dropped.

        Otherwise Klaviyo would merge the two emails into one profile (and one's consent would
        become the other's).
        """
        person = hash64(profile.key)
        for attribute, owners, reason in (
            ("phone_number", self._phone_owner, "duplicate_phone"),
            ("external_id", self._external_owner, "duplicate_external_id"),
        ):
            value = profile.resource["attributes"].get(attribute)
            if value is None or owners.setdefault(hash64(f"{value}"), person) == person:
                continue
            detail = (
                f"{attribute} is already the {attribute} of another email in this run; it was left out so "
                "that Klaviyo does not merge the two people, and the profile was exported without it."
            )
            profile = profile.without(attribute, Reject(reason, detail))
        return profile

    def _admit(self, key: str, list_id: str) -> Admission:
        """Count a profile towards the limit the first time its email is seen in this run.

        With several lists, a person already sent to another list is new to this one (it
        is sent, not "sent again"), and still one profile towards the limit.
        """
        hashed = hash64(key)
        membership = hash64(f"{list_id}\n{key}") if self._memberships is not None else 0
        if self._memberships is not None:
            if membership in self._memberships:
                return Admission.REPEAT
            if hashed in self._profiles:
                self._memberships.setdefault(membership)
                return Admission.NEW
        elif hashed in self._profiles:
            return Admission.REPEAT
        limit = self.settings.max_profiles
        if limit and len(self._profiles) >= limit:
            if not self.limit_reached:
                self.limit_reached = True
                self._warn_limit()
            return Admission.OVER_LIMIT
        self._profiles.setdefault(hashed)
        if self._memberships is not None:
            self._memberships.setdefault(membership)
        self.report.count_distinct()
        return Admission.NEW

    def _warn_limit(self) -> None:
        if self.settings.on_limit_exceeded == "truncate":
            logger.warning(
                "Reached max_profiles_per_run (%d); further new profiles are skipped and counted "
                "(on_limit_exceeded: truncate).",
                self.settings.max_profiles,
            )

    def _stop_at_limit(self) -> None:
        """Export what is held (exactly the limit), wait until it is final, then stop the run."""
        self._send_all_and_wait()
        limit = self.settings.max_profiles
        raise ProfileLimitReached(
            f"The run reached max_profiles_per_run ({limit:,} distinct profiles): "
            f"those were exported and the run stopped without saving state for later records; "
            f"raise the limit, or set on_limit_exceeded to truncate to export only the first {limit:,}."
        )

    def _hold(self, item: PendingProfile, admission: Admission) -> None:
        """Keep a profile for the next send; a later record for the same email replaces it."""
        replaced = self._pending.get((item.list_id, item.key))
        if replaced is not None:
            self.report.count_deduplicated()
            self.ledger.close([replaced.epoch])
        elif admission is Admission.REPEAT:
            self.report.count_sent_again()
        self._pending[item.list_id, item.key] = item

    def add_state(self, value: Any) -> None:
        if self.mirror is not None:
            self.mirror.state(value)
        self.ledger.add_state(value)

    # What the reader reports (InputEvents)

    def bad_record(self, stream: str, record: Any, reject: Reject) -> None:
        """A RECORD line whose record cannot be read or represented: counted and rejected."""
        self.report.count_read()
        self.report.reject(stream, record if isinstance(record, dict) else None, reject)
        self._later_rejected(record)
        if self.mirror is None:
            return
        self.mirror.record_from(stream)
        # The reader names the tap's stream; its records reach lists under the stream maps' names.
        for alias in self._aliases(stream):
            list_id = self.settings.list_for(alias)
            if list_id is not None:
                self.mirror.keep_any(list_id, record)  # any email in it still keeps its member

    def line_skipped(self, what: str) -> None:
        self.report.count_skipped_input(what)

    # Sending

    def send_pending(self, full: int | None = None) -> None:
        """Submit the held profiles; returns once Klaviyo has accepted the jobs (not finished them).

        Profiles whose person is in a job still running stay held for a later send. With
        ``full`` (a drain because the batch is full), jobs have ``full`` profiles and a
        smaller remainder stays held too, so that held-back profiles do not add a small
        job to every batch.
        """
        pending, self._pending = list(self._pending.values()), {}
        if not pending:
            return
        if self.pipeline is None:
            for line in describe_dry_run(pending):
                logger.info("%s", line)
            for list_id, count in Counter(item.list_id for item in pending).items():
                self.report.count_exported(count, list_id)
            for list_id, count in Counter(
                item.list_id for item in pending if item.consent is not None
            ).items():
                self.report.count_subscribed(count, list_id)
            self.ledger.close(item.epoch for item in pending)
            return
        # A person bound for two lists in one send goes to the first now and to the other once
        # that job has settled, so that their later record is applied last.
        ready, held = pending, []
        if self._memberships is not None:
            first: dict[str, PendingProfile] = {}
            for item in pending:
                if item.key not in first or item.order < first[item.key].order:
                    first[item.key] = item
            ready = [item for item in pending if first[item.key] is item]
            held = [item for item in pending if first[item.key] is not item]
        free, busy = self.pipeline.busy(ready)
        held += busy
        by_list: dict[str, list[PendingProfile]] = {}
        for item in free:
            by_list.setdefault(item.list_id, []).append(item)
        chunks = []
        for list_id, items in by_list.items():
            split = list(split_for_jobs(items, full or MAX_PROFILES_PER_JOB))
            if full is not None and split and len(split[-1]) < full:
                held += split.pop()
            chunks += [(list_id, chunk) for chunk in split]
        for item in held:
            self._pending[item.list_id, item.key] = item
        self.pipeline.submit(chunks)

    def _send_all_and_wait(self) -> None:
        """Submit every held profile and wait until every job is settled.

        A round can hold some back: people whose earlier record was in a job still running,
        or who go to several lists (one list a round). Every round sends at least one record
        of each person, so the rounds end.
        """
        while True:
            self.send_pending()
            self._wait_for_jobs()
            if not self._pending:
                return

    def _wait_for_jobs(self) -> None:
        if self.pipeline is not None:
            self.pipeline.wait_all()
            self.pipeline.raise_failure()

    # What jobs report (JobEvents), from the submitting and the settling thread

    def superseded(self, list_id: str, key: str, order: int) -> bool:
        return self._later_records.get(hash64(key), order) > order

    def _later_rejected(self, record: Any) -> None:
        """A rejected record still says who it is for: any earlier consent of that person is superseded,
        since what this later record would have said is unknown."""
        if self.settings.consent_path is None or not isinstance(record, dict):
            return
        key = self.mapper.key_of(record)
        if key is not None and hash64(key) in self._profiles:
            self._taken += 1
            self._later_records[hash64(key)] = self._taken

    def job_submitted(self, job_id: str) -> None:
        if not self._books_closed:
            self.report.job_submitted(job_id)

    def rejected(self, item: PendingProfile | SentProfile, reject: Reject) -> None:
        if self._books_closed:
            return
        self.report.reject(item.stream, item.record, reject)
        self.ledger.close([item.epoch])

    def value_dropped(self, item: SentProfile, reject: Reject) -> None:
        if not self._books_closed:
            self.report.reject(item.stream, item.record, reject, counted=False)

    def job_done(
        self, job: SubmittedJob, imported_epochs: list[int], unmatched_failures: int, subscribed: int
    ) -> None:
        if self._books_closed:
            return
        self.report.count_exported(len(imported_epochs) - unmatched_failures, job.list_id)
        self.report.count_subscribed(subscribed, job.list_id)
        for _ in range(unmatched_failures):
            detail = f"Import job {job.id} reported a failed profile without an import error that names it."
            self.report.reject("", None, Reject("rejected_by_klaviyo", detail))
        self.report.job_settled()
        self.report.flush()
        self.report.tick()
        self.ledger.close(imported_epochs)

    # End

    def finish(self) -> None:
        """All input was read and drained: wait for every job, then end the run as complete."""
        self.start()
        self.ledger.hold()  # the final STATE comes after the summary line
        self._send_all_and_wait()
        self._warn_unmatched_stream_lists()
        self._check_rejects()
        if self.mirror is not None:
            self._mirror(self.mirror)
        self._end("complete")

    def _warn_unmatched_stream_lists(self) -> None:
        """A stream_lists key that names no stream of this run is a typo more often than not: say so."""
        for stream in sorted(set(self.settings.stream_lists) - self._streams):
            near = difflib.get_close_matches(stream, sorted(self._streams), n=1, cutoff=0.6)
            hint = f"; the closest is {near[0]!r}" if near else ""
            logger.warning(
                "stream_lists names stream %r, which did not appear in this run (streams: %s)%s.",
                stream,
                ", ".join(repr(name) for name in sorted(self._streams)) or "none",
                hint,
            )

    def _check_rejects(self) -> None:
        """Fail, once everything else is exported, a run that rejected more than max_reject_fraction."""
        report, limit = self.report, self.settings.max_reject_fraction
        rejected = report.rejected_total
        if not report.read or rejected / report.read <= limit:
            return
        reason, count = report.rejected.most_common(1)[0]
        raise TooManyRejects(
            f"{rejected:,} of the {report.read:,} records read ({rejected / report.read:.0%}) were rejected, "
            f"more than max_reject_fraction ({limit:.0%}); the most common reason is {reason} ({count:,}): "
            "the rest were exported, and the report and the rejects file give each reason."
        )

    def _mirror(self, mirror: Mirror) -> None:
        """Plan the removals that make each list equal to this run's profiles for it, where that is safe.

        Every list is read and planned; the plans within the removal guard are written for
        target-klaviyo-mirror (a dry run only logs them). A list this run did not see whole
        is left as it is with a warning; the run fails if that is true of every list, or if
        any list would lose more than the removal guard allows.
        """
        assert self.client is not None
        if self.limit_reached:
            logger.warning(
                "Nothing will be removed from any list (sync_mode mirror): the run reached "
                "max_profiles_per_run, so it did not export the whole segment."
            )
            for list_id in mirror.lists:
                self.report.mirror_outcome(list_id, "not mirrored: the run reached the profile limit")
            self._plans = []
            return
        left: list[str] = []
        refusals: list[str] = []
        plans = []
        for list_id in mirror.lists:
            reason = mirror.why_not(list_id, self.report.exported_to[list_id])
            if reason is not None:
                left.append(f"Nothing will be removed from list {list_id} (sync_mode mirror): {reason}.")
                self.report.mirror_outcome(list_id, f"not mirrored: {reason}")
                continue
            plan = mirror.plan(self.client, list_id)
            refusal = mirror.refusal(plan)
            if refusal is not None:
                self.report.mirror_outcome(
                    list_id, "refused: over mirror_max_removal_fraction", plan.members_before
                )
                refusals.append(refusal)
                continue
            plans.append(plan)
            kept = f"; {plan.without_email:,} members without an email are kept" if plan.without_email else ""
            logger.info(
                "%s %d of the %d members list %s had before this run (sync_mode mirror)%s.",
                "Dry run: would remove" if self.settings.dry_run else "Planned to remove",
                len(plan.remove),
                plan.members_before,
                plan.list_id,
                kept,
            )
            outcome = "dry run" if self.settings.dry_run else "planned"
            self.report.mirror_outcome(
                plan.list_id, outcome, plan.members_before, len(plan.remove), plan.without_email
            )
        failures = refusals or (left if not plans else [])
        for sentence in left:
            if sentence not in failures:
                logger.warning("%s", sentence)
        for sentence in failures[:-1]:
            logger.error("%s", sentence)
        if failures:
            raise MirrorRefused(failures[-1])  # no plan: the pipeline failed, so nothing is removed
        self._plans = plans  # written once the report and the final STATE are (see _end)

    def _write_plan(self, plans: list[ListPlan]) -> None:
        """The removals for target-klaviyo-mirror; even an empty plan says this run was complete.

        The last thing a run does: a run whose report or final STATE cannot be written fails,
        and leaves no plan to apply.
        """
        if self.settings.dry_run:
            return
        assert self.plan_files is not None
        assert self.report.run_id is not None
        settings = self.settings
        self.plan_files.write(self.report.run_id, settings.routing, settings.api_url, plans, meltano_run())
        planned = sum(len(plan.remove) for plan in plans)
        logger.info(
            "Wrote the mirror plan (%d members to remove from %d list(s)) to %s: target-klaviyo-mirror "
            "removes them, run once the tap and this target have both succeeded.",
            planned,
            len(plans),
            self.plan_files.path,
        )

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Whatever escapes the block ends the run with the matching outcome, then goes on up."""
        try:
            yield
        except ProfileLimitReached:
            self._end("stopped at the profile limit")
            raise
        except RunInterrupted:
            self._end("interrupted")
            raise
        except BaseException:
            self._end("failed")
            raise

    def _end(self, outcome: str) -> None:
        if self._ended:
            return
        self._ended = True
        self.stop.ending = True
        self.ledger.hold()
        reported = False
        try:
            if outcome == "interrupted" and self.stop.signum is not None:
                logger.warning(
                    "Stopping on %s: no further input is read; only records confirmed by Klaviyo are "
                    "covered by the STATE written.",
                    signal.Signals(self.stop.signum).name,
                )
            if self.pipeline is not None:
                if outcome != "complete":
                    self._settle_within_grace()
                self.pipeline.abandon()
            # A background thread may still be finishing a request: from here on, what it
            # reports stays out of the report and the rejects file, which must agree.
            self._books_closed = True
            self.report.finish(outcome)
            if self.settings.report_path is not None:
                self.report.write(self.settings.report_path)
            if self.report.skipped_over_limit:
                logger.warning(
                    "%d new profiles were skipped because the run reached max_profiles_per_run (%d).",
                    self.report.skipped_over_limit,
                    self.settings.max_profiles,
                )
            logger.info("%s", self.report.summary())
            reported = True
        finally:
            try:
                self.ledger.stop()  # writes the final STATE, after the summary
                if reported and outcome == "complete" and self._plans is not None:
                    self._write_plan(self._plans)
            finally:
                for client in self._clients:
                    client.close()
                if self.plan_files is not None:
                    self.plan_files.unlock()

    def _settle_within_grace(self) -> None:
        """Let jobs already in flight finish, for at most ``stop_grace_seconds``, so the counts are right."""
        assert self.pipeline is not None
        in_flight = self.pipeline.in_flight
        if in_flight and not self.pipeline.settling_stopped:
            grace = self.settings.stop_grace_seconds
            logger.info("Waiting up to %.0f s for %d import job(s) in flight to finish.", grace, in_flight)
            if not self.pipeline.wait_all(time.monotonic() + grace):
                logger.warning(
                    "%d import job(s) did not finish within %.0f s; their profiles are not confirmed "
                    "and no STATE covers them, so the next run sends them again.",
                    self.pipeline.in_flight,
                    grace,
                )
