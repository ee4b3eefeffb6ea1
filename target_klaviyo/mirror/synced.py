"""``mirror_scope: synced``: remove only the people this target put into a list who left its segment.

The ledger holds, per list, everyone this target put there and Klaviyo confirmed
(:mod:`target_klaviyo.ledger`). A mirror run that saw the whole segment
(:meth:`Mirror.why_not <target_klaviyo.mirror.planner.Mirror.why_not>`) plans to remove
the ledger's people of that list, from the streams that feed it, who are not in this
run's segment, in any form their address was read in. Their Klaviyo profile ids come
from the ledger, which learns them from reading the list: the first such run reads it
whole, each later one only the members who joined since the last read (``joined_group_at``),
so a run costs the people who joined and who left, not the list.

Doubt keeps people in the list:

- a leaver whose id the ledger does not know after the read of new members makes the
  run read the whole list once; one still unknown then is not a member (or Klaviyo holds
  their address in a form this target cannot read), so there is no one to remove;
- before a removal is planned, the profile is read again by its id (``GET /api/profiles``,
  100 a request): a profile that now holds another address (an email changed in Klaviyo,
  profiles merged) or one of this run's addresses is kept, and one Klaviyo no longer has
  needs no removal.

Members this target did not put there (added by hand, by a form, by another tool) are
never removed: ``mirror_scope: list`` is for that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from target_klaviyo.errors import KlaviyoError
from target_klaviyo.klaviyo.endpoints import PROFILES
from target_klaviyo.klaviyo.http import KlaviyoClient
from target_klaviyo.klaviyo.paging import Paging, pages
from target_klaviyo.klaviyo.refused import scopes_needed
from target_klaviyo.ledger.digest import person_of
from target_klaviyo.mirror.plan_format import ID as PROFILE_ID
from target_klaviyo.mirror.plan_format import ListPlan
from target_klaviyo.mirror.planner import Mirror

logger = logging.getLogger("target_klaviyo.mirror")

# Members who joined up to this long before a read are read again by the next: a membership Klaviyo
# shows a little late, or a clock a little ahead, is still read (a later one only costs a whole read).
READ_AGAIN_SECONDS = 3600
LEARN_CHUNK = 10_000  # profile ids recorded a transaction while the members are read


class SyncedLedger(Protocol):
    """What the plan reads of the ledger (:class:`~target_klaviyo.ledger.ledger.Ledger`)."""

    def holds(self, list_id: str, person: bytes) -> bool: ...

    def mirror_rows(self, list_id: str) -> Iterator[list[tuple[bytes, str, str | None, int]]]: ...

    def read_through(self, list_id: str) -> int | None: ...

    def learn(self, list_id: str, ids: list[tuple[bytes, str, int]], through: int | None = None) -> None: ...


class SyncedPlan:
    """The plan of one list in ``mirror_scope: synced``."""

    def __init__(
        self,
        mirror: Mirror,
        client: KlaviyoClient,
        ledger: SyncedLedger,
        list_id: str,
        on_member: Callable[[str], None] | None = None,
    ) -> None:
        self._mirror, self._client, self._ledger, self._list_id = mirror, client, ledger, list_id
        self._on_member = on_member  # told each member of a whole read (the ledger forgets who is absent)
        self.plan = ListPlan(list_id, 0)
        self.other_streams = 0  # the ledger's people of the list from streams that do not feed it now
        self.not_members = 0  # leavers the whole list did not hold: no one to remove
        self.kept_changed = 0  # leavers whose profile now holds another address, or one of this run's
        self.two_profiles = 0  # leavers another profile than the ledger's holds the address of too
        self._twins: set[bytes] = set()
        self._confirmed: dict[bytes, int] = {}  # per leaver, when Klaviyo last confirmed them (Unix seconds)

    def make(self) -> ListPlan:
        mirror, list_id = self._mirror, self._list_id
        leavers = self._leavers()
        since = self._ledger.read_through(list_id)
        self._read(None if since is None else since - READ_AGAIN_SECONDS, leavers)
        if since is not None and None in leavers.values():
            self._read(None, leavers)  # an id the ledger does not know: read the list whole, once
        for person in self._twins:
            del leavers[person]
        self.two_profiles = len(self._twins)
        unknown = [person for person, profile_id in leavers.items() if profile_id is None]
        self.not_members = len(unknown)
        known = {profile_id: person for person, profile_id in leavers.items() if profile_id is not None}
        remove = self._still_theirs(known)
        self.plan.remove = list(remove)
        # Those not in the list are forgotten too: the next run sends them, should they come back.
        mirror.leaving[list_id] = [*remove.values(), *unknown]
        self.plan.members_before = max(mirror.members_before.get(list_id, 0), len(self.plan.remove))
        return self.plan

    def _leavers(self) -> dict[bytes, str | None]:
        """The ledger's people of the list, from the streams that feed it, not in this run's segment."""
        mirror, list_id = self._mirror, self._list_id
        streams = mirror.streams_of(list_id)
        leavers: dict[bytes, str | None] = {}
        for chunk in self._ledger.mirror_rows(list_id):
            for person, stream, profile_id, confirmed_at in chunk:
                if mirror.person_kept(list_id, bytes(person)):
                    continue
                if stream not in streams:
                    self.other_streams += 1  # put there from a stream that no longer feeds it: kept
                    continue
                valid = isinstance(profile_id, str) and PROFILE_ID.fullmatch(profile_id)
                leavers[bytes(person)] = profile_id if valid else None
                self._confirmed[bytes(person)] = int(confirmed_at)
        return leavers

    def _read(self, since: int | None, leavers: dict[bytes, str | None]) -> None:
        """Read the members who joined from ``since`` on (None: all), recording the ids of the
        ledger's people, and each leaver's; then until when the list was read."""
        list_id, ledger = self._list_id, self._ledger
        started = int(time.time())
        learned: list[tuple[bytes, str, int]] = []
        for profile_id, email, changed_at in self._mirror.members(self._client, list_id, since):
            self.plan.members += 1
            if not isinstance(email, str) or changed_at is None:
                continue  # no email: never a person of the ledger; no readable times: doubt
            if since is None and self._on_member is not None:
                self._on_member(email)
            person = imported_as(email)
            # The ledger's people: those it held when the run started, and this run's (confirmed
            # ones are in it by now; for the others the update changes nothing).
            if person is None or not (
                ledger.holds(list_id, person) or self._mirror.person_kept(list_id, person)
            ):
                continue
            if person in leavers:
                known = leavers[person]
                if known is None:
                    # The profile was last changed before Klaviyo last confirmed the person; one created
                    # or changed since (a signup with the address, or another profile given it, after
                    # the imported profile's email was changed in Klaviyo) is never taken for theirs.
                    if changed_at <= self._confirmed[person]:
                        leavers[person] = profile_id
                elif known != profile_id:
                    # Another profile holds their address now (a signup after the imported profile's
                    # email was changed in Klaviyo, say): which is whose is doubt, so neither is removed.
                    self._twins.add(person)
            learned.append((person, profile_id, changed_at))  # an id the ledger has is never replaced
            if len(learned) >= LEARN_CHUNK:
                ledger.learn(list_id, learned)
                learned = []
        ledger.learn(list_id, learned, started)

    def _still_theirs(self, leavers: dict[str, bytes]) -> dict[str, bytes]:
        """The leavers (profile id -> person) whose profile still holds their address, and none of this
        run's: read again by id, 100 a request."""
        mirror, list_id = self._mirror, self._list_id
        ids = list(leavers)
        still: dict[str, bytes] = {}
        doubted: set[str] = set()  # a profile given twice is kept if any of its readings keeps it
        for start in range(0, len(ids), PROFILES.page_size):
            for profile in _profiles(self._client, ids[start : start + PROFILES.page_size]):
                profile_id, attributes = profile.get("id"), profile.get("attributes")
                if (
                    not isinstance(profile_id, str)
                    or profile_id not in leavers
                    or not isinstance(attributes, dict)
                ):
                    continue  # not one asked for, or without attributes: nothing is removed for it
                email = attributes.get("email")
                if (
                    isinstance(email, str)
                    and not mirror.kept(list_id, email)
                    and imported_as(email) == leavers[profile_id]
                ):
                    still[profile_id] = leavers[profile_id]
                else:
                    doubted.add(profile_id)
        self.kept_changed = len(doubted)
        return {profile_id: person for profile_id, person in still.items() if profile_id not in doubted}


