"""Subscriptions: request bodies valid against the spec, at most 1,000 a request, refusals reported."""

from __future__ import annotations

import json

from support import API_KEY, LIST_ID

from klaviyo_sandbox import spec
from target_klaviyo.client import KlaviyoClient
from target_klaviyo.mapping import Reject
from target_klaviyo.subscriptions import SUBSCRIPTIONS_PATH, Subscriber, requests_for, subscription_body


class Refusals:
    def __init__(self) -> None:
        self.refused: list[tuple[int, Reject]] = []

    def subscription_refused(self, position: int, reject: Reject) -> None:
        self.refused.append((position, reject))


def test_bodies_are_valid_against_the_spec():
    validator = spec.request_validator(SUBSCRIPTIONS_PATH, "post")
    for historical in (True, False):
        body = json.loads(
            subscription_body(LIST_ID, [("a@b.co", "2024-01-01T00:00:00+00:00")], historical=historical)
        )
        assert validator.first_error(body) is None
        marketing = body["data"]["attributes"]["profiles"]["data"][0]["attributes"]["subscriptions"]["email"][
            "marketing"
        ]
        assert ("consented_at" in marketing) is historical
        assert body["data"]["attributes"].get("historical_import", False) is historical


def test_requests_hold_at_most_1000_people_and_never_mix_dated_and_undated_consent():
    people = [(i, f"p{i}@b.co", "2024-01-01T00:00:00+00:00" if i % 3 else "") for i in range(2500)]
    groups = list(requests_for(people))
    assert all(len(group) <= 1000 for _, group in groups)
    assert all(all(bool(person[2]) is historical for person in group) for historical, group in groups)
    assert sorted(person[0] for _, group in groups for person in group) == list(range(2500))


def test_a_profile_klaviyo_refuses_to_subscribe_is_reported_and_the_rest_subscribed(sandbox):
    client = KlaviyoClient(sandbox.url, API_KEY, "2026-07-15")
    refusals = Refusals()
    people = [
        (10, "past@b.co", "2024-01-01T00:00:00+00:00"),
        (11, "future@b.co", "2999-01-01T00:00:00+00:00"),  # the sandbox refuses this one, as Klaviyo does
        (12, "undated@b.co", ""),
    ]
    assert Subscriber(client).subscribe(LIST_ID, people, refusals) == 2
    [(position, reject)] = refusals.refused
    assert position == 11
    assert reject.reason == "subscription_refused"
    assert "must be in the past" in reject.detail
    consent = {row["attributes"]["email"]: row["email_marketing"] for row in sandbox.store.members(LIST_ID)}
    assert set(consent) == {"past@b.co", "undated@b.co"}
    client.close()
