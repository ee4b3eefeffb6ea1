"""The mirror plan on disk: its folder, the files beside it, and who may use them.

A ``sync_mode: mirror`` run writes the members it chose to remove to a plan;
``target-klaviyo-mirror`` removes them once the whole pipeline has succeeded
(:mod:`target_klaviyo.mirror.apply`). Everything that lets a plan remove the wrong
people is checked here:

- **One run of one loader.** The default path is distinct per loader config (its
  ``api_url`` and the lists its streams go to, :func:`target_klaviyo.settings.settings.default_plan_path`).
  Every mirror run, before it reads any input, deletes the plan it would replace and
  records itself as the latest run in the marker beside it (``<plan>.run``); a plan is
  applied only if it belongs to that latest run, to the ``api_url`` and the lists of
  the config it is applied with, and, when it was made under ``meltano run``, to that
  same ``meltano run`` (``MELTANO_PARENT_CONTEXT_UUID``, which Meltano 4.4.1 gives every
  block of one invocation). A plan copied aside and put back after a newer run is refused,
  and so is a plan and its marker put back together (after a newer run, or after the plan
  was applied): a file put back has a status-change time (``st_ctime``, which no user can
  set) later than the time its run recorded in it.
- **Only ours, only private.** The plan and the marker begin with their format name,
  so a path that holds another file is refused rather than deleted; the folder is
  created owner-only (0700, whatever the umask), and an existing folder others may
  write to, or a plan that is not the user's own 0600 file, is refused.
- **One at a time.** A mirror run and ``target-klaviyo-mirror`` hold ``<plan>.lock``
  (``flock``) for their whole life: a second one refuses in one sentence.
- **Exact under interruption.** Each confirmed removal request is appended to
  ``<plan>.progress``; applying again skips what is done, so counts are exact and a
  partial apply is reported as partial.
- **Read as strictly as a setting.** What the files hold, and how strictly it is
  read, is :mod:`target_klaviyo.mirror.plan_format`'s.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from target_klaviyo.errors import RunError
from target_klaviyo.files import make_private_folders, try_lock

# run/run.py and target.py import ListPlan from here, and the planner ID.
from target_klaviyo.mirror.plan_format import (
    CLOCK_SKEW,
    PLAN_FORMAT,
    PROGRESS_START,
    RUN_FORMAT,
    ListPlan,
    Plan,
    begins_as,
    load_document,
    marker_run,
    parse_plan,
    plan_text,
    progress_line,
    read_progress,
    run_text,
)
from target_klaviyo.run.report import write_whole
from target_klaviyo.settings.settings import PLAN_LOCK, PLAN_MARKER, PLAN_PROGRESS


class PlanFiles:
    """The plan at ``path`` and its marker, lock and progress files, in one private folder."""

    def __init__(self, path: Path, setting: str = "mirror_plan_path") -> None:
        self.path = path
        self.setting = setting
        self.marker = path.with_name(path.name + PLAN_MARKER)
        self.lock_path = path.with_name(path.name + PLAN_LOCK)
        self.progress_path = path.with_name(path.name + PLAN_PROGRESS)
        self._lock: IO[bytes] | None = None

    # The folder and the files in it

    def prepare(self) -> None:
        """Create or check the owner-only folder, and refuse files target-klaviyo did not write."""
        folder = self.path.parent
        if folder.exists():
            self._check_private(folder, folder=True)
        else:
            try:
                make_private_folders(folder)
            except OSError as error:
                raise RunError(
                    f"{self.setting}: the folder {str(folder)!r} cannot be created ({error.strerror})."
                ) from None
        for path, format_name in (
            (self.path, PLAN_FORMAT),
            (self.marker, RUN_FORMAT),
            (self.progress_path, PROGRESS_START),
        ):
            if path.is_symlink() or (path.exists() and not path.is_file()):
                raise RunError(
                    f"{self.setting} {str(path)!r} is a link or a special file; name a regular file."
                )
            if path.exists() and not _begins_with(path, format_name):
                raise RunError(
                    f"{self.setting} {str(path)!r} holds a file target-klaviyo did not write; it was left "
                    "as it is: name another file."
                )

    def _check_private(self, path: Path, *, folder: bool) -> None:
        """The user's own, and nobody else may write it (nor, for a file, read it)."""
        info = path.lstat()
        what = "folder" if folder else "file"
        if not (stat.S_ISDIR(info.st_mode) if folder else stat.S_ISREG(info.st_mode)):
            raise RunError(
                f"{str(path)!r} of {self.setting} is not a regular {what} (a link or a special file); "
                "nothing was removed."
            )
        if info.st_uid != os.geteuid():
            raise RunError(
                f"The {what} {str(path)!r} of {self.setting} belongs to another user; nothing was removed."
            )
        mask = (stat.S_IWGRP | stat.S_IWOTH) if folder else 0o077
        if info.st_mode & mask:
            raise RunError(
                f"The {what} {str(path)!r} of {self.setting} can be "
                f"{'written' if folder else 'read or written'} by other users (mode "
                f"{stat.S_IMODE(info.st_mode):04o}); make it private (chmod {'700' if folder else '600'}) "
                "or name a private one."
            )

    # Exclusive use

    def lock(self, who: str) -> None:
        """Hold the plan's lock until :meth:`unlock` (or the process ends); refuse if another holds it."""
        if not self.path.parent.is_dir():
            raise self._no_plan()
        try:
            handle = try_lock(self.lock_path)
        except OSError as error:
            raise RunError(
                f"{self.setting}: {str(self.lock_path)!r} cannot be opened ({error.strerror})."
            ) from None
        if handle is None:
            raise RunError(
                f"Another target-klaviyo mirror run or target-klaviyo-mirror is using {str(self.path)!r}; "
                f"{who} did nothing: run it again once the other has finished."
            )
        self._lock = handle

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # The run's side

    def start_run(self) -> str:
        """A new mirror run: make it the latest run, and delete the plan it replaces; its id."""
        return self._supersede()

    def _supersede(self) -> str:
        """Mark a new latest run first (so an apply in progress stops at its next try), then delete
        the plan and its progress; the new run's id."""
        run_id = uuid.uuid4().hex
        write_whole(self.marker, run_text(run_id), self.setting)
        for path in (self.path, self.progress_path):
            path.unlink(missing_ok=True)
        return run_id

    def void(self) -> None:
        """A run of this loader that does not mirror (or cannot start): an earlier plan no longer holds.

        The run becomes the latest in the marker, so a mirror run still going on, or an apply
        in progress, can no longer use its plan, and the plan is deleted. Only files
        target-klaviyo wrote are touched; a run that does not mirror never fails over them.
        """
        ours = [
            path.is_file() and not path.is_symlink() and _begins_with(path, format_name)
            for path, format_name in ((self.path, PLAN_FORMAT), (self.marker, RUN_FORMAT))
        ]
        if not any(ours) or (self.marker.exists() and not ours[1]):
            return
        with contextlib.suppress(OSError, RunError):
            self._supersede()

    def still_latest(self, run_id: str) -> None:
        """Before each removal: stop if a newer run of this loader has started since the plan was read."""
        try:
            latest = marker_run(self.marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            latest = None
        if latest != run_id:
            raise RunError(
                f"A newer run of this loader started while {str(self.path)!r} was being applied; the rest "
                "of the plan was not removed, since that run may have seen those people again."
            )

    def write(
        self, run_id: str, routing: str, api_url: str, plans: list[ListPlan], pipeline: str | None = None
    ) -> None:
        """Write the plan whole (a new private file renamed over the old).

        ``routing`` is the loader config's digest (:attr:`target_klaviyo.settings.settings.Settings.routing`).
        """
        write_whole(self.path, plan_text(run_id, routing, api_url, plans, pipeline), self.setting)

    # The applying side

    def read(
        self,
        routing: str,
        api_url: str,
        lists: Sequence[str],
        pipeline: str | None = None,
        now: float | None = None,
    ) -> Plan:
        """The plan, if it is this config's latest run's, private, fresh and well formed.

        ``pipeline`` is the id of the pipeline applying it (under Meltano, the ``meltano run``
        both steps are blocks of); a plan made in a pipeline is applied only in that one.
        """
        if not self.path.exists():
            raise self._no_plan()
        self._check_private(self.path.parent, folder=True)
        self._check_private(self.path, folder=False)
        where = f"The mirror plan at {str(self.path)!r}"
        document = load_document(self.path, where)
        marker = (
            load_document(self.marker, f"The mirror run marker at {str(self.marker)!r}")
            if self.marker.exists()
            else {}
        )
        now = time.time() if now is None else now
        plan = parse_plan(document, where, now)
        if marker.get("format") != RUN_FORMAT or marker.get("run_id") != plan.run_id:
            raise RunError(
                f"{where} is not from the latest mirror run of this config (a newer run has started since, "
                "or the plan was copied here); nothing was removed: run the pipeline again."
            )
        for path in (self.path, self.marker):
            if path.stat().st_ctime > plan.created_at + CLOCK_SKEW:
                raise RunError(
                    f"{where} or its marker was put there after its run wrote it (restored, copied or "
                    "edited); nothing was removed: run the pipeline again."
                )
        if plan.pipeline != pipeline:
            raise RunError(
                f"{where} was made in another meltano run than this one (or outside meltano); nothing was "
                "removed: target-klaviyo-mirror applies a plan as the block after its target in the same "
                "meltano run, or outside meltano after a run outside it."
            )
        if plan.routing != routing:
            raise RunError(
                f"{where} was made by a loader whose api_url, list_id or stream_lists differ from this "
                "config's; nothing was removed: give target-klaviyo-mirror the config of the loader that "
                "made it."
            )
        if plan.api_url != api_url:
            raise RunError(
                f"{where} was made for another api_url than this config's ({api_url}); nothing was removed."
            )
        foreign = sorted(set(plan.lists) - set(lists))
        if foreign:
            raise RunError(
                f"{where} removes members from list {foreign[0]}, which is not among this config's lists "
                "(list_id, stream_lists); nothing was removed."
            )
        return plan

    def _no_plan(self) -> RunError:
        return RunError(
            f"There is no mirror plan at {str(self.path)!r}: run target-klaviyo with sync_mode mirror "
            "and the same api_url, list_id and stream_lists first (a plan is used once)."
        )

    def done(self, run_id: str) -> dict[str, dict[int, int]]:
        """Per list, the removal requests already confirmed for this run: request index -> members."""
        if not self.progress_path.exists():
            return {}
        with self.progress_path.open(encoding="utf-8") as lines:
            return read_progress(lines, run_id)

    def confirm(self, run_id: str, list_id: str, request: int, removed: int) -> None:
        """Klaviyo confirmed a removal request: record it durably before going on."""
        descriptor = os.open(self.progress_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, progress_line(run_id, list_id, request, removed).encode())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def used(self) -> None:
        """The plan is applied whole: it is never applied again."""
        for path in (self.path, self.progress_path):
            path.unlink(missing_ok=True)


def _begins_with(path: Path, format_name: str) -> bool:
    """Whether the file begins as target-klaviyo writes its plans, markers and progress."""
    try:
        with path.open("rb") as file:
            head = file.read(64)
    except OSError:
        return False
    return begins_as(head, format_name)


def meltano_run() -> str | None:
    """The ``meltano run`` this process is a block of, if any: the id a plan is bound to."""
    return os.environ.get("MELTANO_PARENT_CONTEXT_UUID") or None
