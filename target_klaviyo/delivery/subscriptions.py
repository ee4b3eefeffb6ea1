"""Email marketing consent, sent to Klaviyo as subscriptions once a profile is imported.

A profile whose record gave consent (``consent_property``) is subscribed to email
marketing in its list through ``POST /api/profile-subscription-bulk-create-jobs``,
after the import job that carried it has completed, so that the subscription
never creates a bare profile ahead of its attributes. That endpoint takes only
identifiers and subscriptions, at most 1,000 profiles a request, and one
``historical_import`` flag for all of them, so the profiles are sent in two kinds
of request:

- consent with a date: ``historical_import: true`` and each profile's
  ``consented_at``; Klaviyo subscribes them at once, without a confirmation mail
  or "added to list" flows;
- consent without a date: a plain subscription, which follows the list's opt-in
  process (a double opt-in list sends its confirmation mail).

Subscribing someone lifts their unsubscribe in Klaviyo, so anything in doubt leaves
them out. Before each request the target reads the current email consent of those
people (``GET /api/lists/{id}/profiles`` filtered by email, with
``additional-fields[profile]=subscriptions``, every page of it through ``links.next``)
and finds who withdrew: a global ``suppression`` a subscription would lift (any reason
but ``HARD_BOUNCE`` and ``INVALID_EMAIL``, which it leaves in place), a
``list_suppressions`` entry for any list (the endpoint does not say which of those it
lifts), or ``consent: UNSUBSCRIBED``. Such a person is subscribed only if the record's
consent is strictly later than the latest of those records' timestamps (and, when
unsubscribed, of ``consent_timestamp`` and ``last_updated``), as compared by
:attr:`target_klaviyo.records.mapping.Consent.since`: the earliest moment the record's date can
mean, none for a date without one or ahead of this machine's clock. A withdrawal without
a readable timestamp is never outweighed. A person left out, or refused by Klaviyo, stays
exported; it is reported with the reason and counted as a value dropped. An answer to
the consent read of any other shape, and any other refusal, stops the run with one
sentence.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from target_klaviyo.klaviyo.http import KlaviyoApiError, KlaviyoClient, KlaviyoError, Pace
from target_klaviyo.records.consent import Consent
from target_klaviyo.records.profile import Reject

logger = logging.getLogger("target_klaviyo.delivery.subscriptions")

SUBSCRIPTIONS_PATH = "/api/profile-subscription-bulk-create-jobs"
MAX_PROFILES_PER_REQUEST = 1000
MIN_INTERVAL = 60 / 700  # Klaviyo's steady limit for this endpoint is 750 a minute
CHECKED_PER_REQUEST = 100  # emails per consent look-up (page[size] is at most 100)
CHECK_INTERVAL = 60 / 700  # GET list profiles, each page a request: steady 750 a minute
# Global suppressions a subscription leaves in place, as the spec says (the unsuppress endpoint
# keeps them; the subscribe endpoint names only UNSUBSCRIBE, SPAM_REPORT and USER_SUPPRESSED as
# lifted). Every other reason, one the spec does not name included, counts as a withdrawal.
KEPT_BY_SUBSCRIBING = {"HARD_BOUNCE", "INVALID_EMAIL"}
KNOWN_CONSENT = {"SUBSCRIBED", "UNSUBSCRIBED", "NEVER_SUBSCRIBED"}  # the values the spec describes
UNQUOTABLE = ('"', "\\")
POINTER_PREFIX = "/data/attributes/profiles/data/"

People = list[tuple[int, str, Consent]]  # (position in the job, email, consent)
# When a person withdrew, by email; None when some record of it has no readable moment.
Withdrawals = dict[str, datetime.datetime | None]


class SubscriptionEvents(Protocol):
    def subscription_refused(self, position: int, reject: Reject) -> None: ...


NOT_CHECKED_DETAIL = (
    "Klaviyo did not list this person among the list's members when the target read their email "
    "marketing consent, so an unsubscribe could not be ruled out; no subscription was sent, and the "
    "profile was exported."
)
WITHDRAWN_DETAIL = (
    "Klaviyo records that this person unsubscribed from email marketing (or was suppressed) after the "
    "consent in the record, or the record's consent has no date that is surely later; it was not sent, "
    "so that the unsubscribe stands, and the profile was exported."
)


def _moment(text: object) -> datetime.datetime | None:
    """A timestamp of Klaviyo's, or None if it is not one; without an offset it is UTC, as Klaviyo keeps time."""
    if not isinstance(text, str) or "T" not in text.upper():
        return None  # a date without its time could be any moment of that day: unreadable, so doubt
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def _after(consent: Consent, withdrawn: datetime.datetime | None) -> bool:
    """Whether a consent surely came after a withdrawal at ``withdrawn`` (None: at an unknown moment)."""
    given = _moment(consent.since)
    return given is not None and withdrawn is not None and given > withdrawn


