"""consent_property through the real CLI: subscriptions with their consent dates, never without consent."""

from __future__ import annotations

import datetime
import json
import time

from support import assert_requests_match_spec, base_config, members, record, run_cli, schema

CONSENT_SCHEMA = {
    "id": {"type": "integer"},
    "email": {"type": "string"},
    "marketing_ok": {},
    "opted_in_at": {"type": ["string", "null"]},
}


def consent_config(server, tmp_path, **overrides):
    return base_config(
        server,
        consent_property="marketing_ok",
        consented_at_property="opted_in_at",
        report_path=str(tmp_path / "report.json"),
        rejects_path=str(tmp_path / "rejects.jsonl"),
        **overrides,
    )


PEOPLE = [
    record(id=1, email="dated@example.com", marketing_ok=True, opted_in_at="2024-01-02T03:04:05Z"),
    record(id=2, email="when@example.com", marketing_ok="2023-05-06T07:08:09+02:00"),
    record(id=3, email="undated@example.com", marketing_ok=True),
    record(id=4, email="declined@example.com", marketing_ok=False, opted_in_at="2024-01-02T03:04:05Z"),
    record(id=5, email="unknown@example.com", marketing_ok=None),
    record(id=6, email="maybe@example.com", marketing_ok="maybe"),
    record(id=7, email="future@example.com", marketing_ok="2999-01-01T00:00:00Z"),
    record(id=8, email="text@example.com", marketing_ok="TRUE", opted_in_at="2022-12-31"),
]


def test_consent_subscribes_with_its_date_and_never_without_consent(sandbox, tmp_path):
    result = run_cli(
        consent_config(sandbox, tmp_path), [schema(properties=CONSENT_SCHEMA), *PEOPLE], tmp_path
    )
    assert result.returncode == 0, result.stderr
    rows = {row["attributes"]["email"]: row for row in sandbox.store.members("TeStLs", 0, 100)}
    assert set(rows) == {f"{name}@example.com" for name in
                         ("dated", "when", "undated", "declined", "unknown", "maybe", "future", "text")}  # fmt: skip
    consent = {email: row["email_marketing"] for email, row in rows.items()}
    assert (
        consent["dated@example.com"].items()
        >= {
            "consent": "SUBSCRIBED",
            "consented_at": "2024-01-02T03:04:05+00:00",
            "historical_import": True,
        }.items()
    )
    assert consent["when@example.com"]["consented_at"] == "2023-05-06T05:08:09+00:00"
    assert consent["text@example.com"]["consented_at"] == "2022-12-31T00:00:00+00:00"
    assert (
        consent["undated@example.com"].items()
        >= {
            "consent": "SUBSCRIBED",
            "consented_at": None,
            "historical_import": False,
        }.items()
    )
    for email in ("declined", "unknown", "maybe", "future"):
        assert consent[f"{email}@example.com"] is None, email
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["counts"]["subscribed"] == 4
    assert report["counts"]["exported"] == 8
    assert report["counts"]["values_dropped_by_reason"] == {"invalid_consent": 2}
    assert "4 subscribed to email marketing" in result.stderr
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert {(r["reason"], r["profile_exported"], r["record"]["id"]) for r in rejects} == {
        ("invalid_consent", True, 6),
        ("invalid_consent", True, 7),
    }
    assert "is a date in the future" in next(r["detail"] for r in rejects if r["record"]["id"] == 7)
    # One historical request (the three dated consents) and one plain one; all valid against the spec.
    requests = [
        r.body for r in sandbox.recorded if r.spec_path == "/api/profile-subscription-bulk-create-jobs"
    ]
    assert sorted(bool(body["data"]["attributes"].get("historical_import")) for body in requests) == [
        False,
        True,
    ]
    assert_requests_match_spec(sandbox)
    # The consent properties are not also sent as custom properties.
    assert "marketing_ok" not in members(sandbox)["dated@example.com"].get("properties", {})


def test_a_consent_the_import_rejects_is_not_subscribed(sandbox_factory, tmp_path):
    server = sandbox_factory(fail_domains=("failing.example",))
    messages = [
        schema(properties=CONSENT_SCHEMA),
        record(id=1, email="ok@example.com", marketing_ok=True),
        record(id=2, email="no@failing.example", marketing_ok=True),
    ]
    result = run_cli(consent_config(server, tmp_path), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    subscribed = [
        p["attributes"]["email"]
        for r in server.recorded
        if r.spec_path == "/api/profile-subscription-bulk-create-jobs"
        for p in r.body["data"]["attributes"]["profiles"]["data"]
    ]
    assert subscribed == ["ok@example.com"]
    assert json.loads((tmp_path / "report.json").read_text())["counts"]["subscribed"] == 1


def test_a_dry_run_says_who_would_be_subscribed(sandbox, tmp_path):
    result = run_cli(
        consent_config(sandbox, tmp_path, dry_run=True),
        [schema(properties=CONSENT_SCHEMA), *PEOPLE],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "and subscribe 4 of them to email marketing (3 with a consent date, as a historical import)"
        in result.stderr
    )
    assert "4 would be subscribed to email marketing" in result.stderr
    assert [r for r in sandbox.recorded if r.method == "POST"] == []


def test_an_unsubscribe_in_klaviyo_stands_unless_consent_was_given_again_later(sandbox, tmp_path):
    """Subscribing lifts an unsubscribe in Klaviyo, so consent older than it (or undated) is not sent."""
    for email in ("left@example.com", "undated@example.com", "again@example.com"):
        sandbox.store.unsubscribe(email)
    messages = [
        schema(properties=CONSENT_SCHEMA),
        record(id=1, email="left@example.com", marketing_ok="2020-01-01T00:00:00Z"),
        record(id=2, email="undated@example.com", marketing_ok=True),
        record(id=3, email="again@example.com", marketing_ok=_soon()),
        record(id=4, email="new@example.com", marketing_ok=True),
    ]
    result = run_cli(consent_config(sandbox, tmp_path), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    consent = {
        row["attributes"]["email"]: row["email_marketing"] for row in sandbox.store.members("TeStLs", 0, 100)
    }
    assert consent["left@example.com"]["consent"] == "UNSUBSCRIBED"
    assert consent["undated@example.com"]["consent"] == "UNSUBSCRIBED"
    assert consent["again@example.com"]["consent"] == "SUBSCRIBED"
    assert consent["new@example.com"]["consent"] == "SUBSCRIBED"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["counts"]["subscribed"] == 2
    assert report["counts"]["exported"] == 4
    assert report["counts"]["values_dropped_by_reason"] == {"unsubscribed_in_klaviyo": 2}
    assert_requests_match_spec(sandbox)


def _soon() -> str:
    """A consent given just now: after the unsubscribe the test recorded a moment ago."""
    time.sleep(1.1)
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
