"""What a run did: its counts, the rejects file, the summary line and the JSON report.

Every record read ends in exactly one place: exported, unchanged (the ledger has
it confirmed, so it was not sent), merged into a later record of the same profile
(deduplicated), rejected with a reason, or skipped over the profile limit. ``RunReport.unaccounted`` is zero at the end of every complete run;
after a failed or interrupted run it counts the records whose export was never
confirmed (held, or in a job that did not finish), which no STATE covers.

Counters change only through the methods below, under one lock, because the
settling thread and the reading thread both report.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

from target_klaviyo.errors import RunError
from target_klaviyo.files import make_private_folders
from target_klaviyo.records.profile import Reject
from target_klaviyo.records.values import Unrepresentable, to_json_value

logger = logging.getLogger(
    "target_klaviyo.report"
)  # the name its lines had before the modules moved into rooms: users' log filters keep working
PROGRESS_INTERVAL = 10.0
PRIVATE = 0o600  # the rejects file and the report hold personal data or describe it


def open_private(path: Path, flags: int) -> int:
    """Open ``path`` readable by its owner only, whatever the umask, creating its folder."""
    make_private_folders(path.parent)
    descriptor = os.open(path, flags | os.O_CREAT, PRIVATE)
    os.fchmod(descriptor, PRIVATE)
    return descriptor


def _as_json(value: Any) -> Any:
    """``json.dumps`` default: the mapping's JSON form of a leaf (a date-time, a Decimal), or its
    text when no JSON number can hold it, so that the rejects file keeps such records."""
    try:
        converted = to_json_value(value)
    except Unrepresentable:
        return str(value)
    return str(value) if converted is value else converted


class RunReport:
    def __init__(
        self, rejects_path: Path | None = None, *, dry_run: bool = False, ledger: bool = False
    ) -> None:
        self.started = time.time()
        self.dry_run = dry_run
        self.ledger = ledger  # whether the run reads a ledger: then unchanged profiles are not sent
        self.unchanged_to: Counter[str] = Counter()  # per list: not sent, the ledger has them confirmed
        # Per list, what the ledger said of each person sent: new, changed, or due again.
        self.sent_as: dict[str, Counter[str]] = {}
        self.distinct_profiles = 0
        self.read = 0
        self.exported = 0
        self.exported_to: Counter[str] = Counter()  # per list
        self.subscribed_to: Counter[str] = Counter()  # per list: subscribed to email marketing
        self.mirrored: dict[str, dict[str, Any]] = {}  # per list, in mirror mode: what became of it
        self.run_id: str | None = (
            None  # in mirror mode: the run its plan must come from (mirror/plan_file.py)
        )
        self.deduplicated = 0
        self.sent_again = 0
        self.skipped_over_limit = 0
        self.rejected: Counter[str] = Counter()
        self.attributes_dropped: Counter[str] = Counter()
        self.input_skipped: Counter[str] = Counter()
        self.job_ids: list[str] = []
        self.jobs_in_flight = 0
        self.throttled = 0
        self.retried = 0
        self.outcome = "running"
        self._rejects_path = rejects_path
        self._rejects_file: IO[str] | None = None
        self._lock = threading.Lock()
        self._next_progress = time.monotonic() + PROGRESS_INTERVAL

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @property
    def unchanged(self) -> int:
        return sum(self.unchanged_to.values())

    @property
    def unaccounted(self) -> int:
        """Records read but not yet exported, unchanged, merged, rejected or skipped (pending in a batch)."""
        return (
            self.read
            - self.exported
            - self.unchanged
            - self.deduplicated
            - self.rejected_total
            - self.skipped_over_limit
        )

    def count_unchanged(self, list_id: str) -> None:
        with self._lock:
            self.unchanged_to[list_id] += 1

    def count_sent_as(self, list_id: str, verdict: str, count: int = 1) -> None:
        """What the ledger said of a person on their way to a list: new, changed or due."""
        with self._lock:
            self.sent_as.setdefault(list_id, Counter())[verdict] += count

    def count_read(self) -> None:
        with self._lock:
            self.read += 1

    def count_distinct(self) -> None:
        with self._lock:
            self.distinct_profiles += 1

    def count_deduplicated(self) -> None:
        with self._lock:
            self.deduplicated += 1

    def count_sent_again(self) -> None:
        with self._lock:
            self.sent_again += 1

    def count_exported(self, count: int, list_id: str) -> None:
        with self._lock:
            self.exported += count
            self.exported_to[list_id] += count

    def count_subscribed(self, count: int, list_id: str) -> None:
        with self._lock:
            if count:
                self.subscribed_to[list_id] += count

    def mirror_outcome(
        self,
        list_id: str,
        outcome: str,
        members_before: int | None = None,
        to_remove: int | None = None,
        without_email: int | None = None,
    ) -> None:
        """What mirror mode made of a list: planned (with how many to remove and to keep), or why not."""
        with self._lock:
            self.mirrored[list_id] = {
                "outcome": outcome,
                "members_before": members_before,
                "to_remove": to_remove,
                "kept_without_email": without_email,
            }

    @property
    def lists_touched(self) -> list[str]:
        """Lists this run sent profiles to (target-klaviyo-mirror adds those it removes members from)."""
        return sorted(+self.exported_to)

    def job_submitted(self, job_id: str) -> None:
        with self._lock:
            self.job_ids.append(job_id)
            self.jobs_in_flight += 1

    def job_settled(self) -> None:
        with self._lock:
            self.jobs_in_flight -= 1

    def count_skipped_input(self, what: str) -> None:
        """A blank line or a byte-order mark: not a message, skipped."""
        with self._lock:
            self.input_skipped[what] += 1

    def count_retry(self, status: int) -> None:
        """An answer that was retried: 429 counts as throttled, anything else as retried."""
        with self._lock:
            if status == 429:
                self.throttled += 1
            else:
                self.retried += 1

    def finish(self, outcome: str) -> None:
        """Set the final outcome and close the rejects file."""
        with self._lock:
            self.outcome = outcome
        self.close()

    def start_rejects(self) -> None:
        """Empty the rejects file (creating it private) before the run: it holds this run's rejects only."""
        if self._rejects_path is None:
            return
        try:
            descriptor = open_private(self._rejects_path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
        except OSError as error:
            raise RunError(
                f"rejects_path cannot be written: {error.strerror or type(error).__name__}."
            ) from None
        # Closed at once: the first reject opens it again to append, so a run that is made but
        # never run (or never rejects) holds no open file.
        os.close(descriptor)

    def reject(self, stream: str, record: Any, reject: Reject, *, counted: bool = True) -> None:
        """Count a reject; a rejected record also goes to the rejects file, one line each.

        ``counted=False`` is for a value dropped from a profile that was still exported,
        and a record skipped over the profile limit is not rejected either: both are
        counted by reason in the report, and the rejects file's lines stay equal to
        ``rejected``.
        """
        with self._lock:
            if not counted:
                self.attributes_dropped[reject.reason] += 1
            elif reject.reason == "over_limit":
                self.skipped_over_limit += 1
            else:
                self.rejected[reject.reason] += 1
                if self._rejects_path is not None:
                    self._write_reject(stream, record, reject)

    def _write_reject(self, stream: str, record: Any, reject: Reject) -> None:
        try:
            self._append_reject(stream, record, reject)
        except OSError as error:
            raise RunError(
                f"rejects_path cannot be written: {error.strerror or type(error).__name__}."
            ) from None

    def _append_reject(self, stream: str, record: Any, reject: Reject) -> None:
        if self._rejects_file is None:
            assert self._rejects_path is not None  # only called when there is a rejects file
            descriptor = open_private(self._rejects_path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
            self._rejects_file = os.fdopen(descriptor, "a", encoding="utf-8")
        line = {
            "reason": reject.reason,
            "detail": reject.detail,
            "stream": stream,
            "rejected_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "record": record,
        }
        try:
            text = json.dumps(line, default=_as_json, allow_nan=False)
        except (ValueError, RecursionError):
            line["record"] = None
            line["detail"] += " (The record itself cannot be written as JSON.)"
            text = json.dumps(line)
        self._rejects_file.write(text + "\n")

    def flush(self) -> None:
        with self._lock:
            if self._rejects_file is not None:
                self._rejects_file.flush()

    def close(self) -> None:
        with self._lock:
            if self._rejects_file is not None:
                rejects, self._rejects_file = self._rejects_file, None
                try:
                    rejects.close()
                except OSError as error:
                    logger.error("The rejects file could not be completed: %s.", error.strerror)

    def tick(self) -> None:
        """Log a progress line when ``PROGRESS_INTERVAL`` seconds have passed since the last."""
        now = time.monotonic()
        with self._lock:  # the reading and the settling thread both tick: one line per interval
            if now < self._next_progress:
                return
            self._next_progress = now + PROGRESS_INTERVAL
        logger.info("%s", self.progress())

    def progress(self) -> str:
        elapsed = max(time.time() - self.started, 1e-9)
        done = len(self.job_ids) - self.jobs_in_flight
        return (
            f"Progress: {self.read:,} records read ({self.read / elapsed:,.0f}/s), "
            f"{self.exported:,} profiles exported ({self.exported / elapsed:,.0f}/s), "
            f"import jobs {done:,} done and {self.jobs_in_flight:,} in flight, "
            f"{self.rejected_total:,} rejected, {self.skipped_over_limit:,} skipped over the limit, "
            f"{self.throttled:,} throttled answers."
        )

    def summary(self) -> str:
        """One line that adds up: the records read are those exported, merged, rejected, skipped
        and (after a stop) not confirmed; then the people, lists and Klaviyo's side of it."""
        rejected = ", ".join(f"{reason} {count:,}" for reason, count in sorted(self.rejected.items()))
        dropped = ", ".join(
            f"{reason} {count:,}" for reason, count in sorted(self.attributes_dropped.items())
        )
        lists = f" to {len(self.exported_to):,} lists" if len(self.exported_to) > 1 else ""
        again = f" ({self.sent_again:,} of them sent again: a later record of someone already sent)"
        exported = (
            f"{self.exported:,} would be exported{lists}{again if self.sent_again else ''} (dry run: "
            "nothing was sent)"
            if self.dry_run
            else f"{self.exported:,} exported{lists}{again if self.sent_again else ''}"
        )
        if self.unchanged:
            exported += f", {self.unchanged:,} unchanged (not sent: Klaviyo confirmed them before)"
        unconfirmed = (
            f", {self.unaccounted:,} not confirmed (no STATE covers them; the next run sends them again)"
            if self.unaccounted
            else ""
        )
        would = "would be " if self.dry_run else ""
        people = f"{self.distinct_profiles:,} distinct people sent"
        if not self.dry_run:
            people += f" in {len(self.job_ids):,} import job(s)"
        subscribed = sum(self.subscribed_to.values())
        if subscribed:
            people += f", {subscribed:,} {would}subscribed to email marketing"
        if self.mirrored:
            planned = [
                entry["to_remove"] for entry in self.mirrored.values() if entry["to_remove"] is not None
            ]
            people += (
                f", {sum(planned):,} members of {len(planned):,} list(s) would be removed by mirroring"
                if self.dry_run
                else f", {sum(planned):,} members of {len(planned):,} list(s) planned for removal (sync_mode mirror)"
            )
        return (
            f"Run {self.outcome}: {self.read:,} records read = {exported}, "
            f"{self.deduplicated:,} deduplicated, {self.rejected_total:,} rejected ({rejected or 'none'}), "
            f"{self.skipped_over_limit:,} skipped over the profile limit{unconfirmed}; {people}; "
            f"values dropped ({dropped or 'none'}), {self.throttled:,} throttled answers, "
            f"in {time.time() - self.started:.1f} s."
        )

    def as_dict(self) -> dict[str, Any]:
        finished = time.time()
        return {
            "outcome": self.outcome,
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "counts": {
                "read": self.read,
                "exported": self.exported,
                "unchanged": self.unchanged,
                "distinct_profiles": self.distinct_profiles,
                "deduplicated": self.deduplicated,
                "sent_again": self.sent_again,
                "rejected": self.rejected_total,
                "rejected_by_reason": dict(sorted(self.rejected.items())),
                "skipped_over_limit": self.skipped_over_limit,
                "values_dropped_by_reason": dict(sorted(self.attributes_dropped.items())),
                "input_lines_skipped": dict(sorted(self.input_skipped.items())),
                "unaccounted": self.unaccounted,
                "subscribed": sum(self.subscribed_to.values()),
                "removed": 0,  # target-klaviyo-mirror adds the members it removed
            },
            "lists_touched": self.lists_touched,
            "lists": self._lists(),
            "job_ids": list(self.job_ids),
            "requests": {"throttled": self.throttled, "retried": self.retried},
            "timings": {
                "started_at": dt.datetime.fromtimestamp(self.started, dt.timezone.utc).isoformat(),
                "finished_at": dt.datetime.fromtimestamp(finished, dt.timezone.utc).isoformat(),
                "seconds": round(finished - self.started, 3),
            },
        }

    def _lists(self) -> dict[str, dict[str, Any]]:
        """Per list: profiles exported and subscribed; in mirror mode, members removed and why."""
        lists: dict[str, dict[str, Any]] = {}
        for list_id in sorted({*self.exported_to, *self.subscribed_to, *self.mirrored, *self.unchanged_to}):
            entry: dict[str, Any] = {
                "exported": self.exported_to[list_id],
                "subscribed": self.subscribed_to[list_id],
            }
            if self.ledger:
                sent_as = self.sent_as.get(list_id, Counter())
                entry.update(
                    unchanged=self.unchanged_to[list_id],
                    ledger={verdict: sent_as[verdict] for verdict in ("new", "changed", "due")},
                )
            if list_id in self.mirrored:
                entry.update(removed=0, mirror=self.mirrored[list_id])
            lists[list_id] = entry
        return lists

    def dry_run_lines(self) -> list[str]:
        """A dry run with a ledger, per list: what it would add, update, leave and (mirror) remove."""
        lines = []
        for list_id, entry in self._lists().items():
            ledger = entry.get("ledger", {})
            mirror = entry.get("mirror") or {}
            remove = f", remove {mirror['to_remove']:,}" if mirror.get("to_remove") is not None else ""
            lines.append(
                f"Dry run, list {list_id}: would add {ledger.get('new', 0):,}, update "
                f"{ledger.get('changed', 0) + ledger.get('due', 0):,} ({ledger.get('due', 0):,} of them "
                f"unchanged but due again), leave {entry.get('unchanged', 0):,} unchanged{remove}."
            )
        return lines

    def write(self, path: Path) -> None:
        write_whole(path, json.dumps(self.as_dict(), indent=2) + "\n", "report_path")


def write_whole(path: Path, text: str, setting: str) -> None:
    """Write a file whole and private: to a new 0600 file beside ``path``, then renamed over it,
    so that a reader never sees half of it; a failure is one sentence naming ``setting``."""
    try:
        make_private_folders(path.parent)
    except OSError as error:
        raise RunError(f"{setting} cannot be written: {error.strerror or type(error).__name__}.") from None
    descriptor, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(partial, path)
    except OSError as error:
        Path(partial).unlink(missing_ok=True)
        raise RunError(f"{setting} cannot be written: {error.strerror or type(error).__name__}.") from None


def record_removals(
    path: Path | None, run_id: str, planned: dict[str, int], removed: dict[str, int], *, complete: bool
) -> None:
    """Set a plan's removals (``removed`` of ``planned``, per list) in the report of the run ``run_id``
    that made it, if the report at ``path`` is that run's: exact totals, never added twice."""
    if path is None or not path.is_file():
        return
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        if report.get("run_id") != run_id:
            logger.warning(
                "The report at %s is not from the run that made the plan; it was left as it is.", path
            )
            return
        report["counts"]["removed"] = sum(removed.values())
        for list_id, count in planned.items():
            entry = report["lists"].setdefault(list_id, {})
            entry["removed"] = removed[list_id]
            entry.setdefault("mirror", {})["outcome"] = (
                "mirrored"
                if removed[list_id] == count
                else f"partly mirrored: {removed[list_id]:,} of {count:,} removed; "
                "running target-klaviyo-mirror again finishes it"
            )
        report["mirror_plan"] = "applied" if complete else "partly applied"
        touched = {*report.get("lists_touched", []), *(list_id for list_id, n in removed.items() if n)}
        report["lists_touched"] = sorted(touched)
        write_whole(path, json.dumps(report, indent=2) + "\n", "report_path")
    except (RunError, OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
        logger.warning("The run's report could not be updated with the removals (%s).", type(error).__name__)
