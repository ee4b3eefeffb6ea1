"""Mirror mode: each list ends up holding exactly this run's profiles for it, in two steps.

Removing people is the one thing target-klaviyo does that loses something in
Klaviyo (list membership; the profiles themselves stay). A target cannot tell a tap
that finished from one that failed: both simply end its input (a Singer SDK tap sends
nothing at the end of a full-table stream, and under ``meltano run`` the tap's exit
code is known only after the target has finished). So the run only *plans*: at the
end of a complete run it reads each list, chooses the members to remove and writes
them to ``mirror_plan_path``; ``target-klaviyo-mirror`` (:mod:`target_klaviyo.apply_mirror`)
removes them, and the pipeline runs it only after the tap and the target have both
succeeded (the next task of a Meltano job, or ``tap | target-klaviyo && target-klaviyo-mirror``).

The run plans for a list only when every sign says it saw the whole segment:

- the run read all its input and ended without failure, interruption, or the
  profile limit (the run checks that before it asks for a plan);
- every stream that sent the list records declared itself a full extract with
  ``ACTIVATE_VERSION``: Singer's signal that a full-table sync replaces what came
  before (Singer SDK taps send it for full-table streams with
  ``emit_activate_version_messages``). An incremental extract, which holds only
  changed rows, never sends it, and would look as if most people had left;
- the list received profiles in this run;
- the removals are at most ``mirror_max_removal_fraction`` of the members the list
  had before the run (its ``profile_count`` when the run started).

A member whose email appeared in this run's input for the list is kept, even if
its record was rejected this time. Members are read with
``GET /api/lists/{id}/profiles`` (emails only, 100 a page) and removed with
``DELETE /api/lists/{id}/relationships/profiles`` (1,000 a request), each paced
within its endpoint's steady rate limit.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from target_klaviyo.client import KlaviyoApiError, KlaviyoClient, KlaviyoError, Pace
from target_klaviyo.emails import normalize_email
from target_klaviyo.errors import RunError
from target_klaviyo.mapping import get_path
from target_klaviyo.report import write_whole
from target_klaviyo.seen import HashTable, hash64

logger = logging.getLogger("target_klaviyo.mirror")

MEMBERS_PAGE_SIZE = 100
MAX_IDS_PER_REMOVAL = 1000
READ_INTERVAL = 60 / 700  # GET list profiles: steady 750 a minute
REMOVE_INTERVAL = 60 / 140  # DELETE list relationships: steady 150 a minute


class MirrorRefused(RunError):
    """A list was left as it was because mirroring it could be wrong; the run fails."""


@dataclass
class ListPlan:
    """What mirroring one list means: its members before the run and now, and those to remove."""

    list_id: str
    members_before: int  # when the run started (the list's profile_count)
    members: int = 0  # when the run read it, this run's profiles among them
    remove: list[str] = field(default_factory=list)

    @property
    def share(self) -> float:
        """The share of the list as it was before the run that would be removed."""
        if not self.remove:
            return 0.0
        return len(self.remove) / self.members_before if self.members_before else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {"members_before": self.members_before, "members": self.members, "remove": self.remove}


class Mirror:
    """What the run saw of each list's segment, and the reading and removing of members."""

    def __init__(self, email_path: tuple[str, ...], max_removal_fraction: float) -> None:
        self.email_path = email_path
        self.max_removal_fraction = max_removal_fraction
        self._seen = HashTable(with_values=False)  # hash of "list\nemail" for every email read
        self._records_of: Counter[str] = Counter()  # per stream
        self._profiles_for: Counter[str] = Counter()  # distinct profiles sent to each list
        self._streams_for: dict[str, set[str]] = {}
        self._full_extracts: set[str] = set()
        self.members_before: dict[str, int] = {}  # each list's profile_count when the run started

    # While reading

    def routed(self, stream: str, list_id: str) -> None:
        """A stream of this run goes to ``list_id`` (its SCHEMA arrived): the list is this run's to mirror."""
        self._streams_for.setdefault(list_id, set()).add(stream)

    @property
    def lists(self) -> list[str]:
        """The lists this run's streams go to, in the order they were first routed."""
        return list(self._streams_for)

    def saw(self, stream: str, list_id: str, record: Any) -> None:
        """A record for ``list_id``: its email, whatever becomes of the record, keeps its member."""
        self._records_of[stream] += 1
        value = get_path(record, self.email_path) if isinstance(record, Mapping) else None
        if isinstance(value, str) and value.strip():
            self.saw_email(list_id, value)
            if "@" in value:
                # Klaviyo holds the normalised address (an IDN domain in ASCII): keep that too.
                normalized = normalize_email(value.strip())
                if isinstance(normalized, str):
                    self.saw_email(list_id, normalized)

    def saw_email(self, list_id: str, email: str) -> None:
        self._seen.setdefault(hash64(f"{list_id}\n{email.strip().lower()}"))

    def sent(self, list_id: str) -> None:
        """A profile new to ``list_id`` in this run was taken for it (not a repeat of a person)."""
        self._profiles_for[list_id] += 1

    def full_extract(self, stream: str) -> None:
        """The tap sent ACTIVATE_VERSION for ``stream``: its records are the whole of it."""
        self._full_extracts.add(stream)

    def kept(self, list_id: str, email: Any) -> bool:
        return isinstance(email, str) and hash64(f"{list_id}\n{email.strip().lower()}") in self._seen

    # At the end

    def why_not(self, list_id: str) -> tuple[str, bool] | None:
        """Why ``list_id`` must not be mirrored, and whether that fails the run; None if it may be."""
        fed = sorted(stream for stream in self._streams_for.get(list_id, ()) if self._records_of[stream])
        if not fed:
            return "no records for it were read in this run, and mirror never empties a list", False
        if not self._profiles_for[list_id]:
            return "none of this run's records for it could be sent, and mirror never empties a list", True
        partial = [stream for stream in fed if stream not in self._full_extracts]
        if partial:
            return (
                f"stream {partial[0]!r} did not arrive as a full extract (the tap sent no ACTIVATE_VERSION "
                "for it), so people missing from it may not have left the segment; set "
                "emit_activate_version_messages on a tap whose stream is full-table, or use sync_mode upsert",
                True,
            )
        return None

    def plan(self, client: KlaviyoClient, list_id: str) -> ListPlan:
        """Read the list and choose the members to remove (every member this run did not see)."""
        plan = ListPlan(list_id, 0)
        for member in self._members(client, list_id):
            plan.members += 1
            email = (member.get("attributes") or {}).get("email")
            if not self.kept(list_id, email) and isinstance(member.get("id"), str):
                plan.remove.append(member["id"])
        # Every member to remove was there before the run (this run's profiles are all kept).
        plan.members_before = max(self.members_before.get(list_id, 0), len(plan.remove))
        return plan

    def _members(self, client: KlaviyoClient, list_id: str) -> Iterator[dict[str, Any]]:
        path = f"/api/lists/{list_id}/profiles"
        params: dict[str, Any] = {"fields[profile]": "email", "page[size]": MEMBERS_PAGE_SIZE}
        pace = Pace(READ_INTERVAL)
        seen_cursors: set[str] = set()
        while True:
            pace.wait()
            try:
                page = client.get(path, params)
            except KlaviyoApiError as error:
                raise _read_error(error, list_id) from None
            data = page.get("data")
            if not isinstance(data, list) or not all(isinstance(member, dict) for member in data):
                raise KlaviyoError(
                    f"Klaviyo answered GET {path} without a list of profiles; nothing was removed."
                )
            yield from data
            next_link = (page.get("links") or {}).get("next")
            cursor = (
                parse_qs(urlsplit(next_link).query).get("page[cursor]")
                if isinstance(next_link, str)
                else None
            )
            if not cursor:
                return
            if cursor[0] in seen_cursors:
                raise KlaviyoError(
                    f"Klaviyo answered GET {path} with a page it had already given; nothing was removed."
                )
            seen_cursors.add(cursor[0])
            params = {**params, "page[cursor]": cursor[0]}

    def refusal(self, plan: ListPlan) -> str | None:
        """The sentence that refuses the plan, if it removes more than the setting allows."""
        if plan.share <= self.max_removal_fraction:
            return None
        return (
            f"Mirroring list {plan.list_id} would remove {len(plan.remove):,} of the "
            f"{plan.members_before:,} members it had before this run "
            f"({plan.share:.0%}), more than mirror_max_removal_fraction ({self.max_removal_fraction:.0%}): "
            "nothing was removed from it; check that the input holds the whole segment, or raise the setting."
        )


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _read_error(error: KlaviyoApiError, list_id: str, *, removing: bool = False) -> KlaviyoError:
    if error.status in {401, 403}:
        scopes = "lists:write" if removing else "lists:read and profiles:read"
        doing = "remove members from" if removing else "read the members of"
        return KlaviyoError(
            f"Klaviyo refused to {doing} list {list_id} ({error.status}): sync_mode mirror needs the "
            f"{scopes} scopes."
        )
    return error


