"""Mirror mode: each list ends up holding exactly this run's profiles for it, in two steps.

Removing people is the one thing target-klaviyo does that loses something in
Klaviyo (list membership; the profiles themselves stay). A target cannot tell a tap
that finished from one that failed: both simply end its input (a Singer SDK tap sends
nothing at the end of a full-table stream, and under ``meltano run`` the tap's exit
code is known only after the target has finished). So the run only *plans*: at the
end of a complete run it reads each list, chooses the members to remove and writes
them to the plan (:mod:`target_klaviyo.mirror.plan_file`); ``target-klaviyo-mirror``
(:mod:`target_klaviyo.mirror.apply`) removes them, and the pipeline runs it only
after the tap and the target have both succeeded (the next block of a Meltano job,
or ``tap | target-klaviyo && target-klaviyo-mirror`` under ``set -o pipefail``).

A list is mirrored only when this run saw its whole segment; whenever there is
doubt it is left as it is, with one sentence saying why (:meth:`Mirror.why_not`):

- the run read all its input and ended without failure, interruption, or the
  profile limit (the run checks that before it asks for a plan);
- every stream routed to the list this run, *and every stream ``stream_lists``
  names for it*, arrived as a full extract: ``ACTIVATE_VERSION`` before its first
  record (Singer's signal that a full-table sync replaces what came before; one that
  only arrives after the rows is how singer-io taps end a *resumed* sync, which sent
  only the remaining rows), and at least one record;
- Klaviyo accepted at least one of this run's profiles for the list (import job
  complete, not among its import errors): a run Klaviyo refused whole never empties
  a list;
- the removals are at most ``mirror_max_removal_fraction`` of the members the list
  had before the run (its ``profile_count`` when the run started).

A member whose email appeared in this run's input for the list is kept, even if its
record was rejected this time; a member without an email (a phone-only profile) is
kept and counted, since no record of this pipeline can ever name it. Members are
read with ``GET /api/lists/{id}/profiles`` (emails only, 100 a page) and removed
with ``DELETE /api/lists/{id}/relationships/profiles`` (1,000 a request), each paced
within its endpoint's steady rate limit.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from target_klaviyo.errors import KlaviyoError
from target_klaviyo.klaviyo.endpoints import LIST_PROFILES
from target_klaviyo.klaviyo.http import KlaviyoClient
from target_klaviyo.klaviyo.paging import Paging, pages
from target_klaviyo.klaviyo.refused import scopes_needed
from target_klaviyo.ledger.digest import person_of_address
from target_klaviyo.ledger.known import memory_key
from target_klaviyo.mirror.bookmarks import STATE_HEADERS, incremental, names, resuming
from target_klaviyo.mirror.plan_format import ID as PROFILE_ID
from target_klaviyo.mirror.plan_format import ListPlan
from target_klaviyo.records.emails import address_forms, texts_with_at
from target_klaviyo.records.values import get_path
from target_klaviyo.run.seen import HashTable, hash64

logger = logging.getLogger(
    "target_klaviyo.mirror"
)  # the name its lines had before the modules moved into rooms: users' log filters keep working


class Mirror:
    """What the run saw of each list's segment, and the reading of members to plan removals."""

    def __init__(
        self,
        email_path: tuple[str, ...],
        max_removal_fraction: float,
        stream_lists: Mapping[str, str],
        *,
        synced: bool = False,
    ) -> None:
        self.email_path = email_path
        self.max_removal_fraction = max_removal_fraction
        self._seen = HashTable(with_values=False)  # hash of "list\nemail" for every email read
        # mirror_scope synced: per list, the ledger's name (memory_key of person_of) of everyone in the
        # segment, in every form their addresses were read in (mirror.synced compares the ledger's people).
        self._persons: dict[str, HashTable] | None = {} if synced else None
        self._streams_for: dict[str, set[str]] = {}  # the streams routed to each list this run
        self._named_for: dict[str, set[str]] = {}  # the streams stream_lists names for each list
        for stream, list_id in stream_lists.items():
            self._named_for.setdefault(list_id, set()).add(stream)
        # Full extracts are the tap's streams, which a stream map may rename or merge: what is known
        # of each tap stream, and which tap streams each stream (after the maps) is made of.
        self._sources_of: dict[str, set[str]] = {}
        self._records_from: Counter[str] = Counter()
        self._full_extracts: set[str] = set()  # ACTIVATE_VERSION before the tap stream's first record
        self._late_versions: set[str] = set()  # ACTIVATE_VERSION only after some of its records
        self._incremental: set[str] = set()  # tap streams whose STATE bookmark is incremental
        self._resumed: set[str] = set()  # tap streams whose full-table sync this run resumes
        # Bookmarks that cast doubt, kept to match against streams whose SCHEMA comes after them.
        self._doubtful_bookmarks: set[tuple[str, bool, bool]] = set()
        self._unreadable_state = False  # a STATE whose bookmarks are not an object: doubt for every list
        self.members_before: dict[str, int] = {}  # each list's profile_count when the run started
        # Per planned list, the people (person_of their keys) its plan removes: the ledger forgets
        # them before the plan is written, so if they come back they are sent (docs/ledger.md).
        self.leaving: dict[str, list[bytes]] = {}

    # While reading

    def incremental_schema(self, source: str) -> None:
        """The tap's SCHEMA for ``source`` names ``bookmark_properties``: Singer's own sign of an
        incremental stream, whatever ACTIVATE_VERSION says."""
        self._incremental.add(source)

    def fed(self, source: str, stream: str) -> None:
        """The tap's stream ``source`` arrives as ``stream`` (its name after the stream maps)."""
        self._sources_of.setdefault(stream, set()).add(source)
        for key, changes, resumes in self._doubtful_bookmarks:  # a STATE before its SCHEMA
            if names(key, source):
                if changes:
                    self._incremental.add(source)
                if resumes and not self._records_from[source]:
                    self._resumed.add(source)

    def routed(self, stream: str, list_id: str) -> None:
        """A stream of this run goes to ``list_id`` (its SCHEMA arrived): the list is this run's to mirror."""
        self._streams_for.setdefault(list_id, set()).add(stream)

    def streams_of(self, list_id: str) -> set[str]:
        """The streams that feed the list: routed to it this run, or named for it by stream_lists."""
        return self._streams_for.get(list_id, set()) | self._named_for.get(list_id, set())

    @property
    def lists(self) -> list[str]:
        """The lists this run's streams go to, then those stream_lists names that no stream reached."""
        return list(dict.fromkeys([*self._streams_for, *self._named_for]))

    def record_from(self, source: str) -> None:
        """A RECORD of the tap's stream ``source`` arrived, whatever becomes of it."""
        self._records_from[source] += 1

    def activated(self, source: str) -> None:
        """The tap sent ACTIVATE_VERSION for ``source``: a full extract only if no record came before it."""
        if self._records_from[source]:
            self._late_versions.add(source)
        else:
            self._full_extracts.add(source)

    def state(self, value: Any) -> None:
        """A STATE from the tap: what its bookmarks say of each stream's extract.

        Some taps send ACTIVATE_VERSION before an incremental sync too (singer-io tap-mysql
        does, every sync), so a bookmark with a replication key or log position, or a
        replication method that is not a full table, outweighs it. A bookmark that marks
        where an interrupted full-table sync stopped (``last_pk_fetched``, ``xmin``), seen
        before the stream's first record, means this run resumes it: only the rest follows.
        Bookmarks are keyed by the tap's stream id, which may be the stream's name with a
        prefix (``<database>-<table>``): a key that ends with a stream's name counts for it.
        """
        if value is None:
            return  # no state at all (a tap's first STATE before any bookmark): nothing said
        # Singer keeps bookmarks under "bookmarks"; a tap that keeps them at the top level is read too.
        bookmarks = (
            value.get("bookmarks", {k: v for k, v in value.items() if k not in STATE_HEADERS})
            if isinstance(value, Mapping)
            else value
        )
        if not isinstance(bookmarks, Mapping):
            # Bookmarks that are not an object may say anything (incremental, resumed): doubt.
            self._unreadable_state = True
            return
        for key, bookmark in bookmarks.items():
            changes, resumes = incremental(bookmark), resuming(bookmark)
            if not (changes or resumes):
                continue
            self._doubtful_bookmarks.add((str(key), changes, resumes))
            for source in self._sources_named(str(key)):
                if changes:
                    self._incremental.add(source)
                if resumes and not self._records_from[source]:
                    self._resumed.add(source)

    def _sources_named(self, key: str) -> list[str]:
        sources = {source for sources in self._sources_of.values() for source in sources}
        return [source for source in sources if names(key, source)]

    def keep(self, list_id: str, record: Any) -> None:
        """A record for ``list_id``: the email at its email path, in whatever shape it came (text, a
        list, an object), keeps its member whatever becomes of the record."""
        if isinstance(record, Mapping):
            self._keep_within(list_id, get_path(record, self.email_path))

    def keep_any(self, list_id: str, record: Any) -> None:
        """A record that could not be read as a record: no stream map or mapping ran on it, so its
        email path and then every text in it that may hold an address keep their members (keeping
        too many only removes fewer)."""
        self.keep(list_id, record)
        self._keep_within(list_id, record)

    def _keep_within(self, list_id: str, value: Any) -> None:
        """Every text in ``value`` that may hold an address (:func:`texts_with_at`)."""
        for text in texts_with_at(value):
            self._keep_forms(list_id, text)

    def _keep_forms(self, list_id: str, value: str) -> None:
        """The address in every form Klaviyo may hold it (:func:`address_forms`) keeps its member."""
        forms = address_forms(value)
        for form in forms:
            self._seen.setdefault(hash64(f"{list_id}\n{form.lower()}"))
        if self._persons is not None:
            for form in forms:
                person = person_of_address(form) if "@" in form else None
                if person is not None:
                    self.in_segment(list_id, person)

    def in_segment(self, list_id: str, person: bytes) -> None:
        """mirror_scope synced: this person (:func:`person_of` a key) is in the list's segment this run."""
        if self._persons is not None:
            table = self._persons.get(list_id)
            if table is None:
                table = self._persons[list_id] = HashTable(with_values=False)
            table.setdefault(memory_key(person))

    def person_kept(self, list_id: str, person: bytes) -> bool:
        """mirror_scope synced: whether the ledger's person is in this run's segment for the list."""
        table = (self._persons or {}).get(list_id)
        return table is not None and memory_key(person) in table

    def kept(self, list_id: str, email: str) -> bool:
        """Whether the member with this email (as Klaviyo holds it) was in this run's input, in any form:
        the member's address is read in the same forms as the records' (an address Klaviyo holds with
        an invisible character, a trailing dot or a display name still matches the clean one)."""
        return any(hash64(f"{list_id}\n{form.lower()}") in self._seen for form in address_forms(email))

    # At the end

    def why_not(self, list_id: str, confirmed: int) -> str | None:
        """Why ``list_id`` must be left as it is, or None if this run saw its whole segment.

        ``confirmed`` is how many of this run's profiles for it Klaviyo accepted.
        """
        routed = self._streams_for.get(list_id, set())
        for stream in sorted(self._named_for.get(list_id, set()) - routed):
            return (
                f"stream {stream!r}, which stream_lists sends to it, did not appear in this run, so its "
                "people may still be in the segment"
            )
        if self._unreadable_state:
            return (
                "the tap's STATE holds bookmarks that are not an object, so this run cannot tell a full "
                "extract from an incremental or resumed one"
            )
        sources = sorted({source for stream in routed for source in self._sources_of.get(stream, {stream})})
        for source in sources:
            if not self._records_from[source]:
                return (
                    f"stream {source!r} sent no records in this run, and an empty extract is more often "
                    "a failed one than an empty segment"
                )
        for source in sources:
            if source in self._incremental:
                return (
                    f"stream {source!r} has an incremental bookmark (in the tap's STATE, or bookmark_properties "
                    "in its SCHEMA), so its records may be only the rows that changed, not the whole segment, "
                    "even with ACTIVATE_VERSION; use a full-table stream, or sync_mode upsert"
                )
            if source in self._resumed:
                return (
                    f"stream {source!r} resumes an interrupted full-table sync (the tap's STATE says where "
                    "it stopped), so this run holds only the rest of the table; the next complete sync "
                    "mirrors it"
                )
            if source in self._full_extracts:
                continue
            if source in self._late_versions:
                return (
                    f"stream {source!r} sent ACTIVATE_VERSION only after some of its records, as a tap "
                    "resuming an interrupted full-table sync does, so this run may not have seen the "
                    "whole table; the next complete full-table sync mirrors it"
                )
            return (
                f"stream {source!r} did not arrive as a full extract (the tap sent no ACTIVATE_VERSION "
                "before its records), so people missing from it may not have left the segment; set "
                "emit_activate_version_messages on a tap whose stream is full-table, or use sync_mode upsert"
            )
        if not confirmed:
            return "Klaviyo accepted none of this run's profiles for it, and mirror never empties a list"
        return None

    def plan(
        self, client: KlaviyoClient, list_id: str, on_member: Callable[[str], None] | None = None
    ) -> ListPlan:
        """Read the list and choose the members to remove: every member with an email this run did not see.

        ``on_member`` is told each member's email as it is read (the ledger learns who is in the list).
        """
        plan = ListPlan(list_id, 0)
        # A member read twice (paging over a list that changes) is kept if any reading keeps it.
        chosen: dict[str, str] = {}  # profile id -> its email
        read = HashTable(with_values=False)
        for profile_id, email, _ in self.members(client, list_id):
            plan.members += 1
            again = hash64(profile_id) in read
            read.setdefault(hash64(profile_id))
            if on_member is not None and isinstance(email, str):
                on_member(email)
            if not isinstance(email, str) or not email.strip():
                plan.without_email += 1  # no record of this pipeline can ever keep it: never removed
                chosen.pop(profile_id, None)
            elif self.kept(list_id, email):
                chosen.pop(profile_id, None)
            elif not again:
                chosen[profile_id] = email
        plan.remove = list(chosen)
        self.leaving[list_id] = [
            person for person in map(person_of_address, chosen.values()) if person is not None
        ]
        # Every member to remove was there before the run (this run's profiles are all kept).
        plan.members_before = max(self.members_before.get(list_id, 0), len(plan.remove))
        return plan

    @staticmethod
    def members(
        client: KlaviyoClient, list_id: str, since: int | None = None
    ) -> Iterator[tuple[str, object, int | None]]:
        """The list's members, or only those who joined from ``since`` (Unix seconds) on, in the order
        they joined: each one's profile id (checked as a profile id is), its email, and the latest of
        its ``created`` and ``updated``, as Klaviyo gives them (of any type: a member without an
        email has no text there; a moment that cannot be read is None)."""
        path = LIST_PROFILES.at(id=list_id)
        pace = LIST_PROFILES.pace()

        def read(params: dict[str, Any]) -> object:
            pace.wait()
            with scopes_needed(
                f"read the members of list {list_id}", "sync_mode mirror", LIST_PROFILES.scopes
            ):
                return client.get(path, params)

        params: dict[str, Any] = {
            "fields[profile]": "email,created,updated",
            "page[size]": LIST_PROFILES.page_size,
        }
        if since is not None:
            moment = dt.datetime.fromtimestamp(since, dt.timezone.utc).isoformat()
            params.update(
                {"filter": f"greater-or-equal(joined_group_at,{moment})", "sort": "joined_group_at"}
            )
        for page in pages(read, params, member_paging(path)):
            data = page.get("data") if isinstance(page, dict) else None
            if not isinstance(data, list) or not all(isinstance(member, dict) for member in data):
                raise KlaviyoError(
                    f"Klaviyo answered GET {path} without a list of profiles; nothing will be removed."
                )
            for member in data:
                profile_id, attributes = member.get("id"), member.get("attributes", {})
                if (
                    not isinstance(profile_id, str)
                    or not PROFILE_ID.fullmatch(profile_id)
                    or not isinstance(attributes, dict)
                ):
                    raise KlaviyoError(
                        f"Klaviyo answered GET {path} with a member that is not a profile with an id; "
                        "nothing will be removed."
                    )
                moments = [unix_seconds(attributes.get(name)) for name in ("created", "updated")]
                latest = None if None in moments else max(m for m in moments if m is not None)
                yield profile_id, attributes.get("email"), latest

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


def unix_seconds(moment: object) -> int | None:
    """An ISO 8601 date-time with its zone, as Klaviyo gives ``created``, in Unix seconds; else None."""
    if not isinstance(moment, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int(parsed.timestamp()) if parsed.tzinfo is not None else None


def member_paging(path: str) -> Paging:
    """Paging a list's members: what cannot be followed is the last page (reading fewer only
    keeps members), but a cursor given twice stops the plan."""
    return Paging(
        fault=lambda what: KlaviyoError(f"Klaviyo answered GET {path} {what}; nothing will be removed."),
        repeated="with a page it had already given",
    )
