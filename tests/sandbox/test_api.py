"""The sandbox answers like Klaviyo: shapes from the spec, strict on input, asynchronous jobs.

Every response in these tests is also checked against the spec's response schema by
the ``sandbox`` fixture when the test ends.
"""

from __future__ import annotations

import datetime
import json
import time
from urllib.parse import quote

import pytest
import requests
from support import API_KEY, LIST_ID

HEADERS = {"Authorization": f"Klaviyo-API-Key {API_KEY}", "revision": "2026-07-15"}
WRITE = {**HEADERS, "Content-Type": "application/vnd.api+json"}


def call(server, method, path, body=None, headers=None, **kwargs) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
    return requests.request(
        method,
        server.url + path,
        data=data,
        headers=WRITE if headers is None else headers,
        timeout=10,
        **kwargs,
    )


def profile(email=None, **attributes):
    if email is not None:
        attributes["email"] = email
    return {"type": "profile", "attributes": attributes}


def job(*profiles, list_id=LIST_ID):
    return {
        "data": {
            "type": "profile-bulk-import-job",
            "attributes": {"profiles": {"data": list(profiles)}},
            "relationships": {"lists": {"data": [{"type": "list", "id": list_id}]}},
        }
    }


def post_job(server, *profiles, list_id=LIST_ID) -> requests.Response:
    return call(server, "POST", "/api/profile-bulk-import-jobs", job(*profiles, list_id=list_id))


