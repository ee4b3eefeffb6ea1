"""The mirror plan on disk: its format, its folder and the files beside it, in one place.

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
  block of one invocation). A plan copied aside and put back after a newer run is refused.
- **Only ours, only private.** The plan and the marker begin with their format name,
  so a path that holds another file is refused rather than deleted; the folder is
  created owner-only (0700, whatever the umask), and an existing folder others may
  write to, or a plan that is not the user's own 0600 file, is refused.
- **One at a time.** A mirror run and ``target-klaviyo-mirror`` hold ``<plan>.lock``
  (``flock``) for their whole life: a second one refuses in one sentence.
- **Exact under interruption.** Each confirmed removal request is appended to
  ``<plan>.progress``; applying again skips what is done, so counts are exact and a
  partial apply is reported as partial.
- **Read as strictly as a setting.** Finite numbers, ids of the shape ``list_id``
  has, a creation time in the past and at most :data:`MAX_PLAN_AGE` old; anything
  else is one sentence.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import stat
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from target_klaviyo.errors import RunError
from target_klaviyo.files import make_private_folders
from target_klaviyo.run.report import write_whole

PLAN_FORMAT = "target-klaviyo mirror plan"
PROGRESS_START = '{"run_id": "'  # how each line of the progress file begins
RUN_FORMAT = "target-klaviyo mirror run"
FORMAT_VERSION = 1
# The plan is applied by the pipeline's next step, seconds after the run; an older one is a stale
# picture of the segment, and doubt about removing people resolves toward removing nobody.
MAX_PLAN_AGE = 3600.0
CLOCK_SKEW = 60.0  # a plan "from the future" beyond this was not written by this machine's run
ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # list ids as settings.LIST_ID checks them; Klaviyo's profile ids too
MAX_PLAN_BYTES = 256 * 1024 * 1024  # 5 million ids and more: far beyond any list mirror may touch


@dataclass
class ListPlan:
    """What mirroring one list means: its members before the run and now, and those to remove."""

    list_id: str
    members_before: int  # when the run started (the list's profile_count)
    members: int = 0  # when the run read it, this run's profiles among them
    without_email: int = 0  # members kept because no record can ever name them (phone-only)
    remove: list[str] = field(default_factory=list)

    @property
    def share(self) -> float:
        """The share of the list as it was before the run that would be removed."""
        if not self.remove:
            return 0.0
        return len(self.remove) / self.members_before if self.members_before else 1.0


@dataclass
class Plan:
    run_id: str
    routing: str
    created_at: float
    api_url: str
    lists: dict[str, ListPlan]
    pipeline: str | None = None


class PlanFiles:
    """The plan at ``path`` and its marker, lock and progress files, in one private folder."""

    def __init__(self, path: Path, setting: str = "mirror_plan_path") -> None:
        self.path = path
        self.setting = setting
        self.marker = path.with_name(path.name + ".run")
        self.lock_path = path.with_name(path.name + ".lock")
        self.progress_path = path.with_name(path.name + ".progress")
        self._lock: TextIO | None = None

    @property
    def siblings(self) -> list[Path]:
        """Every file this plan owns, for the check that no other output names one of them."""
        return [self.path, self.marker, self.lock_path, self.progress_path]

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
            handle = os.fdopen(os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600), "r+")
        except OSError as error:
            raise RunError(
                f"{self.setting}: {str(self.lock_path)!r} cannot be opened ({error.strerror})."
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RunError(
                f"Another target-klaviyo mirror run or target-klaviyo-mirror is using {str(self.path)!r}; "
                f"{who} did nothing: run it again once the other has finished."
            ) from None
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
        document = {
            "format": RUN_FORMAT,
            "version": FORMAT_VERSION,
            "run_id": run_id,
            "started_at": time.time(),
        }
        write_whole(self.marker, json.dumps(document), self.setting)
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
            marker = json.loads(self.marker.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            marker = None
        if not isinstance(marker, dict) or marker.get("run_id") != run_id:
            raise RunError(
                f"A newer run of this loader started while {str(self.path)!r} was being applied; the rest "
                "of the plan was not removed, since that run may have seen those people again."
            )

    def write(
        self, run_id: str, routing: str, api_url: str, plans: list[ListPlan], pipeline: str | None = None
    ) -> None:
        """Write the plan whole (a new private file renamed over the old); no API key, no emails.

        ``routing`` is the loader config's digest (:attr:`target_klaviyo.settings.settings.Settings.routing`).
        """
        document = {
            "format": PLAN_FORMAT,
            "version": FORMAT_VERSION,
            "run_id": run_id,
            "routing": routing,
            "pipeline": pipeline,
            "created_at": time.time(),
            "api_url": api_url,
            "lists": {
                plan.list_id: {
                    "members_before": plan.members_before,
                    "members": plan.members,
                    "without_email": plan.without_email,
                    "remove": plan.remove,
                }
                for plan in plans
            },
        }
        write_whole(self.path, json.dumps(document), self.setting)

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
        document = _load(self.path, where)
        marker = (
            _load(self.marker, f"The mirror run marker at {str(self.marker)!r}")
            if self.marker.exists()
            else {}
        )
        now = time.time() if now is None else now
        plan = _parse(document, where, now)
        if marker.get("format") != RUN_FORMAT or marker.get("run_id") != plan.run_id:
            raise RunError(
                f"{where} is not from the latest mirror run of this config (a newer run has started since, "
                "or the plan was copied here); nothing was removed: run the pipeline again."
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
        done: dict[str, dict[int, int]] = {}
        if not self.progress_path.exists():
            return done
        with self.progress_path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    entry = json.loads(line, parse_constant=_no_constant)
                    request, removed = _count(entry["request"]), _count(entry["removed"])
                    if entry["run_id"] == run_id:
                        done.setdefault(str(entry["list"]), {})[request] = removed
                except (ValueError, KeyError, TypeError, RecursionError):
                    continue  # a line cut short by an interruption, or not ours: its request is sent again
        return done

    def confirm(self, run_id: str, list_id: str, request: int, removed: int) -> None:
        """Klaviyo confirmed a removal request: record it durably before going on."""
        descriptor = os.open(self.progress_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            line = {"run_id": run_id, "list": list_id, "request": request, "removed": removed}
            os.write(descriptor, (json.dumps(line) + "\n").encode())
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
    start = PROGRESS_START if format_name == PROGRESS_START else json.dumps({"format": format_name})[:-1]
    return head.startswith(start.encode()) or (format_name == PROGRESS_START and not head)


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("a number too large for a plan")
    return number


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a plan holds")


def _load(path: Path, where: str) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_PLAN_BYTES:
            raise RunError(f"{where} is larger than any plan target-klaviyo writes; nothing was removed.")
        document = json.loads(
            path.read_text(encoding="utf-8"), parse_float=_finite, parse_constant=_no_constant
        )
    except RunError:
        raise
    except (OSError, ValueError, RecursionError) as error:
        raise RunError(f"{where} cannot be read ({type(error).__name__}); nothing was removed.") from None
    if not isinstance(document, dict):
        raise RunError(f"{where} is not one target-klaviyo wrote; nothing was removed.")
    return document


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
        raise ValueError("not a count")
    return value


def _id(value: Any) -> str:
    if not isinstance(value, str) or not ID.fullmatch(value):
        raise ValueError("not an id")
    return value


def _parse(document: dict[str, Any], where: str, now: float) -> Plan:
    """Every value checked as strictly as a setting; any fault is one sentence."""
    try:
        if document.get("format") != PLAN_FORMAT or document.get("version") != FORMAT_VERSION:
            raise ValueError("not a plan of this version")
        run_id, created_at, api_url = document["run_id"], document["created_at"], document["api_url"]
        routing = document["routing"]
        if not all(isinstance(value, str) for value in (run_id, routing, api_url)) or not run_id.isalnum():
            raise ValueError("no run")
        pipeline = document.get("pipeline")
        if pipeline is not None and not isinstance(pipeline, str):
            raise ValueError("no pipeline")
        if not isinstance(created_at, (int, float)) or isinstance(created_at, bool):
            raise ValueError("no time")
        lists: dict[str, ListPlan] = {}
        entries = document["lists"]
        if not isinstance(entries, dict):
            raise ValueError("no lists")
        for list_id, entry in entries.items():
            if not isinstance(entry, dict) or not isinstance(entry["remove"], list):
                raise ValueError("no list")
            plan = ListPlan(
                _id(list_id),
                _count(entry["members_before"]),
                _count(entry["members"]),
                _count(entry["without_email"]),
                [_id(profile_id) for profile_id in entry["remove"]],
            )
            if len(plan.remove) > plan.members_before or len(set(plan.remove)) != len(plan.remove):
                raise ValueError("more to remove than members")
            lists[plan.list_id] = plan
    except (KeyError, TypeError, ValueError):
        raise RunError(f"{where} is not one target-klaviyo wrote; nothing was removed.") from None
    if created_at > now + CLOCK_SKEW:
        raise RunError(
            f"{where} says it was made in the future; nothing was removed: run the pipeline again."
        )
    age = now - created_at
    if age > MAX_PLAN_AGE:
        raise RunError(
            f"{where} is {age / 60:,.0f} minutes old, more than the {MAX_PLAN_AGE / 60:.0f} a plan is kept: "
            "nothing was removed; run the pipeline again rather than remove members by an old picture of "
            "the segment."
        )
    return Plan(run_id, routing, float(created_at), api_url, lists, pipeline)


def meltano_run() -> str | None:
    """The ``meltano run`` this process is a block of, if any: the id a plan is bound to."""
    return os.environ.get("MELTANO_PARENT_CONTEXT_UUID") or None
