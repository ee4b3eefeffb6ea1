"""The run's part in mirror mode: hold the plan file for the run, plan the removals at the end, write them.

The plan file is locked before any input is read, however early the run fails later:
no older plan outlives this run, and this run is the one a plan must come from
(:mod:`target_klaviyo.mirror.plan_file`). Runs on the reading thread.
"""

from __future__ import annotations

import functools
import logging

from target_klaviyo.errors import MirrorRefused, RunError
from target_klaviyo.klaviyo.http import KlaviyoClient
from target_klaviyo.ledger.ledger import Ledger
from target_klaviyo.mirror.plan_file import PlanFiles, meltano_run
from target_klaviyo.mirror.plan_format import ListPlan
from target_klaviyo.mirror.planner import Mirror
from target_klaviyo.mirror.synced import SyncedPlan
from target_klaviyo.run.report import RunReport
from target_klaviyo.settings.settings import Settings

logger = logging.getLogger(
    "target_klaviyo.run"
)  # the name its lines had before the modules moved into rooms: users' log filters keep working


def void_older_plan(settings: Settings) -> None:
    """A newer run of the same loader, in upsert mode, voids a plan an earlier mirror run left."""
    PlanFiles(settings.mirror_plan_path).void()


class MirrorRun:
    def __init__(self, settings: Settings, report: RunReport) -> None:
        self._settings = settings
        self._report = report
        self.mirror = Mirror(
            settings.email_path,
            settings.max_removal_fraction,
            settings.stream_lists,
            synced=settings.mirror_scope == "synced",
        )
        self.plan_files = PlanFiles(settings.mirror_plan_path)
        self.plan_files.prepare()
        try:
            self.plan_files.lock("target-klaviyo")
        except RunError:
            # An apply (or another run) holds the plan: this run fails, but it is the loader's
            # latest, so an apply in progress stops before its next request.
            self.plan_files.void()
            raise
        report.run_id = self.plan_files.start_run()
        self._plans: list[ListPlan] | None = None  # what the run will write to its plan, once complete

    def plan(
        self,
        client: KlaviyoClient,
        limit_reached: bool,
        ledger: Ledger | None = None,
    ) -> None:
        """Plan the removals that make each list equal to this run's profiles for it, where that is safe.

        Every list is read and planned; the plans within the removal guard are written for
        target-klaviyo-mirror (a dry run only logs them). A list this run did not see whole
        is left as it is with a warning; the run fails if that is true of every list, or if
        any list would lose more than the removal guard allows. The ``ledger`` is told each
        member of a list read whole; with ``mirror_scope: synced`` it says whom this target put
        into each list (:mod:`target_klaviyo.mirror.synced`).
        """
        mirror, report, dry_run = self.mirror, self._report, self._settings.dry_run
        if limit_reached:
            logger.warning(
                "Nothing will be removed from any list (sync_mode mirror): the run reached "
                "max_profiles_per_run, so it did not export the whole segment."
            )
            for list_id in mirror.lists:
                report.mirror_outcome(list_id, "not mirrored: the run reached the profile limit")
            self._plans = []
            return
        left: list[str] = []
        refusals: list[str] = []
        plans = []
        for list_id in mirror.lists:
            # Unchanged profiles are ones Klaviyo confirmed before, as they are (the ledger's).
            confirmed = report.exported_to[list_id] + report.unchanged_to[list_id]
            reason = mirror.why_not(list_id, confirmed)
            if reason is not None:
                left.append(f"Nothing will be removed from list {list_id} (sync_mode mirror): {reason}.")
                report.mirror_outcome(list_id, f"not mirrored: {reason}")
                continue
            member = functools.partial(ledger.member, list_id) if ledger is not None else None
            if self._settings.mirror_scope == "synced":
                assert ledger is not None  # settings: mirror_scope synced needs the ledger
                synced = SyncedPlan(mirror, client, ledger, list_id, member)
                plan = synced.make()
                _say_synced(synced)
            else:
                plan = mirror.plan(client, list_id, member)
            refusal = mirror.refusal(plan)
            if refusal is not None:
                report.mirror_outcome(
                    list_id, "refused: over mirror_max_removal_fraction", plan.members_before
                )
                refusals.append(refusal)
                continue
            plans.append(plan)
            kept = f"; {plan.without_email:,} members without an email are kept" if plan.without_email else ""
            logger.info(
                "%s %d of the %d members list %s had before this run (sync_mode mirror)%s.",
                "Dry run: would remove" if dry_run else "Planned to remove",
                len(plan.remove),
                plan.members_before,
                plan.list_id,
                kept,
            )
            outcome = "dry run" if dry_run else "planned"
            report.mirror_outcome(
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
        self._plans = plans  # written once the report and the final STATE are (see write_plan)

    def leaving(self) -> dict[str, list[bytes]]:
        """Per list the plan will hold, the people it removes (and, synced, those not in the list)."""
        if self._plans is None or self._settings.dry_run:
            return {}
        return {plan.list_id: self.mirror.leaving.get(plan.list_id, []) for plan in self._plans}

    def write_plan(self) -> None:
        """The removals for target-klaviyo-mirror; even an empty plan says this run was complete.

        The last thing a complete run does: a run whose report or final STATE cannot be
        written fails, and leaves no plan to apply. A dry run writes none.
        """
        plans = self._plans
        if plans is None or self._settings.dry_run:
            return
        assert self._report.run_id is not None
        settings = self._settings
        self.plan_files.write(self._report.run_id, settings.routing, settings.api_url, plans, meltano_run())
        planned = sum(len(plan.remove) for plan in plans)
        logger.info(
            "Wrote the mirror plan (%d members to remove from %d list(s)) to %s: target-klaviyo-mirror "
            "removes them, run once the tap and this target have both succeeded.",
            planned,
            len(plans),
            self.plan_files.path,
        )

    def unlock(self) -> None:
        self.plan_files.unlock()


def _say_synced(synced: SyncedPlan) -> None:
    """What mirror_scope synced read of a list, and whom it keeps although the ledger lists them."""
    plan = synced.plan
    logger.info(
        "List %s (mirror_scope synced): read %s member(s) of the list; %s of the people this target put "
        "there left the segment.",
        plan.list_id,
        f"{plan.members:,}",
        f"{len(plan.remove) + synced.kept_changed + synced.two_profiles + synced.not_members:,}",
    )
    kept = [
        (synced.kept_changed, "whose profile in Klaviyo now holds another address, or one of this run's"),
        (synced.two_profiles, "whose address another profile in Klaviyo holds too"),
        (synced.not_members, "who are no longer members"),
        (synced.other_streams, "put there from a stream that no longer feeds the list"),
    ]
    for count, who in kept:
        if count:
            logger.warning(
                "List %s (mirror_scope synced): %s of the people this target put there %s are not removed.",
                plan.list_id,
                f"{count:,}",
                who,
            )