def wait_for_job(server, job_id, timeout=5.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        answer = call(server, "GET", f"/api/profile-bulk-import-jobs/{job_id}/").json()
        if answer["data"]["attributes"]["status"] == "complete":
            return answer
        time.sleep(0.02)
    raise AssertionError("job did not complete")


def only_error(response: requests.Response) -> dict:
    errors = response.json()["errors"]
    assert errors, response.text
    for error in errors:
        assert {"id", "status", "code", "title", "detail", "source"} <= set(error)
    return errors[0]


# Lists


@pytest.mark.parametrize("path", [f"/api/lists/{LIST_ID}", f"/api/lists/{LIST_ID}/"])
def test_get_list_with_and_without_trailing_slash(sandbox, path):
    answer = call(sandbox, "GET", path)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/vnd.api+json"
    assert answer.json()["data"]["id"] == LIST_ID
    assert answer.json()["data"]["attributes"]["name"] == "Sandbox list TeStLs"


def test_unknown_list_is_404(sandbox):
    answer = call(sandbox, "GET", "/api/lists/NOPE")
    assert answer.status_code == 404
    assert only_error(answer)["code"] == "not_found"


def test_profile_count_on_request(sandbox):
    post_job(sandbox, profile("a@example.com"))
    time.sleep(0.1)
    answer = call(sandbox, "GET", f"/api/lists/{LIST_ID}?additional-fields[list]=profile_count")
    assert answer.json()["data"]["attributes"]["profile_count"] == 1


# Bulk import jobs


def test_bulk_import_lifecycle(sandbox_factory):
    server = sandbox_factory(job_delay=0.3)
    created = post_job(server, profile("a@example.com", first_name="A"))
    assert created.status_code == 202
    attributes = created.json()["data"]["attributes"]
    assert attributes["status"] == "queued"
    assert attributes["total_count"] == 1
    job_id = created.json()["data"]["id"]
    time.sleep(0.16)
    assert call(server, "GET", f"/api/profile-bulk-import-jobs/{job_id}").json()["data"]["attributes"][
        "status"
    ] == ("processing")
    done = wait_for_job(server, job_id)["data"]["attributes"]
    assert (done["completed_count"], done["failed_count"]) == (1, 0)
    assert done["completed_at"]
    members = call(server, "GET", f"/api/lists/{LIST_ID}/profiles").json()["data"]
    assert [(m["attributes"]["email"], m["attributes"]["first_name"]) for m in members] == [
        ("a@example.com", "A")
    ]


def test_members_appear_only_when_the_job_completes(sandbox_factory):
    server = sandbox_factory(job_delay=0.5)
    post_job(server, profile("a@example.com"))
    assert call(server, "GET", f"/api/lists/{LIST_ID}/profiles").json()["data"] == []


def test_import_errors_for_profiles_failing_in_processing(sandbox_factory):
    server = sandbox_factory(fail_domains=("bounce.example.net",))
    profiles = [profile(f"f{i}@bounce.example.net") for i in range(3)] + [profile("ok@example.com")]
    job_id = post_job(server, *profiles).json()["data"]["id"]
    done = wait_for_job(server, job_id)["data"]["attributes"]
    assert (done["total_count"], done["completed_count"], done["failed_count"]) == (4, 1, 3)
    page = call(server, "GET", f"/api/profile-bulk-import-jobs/{job_id}/import-errors?page[size]=2").json()
    assert len(page["data"]) == 2
    assert page["data"][0]["attributes"]["source"]["pointer"] == "/data/attributes/profiles/data/0"
    assert page["data"][0]["attributes"]["original_payload"]["attributes"]["email"] == "f0@bounce.example.net"
    rest = requests.get(page["links"]["next"], headers=HEADERS, timeout=10).json()
    assert len(rest["data"]) == 1
    assert "next" not in rest["links"]


def test_second_import_upserts_instead_of_duplicating(sandbox):
    first = post_job(sandbox, profile("a@example.com", first_name="A"))
    wait_for_job(sandbox, first.json()["data"]["id"])
    second = post_job(sandbox, profile("A@EXAMPLE.com", last_name="Z", properties={"plan": "pro"}))
    wait_for_job(sandbox, second.json()["data"]["id"])
    [member] = call(sandbox, "GET", f"/api/lists/{LIST_ID}/profiles").json()["data"]
    assert member["attributes"]["first_name"] == "A"
    assert member["attributes"]["last_name"] == "Z"
    assert member["attributes"]["properties"] == {"plan": "pro"}


def test_list_members_paginate_with_cursor(sandbox):
    answer = post_job(sandbox, *(profile(f"p{i}@example.com") for i in range(7)))
    wait_for_job(sandbox, answer.json()["data"]["id"])
    seen, url = [], f"{sandbox.url}/api/lists/{LIST_ID}/profiles?page[size]=3"
    while url:
        page = requests.get(url, headers=HEADERS, timeout=10).json()
        seen += [m["attributes"]["email"] for m in page["data"]]
        url = page["links"].get("next")
    assert seen == [f"p{i}@example.com" for i in range(7)]


@pytest.mark.parametrize("size", ["0", "101", "abc"])
def test_page_size_is_bounded(sandbox, size):
    answer = call(sandbox, "GET", f"/api/lists/{LIST_ID}/profiles?page[size]={size}")
    assert answer.status_code == 400
    assert only_error(answer)["source"] == {"parameter": "page[size]"}


# Strictness


def test_missing_key_is_401(sandbox):
    answer = call(sandbox, "GET", f"/api/lists/{LIST_ID}", headers={"revision": "2026-07-15"})
    assert answer.status_code == 401
    assert only_error(answer)["code"] == "not_authenticated"


def test_wrong_key_is_401(sandbox):
    headers = {**HEADERS, "Authorization": "Klaviyo-API-Key pk_wrong"}
    answer = call(sandbox, "GET", f"/api/lists/{LIST_ID}", headers=headers)
    assert answer.status_code == 401
    assert only_error(answer)["code"] == "authentication_failed"


def test_missing_revision_is_400(sandbox):
    headers = {"Authorization": HEADERS["Authorization"]}
    answer = call(sandbox, "GET", f"/api/lists/{LIST_ID}", headers=headers)
    assert answer.status_code == 400
    assert only_error(answer)["source"] == {"parameter": "revision"}


def test_write_without_json_api_content_type_is_415(sandbox):
    headers = {**HEADERS, "Content-Type": "application/json"}
    answer = call(
        sandbox, "POST", "/api/profile-bulk-import-jobs", job(profile("a@example.com")), headers=headers
    )
    assert answer.status_code == 415


def test_body_that_is_not_json_is_400(sandbox):
    answer = call(sandbox, "POST", "/api/profile-bulk-import-jobs", b"{not json")
    assert answer.status_code == 400
    assert only_error(answer)["code"] == "parse_error"


def test_unknown_attribute_is_400_with_a_pointer_at_it(sandbox):
    answer = post_job(sandbox, profile("a@example.com"), profile("b@example.com", age=3))
    assert answer.status_code == 400
    error = only_error(answer)
    assert error["source"]["pointer"] == "/data/attributes/profiles/data/1/attributes/age"
    assert "'age' is not a valid field" in error["detail"]


def test_request_validation_can_be_turned_off_for_benchmarks(sandbox):
    sandbox.settings.validate_requests = False
    answer = post_job(sandbox, profile("a@example.com"), profile("b@example.com", age=3))
    assert answer.status_code == 202
    assert call(sandbox, "POST", "/api/profile-bulk-import-jobs", b"{not json").status_code == 400
    sandbox.settings.validate_requests = True


def test_wrong_type_is_400(sandbox):
    answer = post_job(sandbox, profile("a@example.com", first_name=5))
    assert only_error(answer)["source"]["pointer"] == "/data/attributes/profiles/data/0/attributes/first_name"


def test_missing_required_member_is_400(sandbox):
    answer = call(
        sandbox, "POST", "/api/profile-bulk-import-jobs", {"data": {"type": "profile-bulk-import-job"}}
    )
    assert answer.status_code == 400
    assert only_error(answer)["source"]["pointer"] == "/data"


@pytest.mark.parametrize(
    ("bad", "pointer_end", "words"),
    [
        (profile("not-an-email"), "/attributes/email", "Invalid email"),
        (profile("a@example.com", phone_number="555-0100"), "/attributes/phone_number", "Invalid phone"),
        (profile(first_name="Nobody"), "/attributes", "identifier"),
    ],
)
def test_one_invalid_profile_fails_the_whole_request(sandbox, bad, pointer_end, words):
    answer = post_job(sandbox, profile("ok@example.com"), bad)
    assert answer.status_code == 400
    error = only_error(answer)
    assert error["source"]["pointer"] == f"/data/attributes/profiles/data/1{pointer_end}"
    assert words in error["detail"]
    assert [r for r in sandbox.recorded if r.status == 202] == []


def test_every_invalid_profile_is_named(sandbox):
    answer = post_job(sandbox, profile("bad1"), profile("ok@example.com"), profile("bad2"))
    pointers = [error["source"]["pointer"] for error in answer.json()["errors"]]
    assert pointers == [
        "/data/attributes/profiles/data/0/attributes/email",
        "/data/attributes/profiles/data/2/attributes/email",
    ]


def test_more_than_10000_profiles_is_400(sandbox):
    answer = post_job(sandbox, *(profile(f"p{i}@example.com") for i in range(10_001)))
    assert answer.status_code == 400
    assert only_error(answer)["source"]["pointer"] == "/data/attributes/profiles/data"


def test_body_over_5_mb_is_413(sandbox):
    profiles = [profile(f"p{i}@example.com", properties={"blob": "x" * 90_000}) for i in range(60)]
    answer = post_job(sandbox, *profiles)
    assert answer.status_code == 413


def test_profile_over_100_kb_is_400(sandbox):
    big = profile("big@example.com", properties={"blob": "x" * 100_000})
    answer = post_job(sandbox, profile("ok@example.com"), big)
    assert answer.status_code == 400
    assert only_error(answer)["source"]["pointer"] == "/data/attributes/profiles/data/1"


def test_job_into_unknown_list_is_404(sandbox):
    answer = post_job(sandbox, profile("a@example.com"), list_id="NOPE")
    assert answer.status_code == 404
    assert only_error(answer)["source"]["pointer"] == "/data/relationships/lists/data/0/id"


def test_unknown_route_and_wrong_method(sandbox):
    assert call(sandbox, "GET", "/api/nothing-here").status_code == 404
    assert call(sandbox, "PUT", f"/api/lists/{LIST_ID}").status_code == 405


# Relationships, single profiles, subscriptions


def test_add_and_remove_list_members(sandbox):
    created = call(sandbox, "POST", "/api/profile-import", {"data": profile("solo@example.com")})
    assert created.status_code == 201
    profile_id = created.json()["data"]["id"]
    body = {"data": [{"type": "profile", "id": profile_id}]}
    assert call(sandbox, "POST", f"/api/lists/{LIST_ID}/relationships/profiles/", body).status_code == 204
    assert len(call(sandbox, "GET", f"/api/lists/{LIST_ID}/profiles").json()["data"]) == 1
    assert call(sandbox, "DELETE", f"/api/lists/{LIST_ID}/relationships/profiles", body).status_code == 204
    assert call(sandbox, "GET", f"/api/lists/{LIST_ID}/profiles").json()["data"] == []


def test_relationship_writes_are_bounded_and_need_known_profiles(sandbox):
    too_many = {"data": [{"type": "profile", "id": f"P{i}"} for i in range(1001)]}
    assert call(sandbox, "POST", f"/api/lists/{LIST_ID}/relationships/profiles", too_many).status_code == 400
    unknown = {"data": [{"type": "profile", "id": "NOPE"}]}
    assert call(sandbox, "POST", f"/api/lists/{LIST_ID}/relationships/profiles", unknown).status_code == 404


def test_profile_import_creates_then_updates(sandbox):
    assert call(sandbox, "POST", "/api/profile-import", {"data": profile("a@example.com")}).status_code == 201
    again = call(sandbox, "POST", "/api/profile-import", {"data": profile("a@example.com", first_name="B")})
    assert again.status_code == 200
    assert again.json()["data"]["attributes"]["first_name"] == "B"


def test_subscription_job_adds_profiles_to_the_list(sandbox):
    body = {
        "data": {
            "type": "profile-subscription-bulk-create-job",
            "attributes": {
                "profiles": {
                    "data": [
                        {
                            "type": "profile",
                            "attributes": {
                                "email": "sub@example.com",
                                "subscriptions": {"email": {"marketing": {"consent": "SUBSCRIBED"}}},
                            },
                        }
                    ]
                }
            },
            "relationships": {"list": {"data": {"type": "list", "id": LIST_ID}}},
        }
    }
    answer = call(sandbox, "POST", "/api/profile-subscription-bulk-create-jobs", body)
    assert answer.status_code == 202, answer.text
    assert answer.content == b""
    emails = [
        m["attributes"]["email"]
        for m in call(sandbox, "GET", f"/api/lists/{LIST_ID}/profiles").json()["data"]
    ]
    assert emails == ["sub@example.com"]


def test_state_survives_a_restart_with_a_file_database(sandbox_factory, tmp_path):
    db = str(tmp_path / "sandbox.db")
    first = sandbox_factory(db=db)
    wait_for_job(
        first,
        post_job(first, profile("a@example.com")).json()["data"]["id"],
    )
    first.stop()
    second = sandbox_factory(db=db)
    wait_for_job(
        second,
        post_job(second, profile("A@example.com", first_name="Z")).json()["data"]["id"],
    )
    members = call(second, "GET", f"/api/lists/{LIST_ID}/profiles").json()["data"]
    assert [(m["attributes"]["email"], m["attributes"]["first_name"]) for m in members] == [
        ("A@example.com", "Z")
    ]


def test_jobs_unfinished_when_the_sandbox_stopped_are_cancelled(sandbox_factory, tmp_path):
    db = str(tmp_path / "sandbox.db")
    first = sandbox_factory(db=db, job_delay=60)
    job_id = post_job(first, profile("a@example.com")).json()["data"]["id"]
    first.stop()
    second = sandbox_factory(db=db)
    attributes = call(second, "GET", f"/api/profile-bulk-import-jobs/{job_id}").json()["data"]["attributes"]
    assert attributes["status"] == "cancelled"
    assert call(second, "GET", f"/api/lists/{LIST_ID}/profiles").json()["data"] == []


def test_absurd_or_deeply_nested_bodies_are_refused_not_crashed_on(sandbox):
    import socket

    deep = b"[" * 100_000 + b"]" * 100_000
    answer = requests.post(
        f"{sandbox.url}/api/profile-bulk-import-jobs",
        data=deep,
        headers={**HEADERS, "Content-Type": "application/vnd.api+json"},
        timeout=10,
    )
    assert answer.status_code == 400
    with socket.create_connection(("127.0.0.1", sandbox.server_address[1])) as connection:
        connection.sendall(
            b"POST /api/profile-bulk-import-jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n"
        )
        status_line = connection.recv(1024).split(b"\r\n", 1)[0]
    assert status_line.startswith(
        b"HTTP/1.1 413 "
    )  # "Request Entity Too Large"; 3.13 says "Content Too Large"


def subscription(*people, historical=None, list_id=LIST_ID):
    """A subscription request for ``(email, consented_at)`` pairs (None: no date)."""
    profiles = []
    for email, consented_at in people:
        marketing = {"consent": "SUBSCRIBED"}
        if consented_at is not None:
            marketing["consented_at"] = consented_at
        profiles.append(
            {
                "type": "profile",
                "attributes": {"email": email, "subscriptions": {"email": {"marketing": marketing}}},
            }
        )
    attributes = {"profiles": {"data": profiles}}
    if historical is not None:
        attributes["historical_import"] = historical
    return {
        "data": {
            "type": "profile-subscription-bulk-create-job",
            "attributes": attributes,
            "relationships": {"list": {"data": {"type": "list", "id": list_id}}},
        }
    }


@pytest.mark.parametrize(
    ("body", "pointer", "words"),
    [
        (
            subscription(("a@example.com", "2024-01-01T00:00:00+00:00")),
            "/data/attributes/profiles/data/0/attributes/subscriptions/email/marketing/consented_at",
            "consented_at may only be given when historical_import is true",
        ),
        (
            subscription(
                ("a@example.com", "2024-01-01T00:00:00+00:00"), ("b@example.com", None), historical=True
            ),
            "/data/attributes/profiles/data/1/attributes/subscriptions/email/marketing/consented_at",
            "consented_at is required for every profile when historical_import is true",
        ),
        (
            subscription(("a@example.com", "2999-01-01T00:00:00+00:00"), historical=True),
            "/data/attributes/profiles/data/0/attributes/subscriptions/email/marketing/consented_at",
            "must be in the past",
        ),
        (
            subscription(*[(f"p{i}@example.com", None) for i in range(1001)]),
            "/data/attributes/profiles/data",
            "A maximum of 1000 profiles",
        ),
    ],
)
def test_subscriptions_are_refused_as_klaviyo_documents(sandbox, body, pointer, words):
    answer = call(sandbox, "POST", "/api/profile-subscription-bulk-create-jobs", body)
    assert answer.status_code == 400
    error = answer.json()["errors"][0]
    assert error["source"]["pointer"] == pointer
    assert words in error["detail"]
    assert sandbox.store.members(LIST_ID) == []


def test_a_historical_subscription_records_its_consent_date(sandbox):
    body = subscription(("old@example.com", "2020-02-02T02:02:02Z"), historical=True)
    assert call(sandbox, "POST", "/api/profile-subscription-bulk-create-jobs", body).status_code == 202
    [member] = sandbox.store.members(LIST_ID)
    assert (
        member["email_marketing"].items()
        >= {
            "consent": "SUBSCRIBED",
            "consented_at": "2020-02-02T02:02:02Z",
            "historical_import": True,
        }.items()
    )


def test_suppressions_carry_their_own_timestamps_and_a_subscription_lifts_only_some(sandbox):
    """As Klaviyo documents: subscribing removes UNSUBSCRIBE, SPAM_COMPLAINT and USER_SUPPRESSED;
    a HARD_BOUNCE and list suppressions stay. Each suppression keeps its own timestamp."""
    utc = datetime.timezone.utc
    sandbox.store.unsubscribe("a@example.com", datetime.datetime(2021, 1, 1, tzinfo=utc))
    sandbox.store.suppress("a@example.com", "SPAM_COMPLAINT", datetime.datetime(2022, 1, 1, tzinfo=utc))
    sandbox.store.suppress("a@example.com", "HARD_BOUNCE", datetime.datetime(2023, 1, 1, tzinfo=utc))
    sandbox.store.suppress(
        "a@example.com", "USER_SUPPRESSED", datetime.datetime(2024, 1, 1, tzinfo=utc), "OTHER"
    )

    def marketing():
        path = f"/api/lists/{LIST_ID}/profiles?additional-fields[profile]=subscriptions&page[size]=100"
        [member] = call(sandbox, "GET", path).json()["data"]
        return member["attributes"]["subscriptions"]["email"]["marketing"]

    sandbox.store.add_members(LIST_ID, [sandbox.store.upsert_profile({"email": "a@example.com"})[0]])
    before = marketing()
    assert before["last_updated"] == "2021-01-01T00:00:00+00:00"
    assert before["suppression"] == [
        {"reason": "UNSUBSCRIBE", "timestamp": "2021-01-01T00:00:00+00:00"},
        {"reason": "SPAM_COMPLAINT", "timestamp": "2022-01-01T00:00:00+00:00"},
        {"reason": "HARD_BOUNCE", "timestamp": "2023-01-01T00:00:00+00:00"},
    ]
    list_suppression = {
        "list_id": "OTHER",
        "reason": "USER_SUPPRESSED",
        "timestamp": "2024-01-01T00:00:00+00:00",
    }
    assert before["list_suppressions"] == [list_suppression]
    body = subscription(("a@example.com", None))
    assert call(sandbox, "POST", "/api/profile-subscription-bulk-create-jobs", body).status_code == 202
    after = marketing()
    assert after["consent"] == "SUBSCRIBED"
    assert after["suppression"] == [{"reason": "HARD_BOUNCE", "timestamp": "2023-01-01T00:00:00+00:00"}]
    assert after["can_receive_email_marketing"] is False
    assert after["list_suppressions"] == [list_suppression]


def test_a_page_limit_makes_pages_shorter_than_asked_for(sandbox_factory):
    server = sandbox_factory(page_limit=2)
    server.store.add_members(
        LIST_ID, [server.store.upsert_profile({"email": f"p{i}@example.com"})[0] for i in range(3)]
    )
    emails = ",".join(f'"p{i}@example.com"' for i in range(3))
    path = f"/api/lists/{LIST_ID}/profiles?filter=any(email,[{emails}])&page[size]=100"
    first = call(server, "GET", path).json()
    assert len(first["data"]) == 2
    cursor = first["links"]["next"].split("page[cursor]=")[1]
    second = call(server, "GET", f"{path}&page[cursor]={cursor}").json()
    assert [m["attributes"]["email"] for m in second["data"]] == ["p2@example.com"]
    assert "next" not in second["links"]


def test_list_members_honour_sparse_fields(sandbox):
    call(sandbox, "POST", "/api/profile-subscription-bulk-create-jobs", subscription(("a@example.com", None)))
    page = call(sandbox, "GET", f"/api/lists/{LIST_ID}/profiles?fields[profile]=email&page[size]=100").json()
    assert set(page["data"][0]["attributes"]) == {"email", "joined_group_at"}


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("bogus=1", "'bogus' is not a valid query parameter."),
        ("fields[profile-bulk-import-job]=status", "The Klaviyo sandbox does not implement"),
        ("sort=status", "sort must be created_at or -created_at."),
        ("filter=equals(status,%22done%22)", "filter must be equals(status"),
    ],
)
def test_query_parameters_are_used_or_refused_never_ignored(sandbox, query, words):
    answer = call(sandbox, "GET", f"/api/profile-bulk-import-jobs?{query}", headers=HEADERS)
    assert answer.status_code == 400
    assert words in answer.json()["errors"][0]["detail"]


