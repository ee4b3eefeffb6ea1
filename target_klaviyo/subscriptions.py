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

Subscribing someone lifts their unsubscribe in Klaviyo, so before each request the
target reads the current email consent of those people (``GET /api/lists/{id}/profiles``
filtered by email, with ``additional-fields[profile]=subscriptions``), and leaves out
anyone who unsubscribed, or was suppressed for spam or by hand, unless the record's
consent is dated after that. A person left out, or refused by Klaviyo, stays exported;
it is reported with the reason and counted as a value dropped. Any other refusal stops
the run.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterator
from typing import Protocol

from target_klaviyo.client import KlaviyoApiError, KlaviyoClient, KlaviyoError, Pace
from target_klaviyo.mapping import Reject

logger = logging.getLogger("target_klaviyo.subscriptions")

SUBSCRIPTIONS_PATH = "/api/profile-subscription-bulk-create-jobs"
MAX_PROFILES_PER_REQUEST = 1000
MIN_INTERVAL = 60 / 700  # Klaviyo's steady limit for this endpoint is 750 a minute
CHECKED_PER_REQUEST = 100  # emails per consent look-up (one page of list members)
CHECK_INTERVAL = 60 / 700  # GET list profiles: steady 750 a minute
WITHDRAWN = {"UNSUBSCRIBE", "SPAM_COMPLAINT", "USER_SUPPRESSED"}  # what a subscription would lift
UNQUOTABLE = ('"', "\\")
POINTER_PREFIX = "/data/attributes/profiles/data/"


class SubscriptionEvents(Protocol):
    def subscription_refused(self, position: int, reject: Reject) -> None: ...


WITHDRAWN_DETAIL = (
    "Klaviyo records that this person unsubscribed from email marketing (or was suppressed) after the "
    "consent in the record, or the record's consent has no date; it was not sent, so that the "
    "unsubscribe stands, and the profile was exported."
)


def _dig(node: object, *keys: str) -> object:
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _moment(text: object) -> datetime.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def _after(consent: str, withdrawn: datetime.datetime | None) -> bool:
    """Whether a consent (its date, or "" for none) was given after an unsubscribe at ``withdrawn``."""
    given = _moment(consent)
    return given is not None and withdrawn is not None and given > withdrawn


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


def requests_for(people: list[tuple[int, str, str]]) -> Iterator[tuple[bool, list[tuple[int, str, str]]]]:
    """``(position, email, consent)`` grouped into requests: dated consent (historical) first."""
    for historical in (True, False):
        group = [person for person in people if bool(person[2]) is historical]
        for start in range(0, len(group), MAX_PROFILES_PER_REQUEST):
            yield historical, group[start : start + MAX_PROFILES_PER_REQUEST]


class Subscriber:
    """Sends subscriptions for one list at a time, within the endpoint's rate limit."""

    def __init__(self, client: KlaviyoClient) -> None:
        self.client = client
        self._pace = Pace(MIN_INTERVAL)
        self._check_pace = Pace(CHECK_INTERVAL)

    def subscribe(self, list_id: str, people: list[tuple[int, str, str]], events: SubscriptionEvents) -> int:
        """Subscribe ``(position, email, consent)``; returns how many Klaviyo accepted."""
        subscribed = 0
        for historical, group in requests_for(people):
            group = self._without_withdrawn(list_id, group, events)
            subscribed += self._send(list_id, group, historical, events)
        return subscribed

    def _without_withdrawn(
        self, list_id: str, group: list[tuple[int, str, str]], events: SubscriptionEvents
    ) -> list[tuple[int, str, str]]:
        """``group`` less the people whose unsubscribe in Klaviyo is later than their consent here."""
        withdrawn: dict[str, datetime.datetime | None] = {}
        checkable = [email for _, email, _ in group if not any(mark in email for mark in UNQUOTABLE)]
        for start in range(0, len(checkable), CHECKED_PER_REQUEST):
            withdrawn.update(self._withdrawn(list_id, checkable[start : start + CHECKED_PER_REQUEST]))
        checked = set(checkable)  # an email that cannot be quoted in a filter is not subscribed unchecked
        kept = []
        for person in group:
            position, email, consent = person
            if email not in checked or (email in withdrawn and not _after(consent, withdrawn[email])):
                events.subscription_refused(position, Reject("unsubscribed_in_klaviyo", WITHDRAWN_DETAIL))
            else:
                kept.append(person)
        return kept

    def _withdrawn(self, list_id: str, emails: list[str]) -> dict[str, datetime.datetime | None]:
        """Which of ``emails`` Klaviyo records as unsubscribed or suppressed, and since when."""
        quoted = ",".join(f'"{email}"' for email in emails)
        params = {
            "filter": f"any(email,[{quoted}])",
            "additional-fields[profile]": "subscriptions",
            "fields[profile]": "email,subscriptions",
            "page[size]": CHECKED_PER_REQUEST,
        }
        path = f"/api/lists/{list_id}/profiles"
        self._check_pace.wait()
        try:
            page = self.client.get(path, params)
        except KlaviyoApiError as error:
            if error.status in {401, 403}:
                msg = (
                    f"Klaviyo refused to read the consent of list {list_id}'s members ({error.status}): "
                    "consent_property needs the lists:read and profiles:read scopes, to respect unsubscribes."
                )
                raise KlaviyoError(msg) from None
            raise
        members = page.get("data")
        if not isinstance(members, list):
            raise KlaviyoError(
                f"Klaviyo answered GET {path} without a list of profiles; nobody was subscribed."
            )
        withdrawn: dict[str, datetime.datetime | None] = {}
        for member in members:
            attributes = member.get("attributes") if isinstance(member, dict) else None
            email = attributes.get("email") if isinstance(attributes, dict) else None
            marketing = _dig(attributes, "subscriptions", "email", "marketing")
            if not isinstance(email, str) or not isinstance(marketing, dict):
                continue
            reasons = {
                item.get("reason") for item in marketing.get("suppression") or [] if isinstance(item, dict)
            }
            if marketing.get("consent") == "UNSUBSCRIBED" or reasons & WITHDRAWN:
                withdrawn[email.strip().lower()] = _moment(marketing.get("last_updated"))
        return withdrawn

    def _send(
        self, list_id: str, group: list[tuple[int, str, str]], historical: bool, events: SubscriptionEvents
    ) -> int:
        while group:
            self._pace.wait()
            body = subscription_body(
                list_id, [(email, consent) for _, email, consent in group], historical=historical
            )
            try:
                self.client.post(SUBSCRIPTIONS_PATH, body)
            except KlaviyoApiError as error:
                group = self._without_refused(group, error, events)
                continue
            return len(group)
        return 0

    @staticmethod
    def _without_refused(
        group: list[tuple[int, str, str]], error: KlaviyoApiError, events: SubscriptionEvents
    ) -> list[tuple[int, str, str]]:
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
