"""What one run exports, shared by every stream: dedupe, the profile limit, and sending.

Streams are drained separately by the SDK, but they all feed one Klaviyo list, so
the profiles waiting to be sent, the set already seen, the per-run limit and the
report live here, once. Holding the waiting profiles in one place is what lets the
later record for an email win even when the two records came from different streams.
"""

from __future__ import annotations

import logging
import threading
from enum import Enum

from target_klaviyo.client import KlaviyoClient, KlaviyoError
from target_klaviyo.jobs import BulkImporter, PendingProfile, describe_dry_run
from target_klaviyo.mapping import ProfileMapper
from target_klaviyo.report import RunReport
from target_klaviyo.settings import Settings

logger = logging.getLogger("target_klaviyo.run")


class Admission(Enum):
    NEW = "new"
    REPEAT = "repeat"
    OVER_LIMIT = "over_limit"


class ProfileLimitReached(KlaviyoError):
    """``on_limit_exceeded: fail`` and a profile beyond ``max_profiles_per_run`` arrived."""


class ExportRun:
    def __init__(self, settings: Settings, client: KlaviyoClient | None) -> None:
        self.settings = settings
        self.mapper = ProfileMapper(settings)
        self.report = RunReport(settings.rejects_path, dry_run=settings.dry_run)
        self.importer = None if client is None else BulkImporter(client, settings.list_id, self.report)
        self.limit_reached = False
        self._profiles: set[str] = set()
        self._pending: dict[str, PendingProfile] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()

    def admit(self, key: str) -> Admission:
        """Count a profile towards the limit the first time its email is seen in this run."""
        with self._lock:
            if key in self._profiles:
                return Admission.REPEAT
            limit = self.settings.max_profiles
            if limit and len(self._profiles) >= limit:
                if not self.limit_reached:
                    self.limit_reached = True
                    self._warn_limit()
                return Admission.OVER_LIMIT
            self._profiles.add(key)
            self.report.distinct_profiles += 1
            return Admission.NEW

    def limit_error(self) -> ProfileLimitReached:
        return ProfileLimitReached(
            f"The run reached max_profiles_per_run ({self.settings.max_profiles:,} distinct profiles): "
            f"those were exported and the run stopped without saving state; raise the limit, "
            f"or set on_limit_exceeded to truncate to export only the first {self.settings.max_profiles:,}."
        )

    def _warn_limit(self) -> None:
        if self.settings.on_limit_exceeded == "truncate":
            logger.warning(
                "Reached max_profiles_per_run (%d); further new profiles are skipped and counted "
                "(on_limit_exceeded: truncate).",
                self.settings.max_profiles,
            )

    def hold(self, item: PendingProfile, admission: Admission) -> None:
        """Keep a profile for the next send; a later record for the same email replaces it."""
        with self._lock:
            if item.profile.key in self._pending:
                self.report.deduplicated += 1
            elif admission is Admission.REPEAT:
                self.report.sent_again += 1
            self._pending[item.profile.key] = item

    def send_pending(self) -> None:
        """Send every held profile and return once Klaviyo has settled each of them."""
        with self._send_lock:
            with self._lock:
                pending, self._pending = list(self._pending.values()), {}
            if pending:
                self._send(pending)

    def _send(self, pending: list[PendingProfile]) -> None:
        if self.importer is None:
            for line in describe_dry_run(self.settings.list_id, pending):
                logger.info("%s", line)
            self.report.exported += len(pending)
            return
        self.importer.import_batch(pending)
        self.report.flush()