def test_list_members_filter_by_when_they_joined_across_pages(sandbox):
    first = post_job(sandbox, *(profile(f"early{i}@example.com") for i in range(3)))
    wait_for_job(sandbox, first.json()["data"]["id"])
    time.sleep(0.01)
    since = quote(datetime.datetime.now(datetime.timezone.utc).isoformat())  # "+" is a space in a URL
    second = post_job(sandbox, *(profile(f"late{i}@example.com") for i in range(5)))
    wait_for_job(sandbox, second.json()["data"]["id"])
    seen = []
    url = (
        f"{sandbox.url}/api/lists/{LIST_ID}/profiles?page[size]=2&sort=joined_group_at"
        f"&filter=greater-or-equal(joined_group_at,{since})"
    )
    while url:
        page = requests.get(url, headers=HEADERS, timeout=10).json()
        seen += [m["attributes"]["email"] for m in page["data"]]
        url = page["links"].get("next")
    assert seen == [f"late{i}@example.com" for i in range(5)]
    later = call(
        sandbox,
        "GET",
        f"/api/lists/{LIST_ID}/profiles?filter=greater-than(joined_group_at,2999-01-01T00:00:00Z)",
    )
    assert later.json()["data"] == []
    wrong = call(
        sandbox, "GET", f"/api/lists/{LIST_ID}/profiles?filter=greater-than(joined_group_at,yesterday)"
    )
    assert wrong.status_code == 400
    assert call(sandbox, "GET", f"/api/lists/{LIST_ID}/profiles?sort=-joined_group_at").status_code == 400


def test_profiles_are_read_by_id_page_by_page(sandbox):
    answer = post_job(sandbox, *(profile(f"by-id{i}@example.com") for i in range(5)))
    wait_for_job(sandbox, answer.json()["data"]["id"])
    ids = {
        m["attributes"]["email"]: m["id"]
        for m in call(sandbox, "GET", f"/api/lists/{LIST_ID}/profiles").json()["data"]
    }
    wanted = [
        ids["by-id3@example.com"],
        "01NOSUCHPROFILE0000000000",
        ids["by-id0@example.com"],
        ids["by-id1@example.com"],
    ]
    names = ",".join(f'"{profile_id}"' for profile_id in wanted)
    seen, url = [], f"{sandbox.url}/api/profiles?page[size]=2&fields[profile]=email&filter=any(id,[{names}])"
    while url:
        page = requests.get(url, headers=HEADERS, timeout=10).json()
        seen += [(m["id"], m["attributes"]) for m in page["data"]]
        url = page["links"].get("next")
    assert seen == [(ids[f"by-id{i}@example.com"], {"email": f"by-id{i}@example.com"}) for i in (3, 0, 1)]
    assert call(sandbox, "GET", "/api/profiles").status_code == 400