def _unexpected(path: str, what: str) -> KlaviyoError:
    return KlaviyoError(
        f"Klaviyo answered GET {path} with {what}; the run stops rather than subscribe anyone it could not check."
    )


def _object(node: dict[str, Any], key: str, path: str, what: str) -> dict[str, Any]:
    value = node.get(key)
    if not isinstance(value, dict):
        raise _unexpected(path, what)
    return value


def _records(marketing: dict[str, Any], key: str, path: str) -> list[dict[str, Any]]:
    """``suppression`` or ``list_suppressions``: a list of objects, or null (none)."""
    records = marketing.get(key)
    if records is None:
        return []
    if not isinstance(records, list) or not all(isinstance(record, dict) for record in records):
        raise _unexpected(path, f"a {key} that is not a list of objects")
    return records


def _withdrawal(marketing: dict[str, Any], path: str) -> tuple[bool, datetime.datetime | None]:
    """Whether ``subscriptions.email.marketing`` records a withdrawal, and its latest moment.

    The moment is None when any of the records has none that can be read: then no
    consent can be shown to be later.
    """
    consent = marketing.get("consent")
    if not isinstance(consent, str):
        raise _unexpected(path, "a profile without its email marketing consent")
    stamps: list[object] = [
        record.get("timestamp")
        for record in _records(marketing, "suppression", path)
        if record.get("reason") not in KEPT_BY_SUBSCRIBING
    ]
    stamps += [record.get("timestamp") for record in _records(marketing, "list_suppressions", path)]
    if consent not in KNOWN_CONSENT:
        return True, None  # a consent this target does not know: doubt, so never outweighed
    if consent == "UNSUBSCRIBED":
        # Without a suppression record these are all there is; with one, a later value only adds doubt.
        stamps += [
            marketing[key] for key in ("consent_timestamp", "last_updated") if marketing.get(key) is not None
        ]
        stamps = stamps or [None]
    if not stamps:
        return False, None
    moments = [_moment(stamp) for stamp in stamps]
    return True, None if None in moments else max(moment for moment in moments if moment is not None)


def _next_cursor(page: dict[str, Any], path: str) -> str | None:
    """The ``page[cursor]`` of ``links.next``, or None on the last page."""
    links = page.get("links")
    if links is None:
        return None
    if not isinstance(links, dict):
        raise _unexpected(path, "links that are not an object")
    next_link = links.get("next")
    if next_link is None:
        return None
    if not isinstance(next_link, str):
        raise _unexpected(path, "a next link that is not text")
    cursor = parse_qs(urlsplit(next_link).query).get("page[cursor]")
    if not cursor:
        raise _unexpected(path, "a next link without a page[cursor]")
    return cursor[0]


