"""Subscriptions: request bodies valid against the spec, at most 1,000 a request, refusals reported;
the consent read before them, whatever Klaviyo answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support import API_KEY, LIST_ID

from klaviyo_sandbox import spec
from target_klaviyo.delivery.subscriptions import (
    Subscriber,
    requests_for,
    subscription_body,
)
from target_klaviyo.errors import KlaviyoError
from target_klaviyo.klaviyo.endpoints import SUBSCRIBE
from target_klaviyo.klaviyo.http import KlaviyoClient
from target_klaviyo.records.consent import UNDATED, Consent
from target_klaviyo.records.profile import Reject


def dated(moment: str) -> Consent:
    return Consent(moment, moment)


class Refusals:
    def __init__(self) -> None:
        self.refused: list[tuple[int, Reject]] = []

    def subscription_refused(self, position: int, reject: Reject) -> None:
        self.refused.append((position, reject))


def test_bodies_are_valid_against_the_spec():
    validator = spec.request_validator(SUBSCRIBE.path, "post")
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
    people = [
        (i, f"p{i}@b.co", dated("2024-01-01T00:00:00+00:00") if i % 3 else UNDATED) for i in range(2500)
    ]
    groups = list(requests_for(people))
    assert all(len(group) <= 1000 for _, group in groups)
    assert all(all(bool(person[2].at) is historical for person in group) for historical, group in groups)
    assert sorted(person[0] for _, group in groups for person in group) == list(range(2500))


def test_a_profile_klaviyo_refuses_to_subscribe_is_reported_and_the_rest_subscribed(sandbox):
    client = KlaviyoClient(sandbox.url, API_KEY, "2026-07-15")
    refusals = Refusals()
    people = [
        (10, "past@b.co", dated("2024-01-01T00:00:00+00:00")),
        (
            11,
            "future@b.co",
            dated("2999-01-01T00:00:00+00:00"),
        ),  # the sandbox refuses this one, as Klaviyo does
        (12, "undated@b.co", UNDATED),
        (13, "not-a-member@b.co", UNDATED),  # its import did not make it a member: not checked
    ]
    ids = [sandbox.store.upsert_profile({"email": email})[0] for _, email, _ in people[:3]]
    sandbox.store.add_members(LIST_ID, ids)
    assert Subscriber(client).subscribe(LIST_ID, people, refusals) == 2
    [(position, reject), (unchecked, not_checked)] = refusals.refused
    assert (unchecked, not_checked.reason) == (13, "consent_not_checked")
    assert position == 11
    assert reject.reason == "subscription_refused"
    assert "must be in the past" in reject.detail
    consent = {row["attributes"]["email"]: row["email_marketing"] for row in sandbox.store.members(LIST_ID)}
    assert {email for email, marketing in consent.items() if marketing} == {"past@b.co", "undated@b.co"}
    client.close()


# The consent read, against a client that answers whatever a test gives it (no server).

LATER = "2024-06-01T00:00:00+00:00"


class FakeClient:
    """Answers each GET with the next of ``pages``, and records every request."""

    def __init__(self, *pages: Any) -> None:
        self.pages = list(pages)
        self.gets: list[dict[str, Any]] = []
        self.posts: list[dict[str, Any]] = []

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        self.gets.append(dict(params or {}))
        return self.pages.pop(0) if len(self.pages) > 1 else self.pages[0]

    def post(self, path: str, body: bytes) -> None:
        self.posts.append(json.loads(body))


def member(email: str, **marketing: Any) -> dict[str, Any]:
    consent = {"can_receive_email_marketing": False, "consent": "NEVER_SUBSCRIBED", **marketing}
    return {
        "type": "profile",
        "id": email,
        "attributes": {"email": email, "subscriptions": {"email": {"marketing": consent}}},
    }


def page(*members: Any, cursor: str | None = None) -> dict[str, Any]:
    links = {"self": "https://a.klaviyo.com/api/lists/L/profiles/"}
    if cursor is not None:
        links["next"] = (
            f"https://a.klaviyo.com/api/lists/L/profiles/?page%5Bsize%5D=100&page%5Bcursor%5D={cursor}"
        )
    return {"data": list(members), "links": links}


def subscribed(client: FakeClient, people: list[tuple[int, str, Consent]]) -> tuple[list[str], list[int]]:
    """Who was sent to Klaviyo, and the positions refused as unsubscribed in Klaviyo."""
    refusals = Refusals()
    Subscriber(client).subscribe(LIST_ID, people, refusals)  # type: ignore[arg-type]
    assert {reject.reason for _, reject in refusals.refused} <= {"unsubscribed_in_klaviyo"}
    sent = [
        p["attributes"]["email"]
        for post in client.posts
        for p in post["data"]["attributes"]["profiles"]["data"]
    ]
    return sent, [position for position, _ in refusals.refused]


def test_the_consent_read_follows_every_page_with_the_same_filter():
    left = member(
        "left@b.co", consent="UNSUBSCRIBED", suppression=[{"reason": "UNSUBSCRIBE", "timestamp": LATER}]
    )
    client = FakeClient(page(member("a@b.co"), cursor="c1"), page(left))
    people = [
        (0, "a@b.co", dated("2024-01-01T00:00:00+00:00")),
        (1, "left@b.co", dated("2024-01-01T00:00:00+00:00")),
    ]
    assert subscribed(client, people) == (["a@b.co"], [1])
    first, second = client.gets
    assert "page[cursor]" not in first
    assert second == {**first, "page[cursor]": "c1"}


WITHDRAWN_AT_LATER = [
    {"consent": "UNSUBSCRIBED", "suppression": [{"reason": "UNSUBSCRIBE", "timestamp": LATER}]},
    {"consent": "SUBSCRIBED", "suppression": [{"reason": "SPAM_COMPLAINT", "timestamp": LATER}]},
    {
        "consent": "SUBSCRIBED",
        "suppression": [{"reason": "USER_SUPPRESSED", "timestamp": "2024-06-01T00:00:00"}],
    },
    {"consent": "SUBSCRIBED", "suppression": [{"reason": "A_REASON_TO_COME", "timestamp": LATER}]},
    # A reason that is not a text (found by the seventh hostile review): one the spec does not name.
    {"consent": "SUBSCRIBED", "suppression": [{"reason": ["HARD_BOUNCE"], "timestamp": LATER}]},
    {"consent": "SUBSCRIBED", "suppression": [{"reason": {"code": "HARD_BOUNCE"}, "timestamp": LATER}]},
    {
        "consent": "SUBSCRIBED",
        "list_suppressions": [{"list_id": "OTHER", "reason": "USER_SUPPRESSED", "timestamp": LATER}],
    },
    # The suppression's own moment counts, not last_updated; the latest of several.
    {
        "consent": "UNSUBSCRIBED",
        "last_updated": "2023-01-01T00:00:00+00:00",
        "suppression": [
            {"reason": "UNSUBSCRIBE", "timestamp": "2023-01-01T00:00:00+00:00"},
            {"reason": "SPAM_COMPLAINT", "timestamp": LATER},
        ],
    },
    # Unsubscribed without a suppression record: its own timestamps.
    {"consent": "UNSUBSCRIBED", "consent_timestamp": LATER, "suppression": None},
    {"consent": "UNSUBSCRIBED", "consent_timestamp": "2023-01-01T00:00:00+00:00", "last_updated": LATER},
]


@pytest.mark.parametrize("marketing", WITHDRAWN_AT_LATER)
def test_a_withdrawal_stands_against_consent_before_it_and_gives_way_to_consent_after_it(marketing):
    before = [(0, "x@b.co", dated("2024-05-31T23:59:59+00:00"))]
    assert subscribed(FakeClient(page(member("x@b.co", **marketing))), before) == ([], [0])
    after = [(0, "x@b.co", dated("2024-06-01T00:00:01+00:00"))]
    assert subscribed(FakeClient(page(member("x@b.co", **marketing))), after) == (["x@b.co"], [])
    same = [(0, "x@b.co", dated(LATER))]  # strictly later, or not at all
    assert subscribed(FakeClient(page(member("x@b.co", **marketing))), same) == ([], [0])


@pytest.mark.parametrize(
    "marketing",
    [
        {"consent": "UNSUBSCRIBED"},
        {"consent": "UNSUBSCRIBED", "consent_timestamp": None, "last_updated": None, "suppression": []},
        {"consent": "UNSUBSCRIBED", "last_updated": "yesterday"},
        {"consent": "SUBSCRIBED", "suppression": [{"reason": "UNSUBSCRIBE"}]},
        {
            "consent": "SUBSCRIBED",
            "suppression": [{"reason": "UNSUBSCRIBE", "timestamp": "2020-01-01T00:00:00+00:00"}],
            "list_suppressions": [{"list_id": LIST_ID, "reason": "USER_SUPPRESSED", "timestamp": 1700000000}],
        },
    ],
)
def test_a_withdrawal_without_a_readable_moment_is_never_outweighed(marketing):
    people = [(0, "x@b.co", dated("2026-01-01T00:00:00+00:00")), (1, "y@b.co", UNDATED)]
    client = FakeClient(page(member("x@b.co", **marketing), member("y@b.co", **marketing)))
    assert subscribed(client, people) == ([], [0, 1])


def test_a_consent_without_a_moment_to_compare_never_outweighs_a_withdrawal():
    marketing = {
        "consent": "UNSUBSCRIBED",
        "suppression": [{"reason": "UNSUBSCRIBE", "timestamp": "2020-01-01T00:00:00+00:00"}],
    }
    people = [(0, "clamped@b.co", Consent("2026-01-01T00:00:00+00:00", None)), (1, "undated@b.co", UNDATED)]
    client = FakeClient(page(member("clamped@b.co", **marketing), member("undated@b.co", **marketing)))
    assert subscribed(client, people) == ([], [0, 1])


def test_suppressions_a_subscription_leaves_in_place_do_not_stop_it():
    marketing = {
        "consent": "SUBSCRIBED",
        "suppression": [
            {"reason": "HARD_BOUNCE", "timestamp": LATER},
            {"reason": "INVALID_EMAIL", "timestamp": LATER},
        ],
    }
    people = [(0, "x@b.co", UNDATED)]
    assert subscribed(FakeClient(page(member("x@b.co", **marketing))), people) == (["x@b.co"], [])


GOOD = member("x@b.co")


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ("<html>", "no list of profiles"),
        ({"data": {"type": "profile"}}, "no list of profiles"),
        ({"data": ["x@b.co"]}, "a profile that is not an object"),
        ({"data": [{"attributes": "x@b.co"}]}, "a profile without attributes"),
        ({"data": [{"attributes": {"email": None}}]}, "a profile without its email"),
        ({"data": [{"attributes": {"email": "x@b.co"}}]}, "a profile without its subscriptions"),
        (
            {"data": [{"attributes": {"email": "x@b.co", "subscriptions": {"email": []}}}]},
            "without its email subscriptions",
        ),
        (
            {
                "data": [
                    {
                        "attributes": {
                            "email": "x@b.co",
                            "subscriptions": {"email": {"marketing": "SUBSCRIBED"}},
                        }
                    }
                ]
            },
            "without its email marketing consent",
        ),
        ({"data": [member("x@b.co", consent=None)]}, "without its email marketing consent"),
        (
            {"data": [member("x@b.co", suppression="UNSUBSCRIBE")]},
            "a suppression that is not a list of objects",
        ),
        (
            {"data": [member("x@b.co", suppression=["UNSUBSCRIBE"])]},
            "a suppression that is not a list of objects",
        ),
        (
            {"data": [member("x@b.co", list_suppressions={"list_id": "L"})]},
            "a list_suppressions that is not a list",
        ),
        ({"data": [GOOD], "links": "https://a.klaviyo.com/next"}, "links that are not an object"),
        ({"data": [GOOD], "links": {"next": ["c1"]}}, "a next link that is not text"),
        (
            {"data": [GOOD], "links": {"next": "https://a.klaviyo.com/api/lists/L/profiles/"}},
            "without a page[cursor]",
        ),
        (
            {
                "data": [GOOD],
                "links": {"next": "https://[a.klaviyo.com/api/lists/L/profiles?page%5Bcursor%5D=c"},
            },
            "without a page[cursor]",
        ),
        (page(GOOD, cursor="same"), "a next page it had already given"),
    ],
)
def test_an_answer_of_any_other_shape_stops_the_run_with_one_sentence(answer, words):
    client = FakeClient(answer)
    with pytest.raises(KlaviyoError) as raised:
        Subscriber(client).subscribe(LIST_ID, [(0, "x@b.co", UNDATED)], Refusals())  # type: ignore[arg-type]
    message = str(raised.value)
    assert words in message
    assert message.startswith(f"Klaviyo answered GET /api/lists/{LIST_ID}/profiles with ")
    assert message.endswith(".")
    assert ". " not in message
    assert "\n" not in message
    assert client.posts == []


def test_pages_that_never_end_stop_the_run():
    class Endless(FakeClient):
        def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
            self.gets.append(dict(params or {}))
            return page(GOOD, cursor=f"c{len(self.gets)}")

    client = Endless()
    emails = [f"p{i}@b.co" for i in range(3)]
    with pytest.raises(KlaviyoError, match="more pages than the people it was asked about"):
        Subscriber(client).subscribe(LIST_ID, [(i, e, UNDATED) for i, e in enumerate(emails)], Refusals())  # type: ignore[arg-type]
    assert len(client.gets) == 4
    assert client.posts == []
