"""One run of the target, from the connection check to the report: its wiring and its end.

The run is made of parts, each with one job: :mod:`~target_klaviyo.run.admission`
(limit, people seen, phone owners), :mod:`~target_klaviyo.run.batcher` (held
profiles, in rounds), a :class:`~target_klaviyo.delivery.port.Delivery` (import
jobs, or a dry run's description), :mod:`~target_klaviyo.run.outcomes` (the only
writer of counts, rejects and STATE) and, in mirror mode,
:mod:`~target_klaviyo.run.mirroring`. Admitting and batching run on the reading
thread (the SDK's, which calls the sinks); the delivery's submitting and settling
threads only report outcomes.

A run ends exactly once, through :meth:`ExportRun.finish` (all input read) or
:meth:`ExportRun.guard` (anything that stops it early), with one of the
outcomes ``complete``, ``failed``, ``interrupted`` or ``stopped at the profile
limit``; the report and the summary line are written then.
"""

from __future__ import annotations

import difflib
import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from target_klaviyo.delivery.batch import PendingProfile
from target_klaviyo.delivery.dry_run import DryRun
from target_klaviyo.delivery.pipeline import KlaviyoDelivery
from target_klaviyo.delivery.port import Delivery
from target_klaviyo.errors import ProfileLimitReached, RunError, TooManyRejects
from target_klaviyo.klaviyo.http import KlaviyoClient
from target_klaviyo.ledger.digest import person_of
from target_klaviyo.ledger.known import Verdict
from target_klaviyo.ledger.ledger import Ledger
from target_klaviyo.mirror.planner import Mirror
from target_klaviyo.records.mapping import ProfileMapper
from target_klaviyo.records.profile import Profile, Reject
from target_klaviyo.run.admission import Admission, Admissions
from target_klaviyo.run.batcher import Batcher
from target_klaviyo.run.connection import check_lists
from target_klaviyo.run.mirroring import MirrorRun, void_older_plan
from target_klaviyo.run.outcomes import Outcomes
from target_klaviyo.run.report import RunReport
from target_klaviyo.run.state import StateLedger
from target_klaviyo.run.stop import RunInterrupted, StopSignal
from target_klaviyo.settings.settings import Settings

logger = logging.getLogger(
    "target_klaviyo.run"
)  # the name its lines had before the modules moved into rooms: users' log filters keep working