def subscription_body(list_id: str, people: list[tuple[str, str]], *, historical: bool) -> bytes:
    """The request for ``(email, consented_at)`` pairs; ``consented_at`` only in a historical import."""
    profiles = []
    for email, consented_at in people:
        marketing = {"consent": "SUBSCRIBED"}
        if historical:
            marketing["consented_at"] = consented_at
        profiles.append(
            {
                "type": "profile",
                "attributes": {"email": email, "subscriptions": {"email": {"marketing": marketing}}},
            }
        )
    attributes: dict[str, object] = {"custom_source": "target-klaviyo", "profiles": {"data": profiles}}
    if historical:
        attributes["historical_import"] = True
    body = {
        "data": {
            "type": "profile-subscription-bulk-create-job",
            "attributes": attributes,
            "relationships": {"list": {"data": {"type": "list", "id": list_id}}},
        }
    }
    return json.dumps(body, separators=(",", ":")).encode()


def requests_for(people: People) -> Iterator[tuple[bool, People]]:
    """``(position, email, consent)`` grouped into requests: dated consent (historical) first."""
    for historical in (True, False):
        group = [person for person in people if bool(person[2].at) is historical]
        for start in range(0, len(group), MAX_PROFILES_PER_REQUEST):
            yield historical, group[start : start + MAX_PROFILES_PER_REQUEST]


