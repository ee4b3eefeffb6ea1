"""The mirror plan's format, and its marker's and progress file's: each written and read here only.

A plan is one JSON object (:func:`plan_text`) naming its format and version, the run
that made it, the loader config's digest, the ``meltano run`` it belongs to, when it
was made, its ``api_url`` and, per list, the members before and now and the profile
ids to remove. It is read back as strictly as a setting (:func:`parse_plan`): finite
numbers, ids of the shape ``list_id`` has, a creation time in the past and at most
:data:`MAX_PLAN_AGE` old; anything else is one sentence. The marker (:func:`run_text`)
names the latest run; each progress line (:func:`progress_line`) one confirmed removal
request. Where the files live, and who may use them, is :mod:`target_klaviyo.mirror.plan_file`'s.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from target_klaviyo.errors import RunError

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


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("a number too large for a plan")
    return number


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a plan holds")


def load_document(path: Path, where: str) -> dict[str, Any]:
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


def parse_plan(document: dict[str, Any], where: str, now: float) -> Plan:
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
        # A Unix time this target could have written: an integer of any size would overflow below.
        if (
            not isinstance(created_at, (int, float))
            or isinstance(created_at, bool)
            or not 0 < created_at < 2**40
        ):
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


def run_text(run_id: str) -> str:
    """The marker that makes ``run_id`` the latest mirror run of its loader."""
    return json.dumps(
        {"format": RUN_FORMAT, "version": FORMAT_VERSION, "run_id": run_id, "started_at": time.time()}
    )


def plan_text(run_id: str, routing: str, api_url: str, plans: list[ListPlan], pipeline: str | None) -> str:
    """The plan as written: no API key, no emails."""
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
    return json.dumps(document)


def progress_line(run_id: str, list_id: str, request: int, removed: int) -> str:
    """One confirmed removal request, as a line of the progress file."""
    return json.dumps({"run_id": run_id, "list": list_id, "request": request, "removed": removed}) + "\n"


def read_progress(lines: Iterable[str], run_id: str) -> dict[str, dict[int, int]]:
    """Per list, the removal requests confirmed for this run: request index -> members."""
    done: dict[str, dict[int, int]] = {}
    for line in lines:
        try:
            entry = json.loads(line, parse_constant=_no_constant)
            request, removed = _count(entry["request"]), _count(entry["removed"])
            if entry["run_id"] == run_id:
                done.setdefault(str(entry["list"]), {})[request] = removed
        except (ValueError, KeyError, TypeError, RecursionError):
            continue  # a line cut short by an interruption, or not ours: its request is sent again
    return done


def marker_run(text: str) -> str | None:
    """The run a marker names, or None if it is not a marker that can be read."""
    try:
        marker = json.loads(text)
    except (ValueError, RecursionError):
        return None
    run_id = marker.get("run_id") if isinstance(marker, dict) else None
    return run_id if isinstance(run_id, str) else None


def begins_as(head: bytes, format_name: str) -> bool:
    """Whether a file's first bytes are those of a plan, a marker or a progress file target-klaviyo writes."""
    start = PROGRESS_START if format_name == PROGRESS_START else json.dumps({"format": format_name})[:-1]
    return head.startswith(start.encode()) or (format_name == PROGRESS_START and not head)