class ExportRun:
    def __init__(self, settings: Settings, aliases: Callable[[str], list[str]] | None = None) -> None:
        """``aliases`` gives the names a tap's stream has after the stream maps (see :meth:`bad_record`)."""
        self.settings = settings
        self._aliases = aliases or (lambda stream: [stream])
        self.mapper = ProfileMapper(settings)
        # A dry run is decided here, once: it writes no STATE, and its delivery only describes.
        self.report = RunReport(
            settings.rejects_path, dry_run=settings.dry_run, ledger=settings.ledger is not None
        )
        self.admissions = Admissions(settings, self.mapper)
        # Mirror mode reads lists even in a dry run (to say what it would remove). First: whatever
        # fails next, no older plan outlives this run.
        self.mirroring = MirrorRun(settings, self.report) if settings.mirror else None
        if self.mirroring is None:
            void_older_plan(settings)
        # The profile ledger is opened, locked and read in start(), before any record is sent.
        self.profiles = Ledger(settings) if settings.ledger is not None else None
        self.outcomes = Outcomes(
            self.report,
            StateLedger(emit=not settings.dry_run),
            self.admissions.superseded,
            self.profiles,
        )
        self.stop = StopSignal()
        self.client = self._client() if not settings.dry_run or settings.mirror else None
        self.delivery = self._delivery()
        self.batcher = Batcher(self.delivery, self.outcomes)
        self._started = False
        self._ended = False
        self._streams: set[str] = set()  # every stream whose SCHEMA arrived (after the stream maps)
        self.report.start_rejects()  # the rejects file holds this run's rejects only

    def _client(self) -> KlaviyoClient:
        settings = self.settings
        return KlaviyoClient(
            settings.api_url,
            settings.api_key,
            settings.api_revision,
            on_retry=self.outcomes.retried,
            waiting=self.stop.waiting,
        )

    def _delivery(self) -> Delivery:
        if self.settings.dry_run:
            return DryRun(self.outcomes)
        assert self.client is not None
        # The settling thread gets its own client: no connection is shared by two threads.
        return KlaviyoDelivery(
            self.client,
            self._client(),
            self.outcomes,
            self.settings.max_jobs_in_flight,
            self.stop,
            self.report.tick,
        )

    @property
    def mirror(self) -> Mirror | None:
        """What mirror mode learns from the input, or None; only the run feeds it (see "Mirror mode")."""
        return self.mirroring.mirror if self.mirroring is not None else None

    @property
    def limit_reached(self) -> bool:
        return self.admissions.limit_reached

    @property
    def ledger(self) -> StateLedger:
        return self.outcomes.ledger

    # Start

    def start(self) -> None:
        """Fail fast, before any profile is sent, on a rejected key or a missing list (once per run)."""
        if self._started:
            return
        self._started = True
        if self.client is None:
            if self.profiles is not None:
                self.profiles.load(None)  # a dry run takes the ledger as it is
                self._hold_identifiers(self.profiles)
            return
        found = check_lists(self.client, self.settings, counts=self.mirror is not None)
        if self.mirror is not None:
            self.mirror.members_before.update(found.counts)  # the removal guard's measure
        if self.profiles is not None:
            self.profiles.load(None if self.settings.dry_run else found.created)
            self._hold_identifiers(self.profiles)

    def _hold_identifiers(self, profiles: Ledger) -> None:
        """Lock who holds each phone number and external id for this run; read them when the first
        profile is checked (a run whose profiles are all unchanged checks none, and reads none)."""
        if self.admissions.sends_identifiers and profiles.lock_identifiers():
            self.admissions.held_later(lambda: profiles.read_identifiers(self.admissions.held_before))

    def use_list(self, list_id: str) -> None:
        """A stream's records go to this list: the ledger locks and reads it first (after :meth:`start`)."""
        if self.profiles is not None:
            self.profiles.use(list_id)

    # Records

    def record_read(self) -> None:
        """A record arrived; stop here if settling jobs in the background failed."""
        self.outcomes.read()
        self.report.tick()
        self.delivery.raise_failure()

    def reject(self, stream: str, record: Any, reject: Reject, list_id: str) -> None:
        """A record that will not be exported; it is final at once.

        In mirror mode every address anywhere in it keeps its member of ``list_id``: a record
        without an email at email_property may carry one elsewhere (``Email`` for ``email``),
        and a person whose record was rejected is still in the segment.
        """
        self.outcomes.reject(stream, record, reject)
        self.admissions.later_rejected(record)
        if self.mirror is not None:
            self.mirror.keep_any(list_id, record)

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
        admissions = self.admissions
        seen_before = admissions.seen(profile.key)
        digest, counted, identifiers = bytes(16), "", b""
        person = person_of(profile.key)
        if self.mirror is not None:
            self.mirror.in_segment(list_id, person)  # mirror_scope synced compares the ledger's people
        if self.profiles is not None:
            verdict, digest = self.profiles.verdict(list_id, profile, person)
            taken = admissions.seen_in(profile.key, list_id)
            # A later record of someone taken: unchanged, it is not sent only if the earlier one is
            # still held (and is dropped); once that one is sent, this one must follow it and win.
            unchanged = verdict is Verdict.UNCHANGED and (
                not taken or self.batcher.withdraw(list_id, profile.key)
            )
            if not unchanged:
                # What is compared is what would be sent: after a phone or external id another email
                # holds is left out. An unchanged profile needs no such check: Klaviyo confirmed it
                # with these values, so the ledger already holds them as this person's.
                checked, identifiers = admissions.one_person_per_phone(profile, person)
                if checked is not profile:
                    profile = checked
                    verdict, digest = self.profiles.verdict(list_id, profile, person)
                    unchanged = verdict is Verdict.UNCHANGED and (
                        not taken or self.batcher.withdraw(list_id, profile.key)
                    )
            if unchanged:
                for dropped in profile.dropped:
                    self.outcomes.reject(stream, record, dropped, counted=False)
                self.outcomes.unchanged(list_id)
                if seen_before and profile.consent is None and self.settings.consent_path is not None:
                    # Not sent, but still this person's latest record: its "no consent" outvotes an
                    # earlier record's "yes" for another list (a later "yes" changes nothing).
                    admissions.take(profile.key, seen_before)
                return
            if not taken:
                counted = verdict.value
                self.outcomes.sent_as(list_id, counted)
        admission = admissions.admit(profile.key, list_id, self.outcomes)
        if admission is Admission.OVER_LIMIT:
            limit = self.settings.max_profiles
            detail = f"The run already has max_profiles_per_run ({limit:,}) profiles."
            self.outcomes.reject(stream, record, Reject("over_limit", detail))
            if self.settings.on_limit_exceeded == "fail":
                self._stop_at_limit()
            return
        if self.profiles is None:  # with a ledger, done above: what is compared is what is sent
            profile, _ = admissions.one_person_per_phone(profile, person)
        for dropped in profile.dropped:
            self.outcomes.reject(stream, record, dropped, counted=False)
        epoch = self.outcomes.open_record()
        order = admissions.take(profile.key, seen_before)
        item = PendingProfile.of(
            profile,
            stream,
            source,
            epoch,
            list_id=list_id,
            order=order,
            describe=self.delivery.keeps_attributes,
            digest=digest,
            verdict=counted,
            identifiers=identifiers,
        )
        self.batcher.hold(item, admission)

    def _stop_at_limit(self) -> None:
        """Export what is held (exactly the limit), wait until it is final, then stop the run."""
        self.batcher.send_all_and_wait()
        limit = self.settings.max_profiles
        raise ProfileLimitReached(
            f"The run reached max_profiles_per_run ({limit:,} distinct profiles): "
            f"those were exported and the run stopped without saving state for later records; "
            f"raise the limit, or set on_limit_exceeded to truncate to export only the first {limit:,}."
        )

    def add_state(self, value: Any) -> None:
        if self.mirror is not None:
            self.mirror.state(value)
        self.outcomes.add_state(value)

    # Mirror mode: what the adapter sees of the input, for the removal guard (a no-op in upsert mode)

    def schema_read(self, stream: str, aliases: list[str], incremental: bool) -> None:
        """A SCHEMA of the tap's ``stream``, whose records reach lists under ``aliases``."""
        if self.mirror is not None:
            for alias in aliases:
                self.mirror.fed(stream, alias)
            if incremental:
                self.mirror.incremental_schema(stream)

    def activated(self, stream: str) -> None:
        """ACTIVATE_VERSION: the tap says this stream's records are a full extract."""
        if self.mirror is not None:
            self.mirror.activated(stream)

    def record_from(self, stream: str) -> None:
        """A RECORD of the tap's ``stream`` arrived (before any stream map)."""
        if self.mirror is not None:
            self.mirror.record_from(stream)

    def keep(self, list_id: str, record: dict[str, Any]) -> None:
        """A record bound for ``list_id``, valid or not: its email keeps its member."""
        if self.mirror is not None:
            self.mirror.keep(list_id, record)

    # What the reader reports (InputEvents)

    def bad_record(self, stream: str, record: Any, reject: Reject) -> None:
        """A RECORD line whose record cannot be read or represented: counted and rejected."""
        self.outcomes.read()
        self.outcomes.reject(stream, record if isinstance(record, dict) else None, reject)
        self.admissions.later_unreadable(record)  # before the stream maps: any address in it may be theirs
        if self.mirror is None:
            return
        self.mirror.record_from(stream)
        # The reader names the tap's stream; its records reach lists under the stream maps' names.
        for alias in self._aliases(stream):
            list_id = self.settings.list_for(alias)
            if list_id is not None:
                self.mirror.keep_any(list_id, record)  # any email in it still keeps its member

    def line_skipped(self, what: str) -> None:
        self.outcomes.skipped_line(what)

    # Sending

    def send_pending(self, full: int | None = None) -> None:
        """Send the held profiles; returns once Klaviyo has accepted the jobs (not finished them).

        Profiles whose person is in a job still running stay held for a later send. With
        ``full`` (a drain because the batch is full), jobs have ``full`` profiles and a
        smaller remainder stays held too.
        """
        self.batcher.send(full)

    # End

    def finish(self) -> None:
        """All input was read and drained: wait for every job, then end the run as complete."""
        self.start()
        self.ledger.hold()  # the final STATE comes after the summary line
        self.batcher.send_all_and_wait()
        self._warn_unmatched_stream_lists()
        self._check_rejects()
        if self.mirroring is not None:
            assert self.client is not None  # mirror mode reads lists, even in a dry run
            self.mirroring.plan(self.client, self.limit_reached, self.profiles)
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
            grace = self.settings.stop_grace_seconds if outcome != "complete" else None
            self.delivery.abandon(grace)
            # A background thread may still be finishing a request: from here on, what it
            # reports stays out of the report and the rejects file, which must agree.
            self.outcomes.close(outcome)
            if self.settings.report_path is not None:
                self.report.write(self.settings.report_path)
            if self.report.skipped_over_limit:
                logger.warning(
                    "%d new profiles were skipped because the run reached max_profiles_per_run (%d).",
                    self.report.skipped_over_limit,
                    self.settings.max_profiles,
                )
            if self.settings.dry_run and self.profiles is not None:
                for line in self.report.dry_run_lines():
                    logger.info("%s", line)
            logger.info("%s", self.report.summary())
            reported = True
        finally:
            try:
                self.ledger.stop()  # writes the final STATE, after the summary
                if reported and outcome == "complete" and self.mirroring is not None:
                    # The ledger forgets who the plan removes first: should that fail, no plan is
                    # written, and nobody removed stays "confirmed" to be skipped if they come back.
                    if self.profiles is not None:
                        self.profiles.forget(self.mirroring.leaving())
                        self.profiles.forget_absent()
                    self.mirroring.write_plan()
            finally:
                self.delivery.close()
                if self.client is not None:
                    self.client.close()
                if self.profiles is not None:
                    self.profiles.close()
                if self.mirroring is not None:
                    self.mirroring.unlock()