class Subscriber:
    """Sends subscriptions for one list at a time, within the endpoint's rate limit."""

    def __init__(self, client: KlaviyoClient) -> None:
        self.client = client
        self._pace = Pace(MIN_INTERVAL)
        self._check_pace = Pace(CHECK_INTERVAL)

    def subscribe(self, list_id: str, people: People, events: SubscriptionEvents) -> int:
        """Subscribe ``(position, email, consent)``; returns how many Klaviyo accepted."""
        subscribed = 0
        for historical, group in requests_for(people):
            group = self._without_withdrawn(list_id, group, events)
            subscribed += self._send(list_id, group, historical, events)
        return subscribed

    def _without_withdrawn(self, list_id: str, group: People, events: SubscriptionEvents) -> People:
        """``group`` less the people whose consent is not surely later than their withdrawal in Klaviyo."""
        withdrawn: Withdrawals = {}
        found: set[str] = set()
        checkable = [email for _, email, _ in group if not any(mark in email for mark in UNQUOTABLE)]
        for start in range(0, len(checkable), CHECKED_PER_REQUEST):
            gone, listed = self._withdrawn(list_id, checkable[start : start + CHECKED_PER_REQUEST])
            withdrawn.update(gone)
            found |= listed
        kept = []
        for person in group:
            position, email, consent = person
            person_key = email.strip().lower()
            if person_key not in found:
                # Not read back (an email a filter cannot quote, or not among the list's members
                # although its import completed): its consent in Klaviyo is unknown, so no subscription.
                events.subscription_refused(position, Reject("consent_not_checked", NOT_CHECKED_DETAIL))
            elif person_key in withdrawn and not _after(consent, withdrawn[person_key]):
                events.subscription_refused(position, Reject("unsubscribed_in_klaviyo", WITHDRAWN_DETAIL))
            else:
                kept.append(person)
        return kept

    def _withdrawn(self, list_id: str, emails: list[str]) -> tuple[Withdrawals, set[str]]:
        """Which of ``emails`` Klaviyo records as unsubscribed or suppressed, and since when; and
        which it listed at all (lower case).

        Every page is read: a page may hold fewer profiles than asked for. The filter
        matches at most one profile per email, so more pages than emails (and a last one)
        means an answer that does not end.
        """
        quoted = ",".join(f'"{email}"' for email in emails)
        params: dict[str, Any] = {
            "filter": f"any(email,[{quoted}])",
            "additional-fields[profile]": "subscriptions",
            "fields[profile]": "email,subscriptions",
            "page[size]": CHECKED_PER_REQUEST,
        }
        path = f"/api/lists/{list_id}/profiles"
        withdrawn: Withdrawals = {}
        listed: set[str] = set()
        cursors: set[str] = set()
        for _ in range(len(emails) + 1):
            page = self._read(list_id, path, params)
            members = page.get("data") if isinstance(page, dict) else None
            if not isinstance(page, dict) or not isinstance(members, list):
                raise _unexpected(path, "no list of profiles")
            for member in members:
                email, (gone, since) = self._member_withdrawal(member, path)
                listed.add(email)
                if gone:
                    # The same person twice: the later withdrawal, and an unknown moment above all.
                    earlier = withdrawn.get(email, since)
                    withdrawn[email] = None if since is None or earlier is None else max(since, earlier)
            cursor = _next_cursor(page, path)
            if cursor is None:
                return withdrawn, listed
            if cursor in cursors:
                raise _unexpected(path, "a next page it had already given")
            cursors.add(cursor)
            params = {**params, "page[cursor]": cursor}
        raise _unexpected(path, "more pages than the people it was asked about")

    @staticmethod
    def _member_withdrawal(member: object, path: str) -> tuple[str, tuple[bool, datetime.datetime | None]]:
        """One profile of the answer: its email (lower case) and :func:`_withdrawal`."""
        if not isinstance(member, dict):
            raise _unexpected(path, "a profile that is not an object")
        attributes = _object(member, "attributes", path, "a profile without attributes")
        email = attributes.get("email")
        if not isinstance(email, str):
            raise _unexpected(path, "a profile without its email")
        subscriptions = _object(attributes, "subscriptions", path, "a profile without its subscriptions")
        channel = _object(subscriptions, "email", path, "a profile without its email subscriptions")
        marketing = _object(channel, "marketing", path, "a profile without its email marketing consent")
        return email.strip().lower(), _withdrawal(marketing, path)

    def _read(self, list_id: str, path: str, params: dict[str, Any]) -> object:
        """One page of the consent read; an answer that is not even an object is the caller's to refuse."""
        self._check_pace.wait()
        try:
            return self.client.get(path, params)
        except KlaviyoApiError as error:
            if error.status in {401, 403}:
                msg = (
                    f"Klaviyo refused to read the consent of list {list_id}'s members ({error.status}): "
                    "consent_property needs the lists:read and profiles:read scopes, to respect unsubscribes."
                )
                raise KlaviyoError(msg) from None
            raise

    def _send(self, list_id: str, group: People, historical: bool, events: SubscriptionEvents) -> int:
        while group:
            self._pace.wait()
            body = subscription_body(
                list_id, [(email, consent.at) for _, email, consent in group], historical=historical
            )
            try:
                self.client.post(SUBSCRIPTIONS_PATH, body)
            except KlaviyoApiError as error:
                group = self._without_refused(group, error, events)
                continue
            return len(group)
        return 0

    @staticmethod
    def _without_refused(group: People, error: KlaviyoApiError, events: SubscriptionEvents) -> People:
        if error.status in {401, 403}:
            msg = (
                f"Klaviyo refused to subscribe profiles ({error.status}): the API key needs the "
                "subscriptions:write scope for consent_property."
            )
            raise KlaviyoError(msg) from None
        refused: dict[int, str] = {}
        for detail in error.errors:
            pointer = detail.pointer or ""
            index = (
                pointer[len(POINTER_PREFIX) :].split("/", 1)[0] if pointer.startswith(POINTER_PREFIX) else ""
            )
            if error.status != 400 or not index.isdigit() or int(index) >= len(group):
                raise error
            refused.setdefault(int(index), f"{detail.code}: {detail.detail} ({pointer})")
        if not refused:
            raise error
        for position, text in refused.items():
            events.subscription_refused(group[position][0], Reject("subscription_refused", text))
        logger.warning(
            "Klaviyo refused to subscribe %d profile(s); subscribing the other %d again.",
            len(refused),
            len(group) - len(refused),
        )
        return [person for index, person in enumerate(group) if index not in refused]