def imported_as(email: str) -> bytes:
    """The ledger's name for the person whose profile holds exactly this address (in any case).

    This target imports each person under their normalised address and names them by it in
    lower case, so its own profile holds that address. A profile whose address only normalises
    to the same one (a Unicode domain where this target sent its ASCII form, a decomposed
    accent) is another profile, made by someone else: it is never taken for this target's.
    """
    return person_of(email.lower())


def _profiles(client: KlaviyoClient, ids: list[str]) -> Iterable[dict[str, Any]]:
    """The profiles with these ids (at most 100, each checked as a profile id is), as Klaviyo has them."""
    pace = PROFILES.pace()
    names = ",".join(f'"{profile_id}"' for profile_id in ids)
    params = {"filter": f"any(id,[{names}])", "fields[profile]": "email", "page[size]": PROFILES.page_size}
    paging = Paging(
        fault=lambda what: KlaviyoError(
            f"Klaviyo answered GET {PROFILES.path} {what}; nothing will be removed."
        ),
        repeated="with a page it had already given",
        endless="with more pages than the profiles asked for fill",
        most_pages=1 + len(ids) // PROFILES.page_size,
    )

    def read(query: dict[str, Any]) -> object:
        pace.wait()
        with scopes_needed("read profiles by id", "mirror_scope synced", PROFILES.scopes):
            return client.get(PROFILES.path, query)

    for page in pages(read, params, paging):
        data = page.get("data") if isinstance(page, dict) else None
        if not isinstance(data, list) or not all(isinstance(profile, dict) for profile in data):
            raise KlaviyoError(
                f"Klaviyo answered GET {PROFILES.path} without a list of profiles; nothing will be removed."
            )
        yield from data
