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
:attr:`target_klaviyo.records.consent.Consent.since`: the earliest moment the record's date can
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

from target_klaviyo.errors import KlaviyoApiError, KlaviyoError
from target_klaviyo.klaviyo.endpoints import LIST_PROFILES, SUBSCRIBE
from target_klaviyo.klaviyo.http import KlaviyoClient
from target_klaviyo.klaviyo.paging import Paging, pages
from target_klaviyo.klaviyo.refused import lacks_scopes, scopes_needed, split_refused
from target_klaviyo.records.consent import Consent
from target_klaviyo.records.profile import Reject

logger = logging.getLogger(
    "target_klaviyo.subscriptions"
)  # the name its lines had before the modules moved into rooms: users' log filters keep working

MAX_PROFILES_PER_REQUEST = SUBSCRIBE.max_items
CHECKED_PER_REQUEST = LIST_PROFILES.page_size  # emails per consent look-up: one full page each
# Global suppressions a subscription leaves in place, as the spec says (the unsuppress endpoint
# keeps them; the subscribe endpoint names only UNSUBSCRIBE, SPAM_REPORT and USER_SUPPRESSED as
# lifted). Every other reason, one the spec does not name included, counts as a withdrawal.
KEPT_BY_SUBSCRIBING = {"HARD_BOUNCE", "INVALID_EMAIL"}
KNOWN_CONSENT = {"SUBSCRIBED", "UNSUBSCRIBED", "NEVER_SUBSCRIBED"}  # the values the spec describes
UNQUOTABLE = ('"', "\\")

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
        # A reason that is not a text is one the spec does not name: a withdrawal too.
        if not (isinstance(record.get("reason"), str) and record["reason"] in KEPT_BY_SUBSCRIBING)
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
        self._pace = SUBSCRIBE.pace()
        self._check_pace = LIST_PROFILES.pace()

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
        path = LIST_PROFILES.at(id=list_id)
        withdrawn: Withdrawals = {}
        listed: set[str] = set()
        paging = Paging(
            fault=lambda what: _unexpected(path, what),
            repeated="a next page it had already given",
            endless="more pages than the people it was asked about",
            links_not_object="links that are not an object",
            next_not_text="a next link that is not text",
            no_cursor="a next link without a page[cursor]",
            most_pages=len(emails) + 1,
        )
        for page in pages(lambda page_params: self._read(list_id, path, page_params), params, paging):
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
        return withdrawn, listed

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
        doing = f"read the consent of list {list_id}'s members"
        with scopes_needed(doing, "consent_property", LIST_PROFILES.scopes, ", to respect unsubscribes"):
            return self.client.get(path, params)

    def _send(self, list_id: str, group: People, historical: bool, events: SubscriptionEvents) -> int:
        while group:
            self._pace.wait()
            body = subscription_body(
                list_id, [(email, consent.at) for _, email, consent in group], historical=historical
            )
            try:
                self.client.post(SUBSCRIBE.path, body)
            except KlaviyoApiError as error:
                group = self._without_refused(group, error, events)
                continue
            return len(group)
        return 0

    @staticmethod
    def _without_refused(group: People, error: KlaviyoApiError, events: SubscriptionEvents) -> People:
        if error.status in {401, 403}:
            raise lacks_scopes(
                error.status,
                "subscribe profiles",
                "the API key",
                ["subscriptions:write"],
                " for consent_property",
            ) from None
        refused, rest = split_refused(error, group)
        for position, text in refused.items():
            events.subscription_refused(group[position][0], Reject("subscription_refused", text))
        logger.warning(
            "Klaviyo refused to subscribe %d profile(s); subscribing the other %d again.",
            len(refused),
            len(group) - len(refused),
        )
        return rest