def remove(client: KlaviyoClient, plan: ListPlan) -> Iterator[int]:
    """Remove the plan's members from its list, 1,000 a request; yields how many each removed."""
    path = f"/api/lists/{plan.list_id}/relationships/profiles"
    pace = Pace(REMOVE_INTERVAL)
    for start in range(0, len(plan.remove), MAX_IDS_PER_REMOVAL):
        ids = plan.remove[start : start + MAX_IDS_PER_REMOVAL]
        body = {"data": [{"type": "profile", "id": profile_id} for profile_id in ids]}
        pace.wait()
        try:
            client.request("DELETE", path, body=_encode(body))
        except KlaviyoApiError as error:
            raise _read_error(error, plan.list_id, removing=True) from None
        yield len(ids)


def write_plan(
    path: Path, api_url: str, api_revision: str, report_path: Path | None, plans: list[ListPlan]
) -> None:
    """Write the removals for target-klaviyo-mirror: whole (a new private file renamed over the old).

    It holds what applying them needs but the API key: where, which lists, whom, and the
    run's report to add the removals to.
    """
    document = {
        "created_at": time.time(),
        "api_url": api_url,
        "api_revision": api_revision,
        "report_path": str(report_path.resolve()) if report_path else None,
        "lists": {plan.list_id: plan.as_dict() for plan in plans},
    }
    write_whole(path, json.dumps(document), "mirror_plan_path")
