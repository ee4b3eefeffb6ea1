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
    # A dropped consent is a value dropped from an exported profile, not a rejected record.
    assert (tmp_path / "rejects.jsonl").read_text() == ""
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
    """A consent given just now, after the unsubscribe the test recorded a moment ago; with a
    zone that is not UTC (a zero offset may be one a tap added to a local time: see records/consent.py)."""
    time.sleep(1.1)
    stockholm = datetime.timezone(datetime.timedelta(hours=1))
    return datetime.datetime.now(stockholm).isoformat(timespec="seconds")


def _consent_in(sandbox) -> dict[str, str | None]:
    """Each member's email marketing consent in the sandbox afterwards (None: never any)."""
    return {
        row["attributes"]["email"]: (row["email_marketing"] or {}).get("consent")
        for row in sandbox.store.members("TeStLs", 0, 10**6)
    }


def _ago(**delta: float) -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(**delta)


def _text(moment: datetime.datetime, *, zone: bool = True) -> str:
    text = moment.isoformat(timespec="seconds")
    return text if zone else text.removesuffix("+00:00")


def test_a_consent_date_without_a_zone_or_ahead_of_the_clock_never_outweighs_an_unsubscribe(
    sandbox, tmp_path
):
    """A time without a zone may be local time anywhere, so it counts from 14 hours earlier (UTC+14);
    a date alone from 10:00 UTC the day before; a date a little ahead of this clock (sent as now)
    does not count at all. Only a consent surely after the unsubscribe is sent."""
    today = datetime.datetime.now(datetime.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    sandbox.store.unsubscribe("naive@example.com", _ago(hours=2))
    sandbox.store.unsubscribe("date@example.com", today - datetime.timedelta(hours=1))
    sandbox.store.unsubscribe("fast-clock@example.com", _ago(minutes=1))
    sandbox.store.unsubscribe("zoned@example.com", _ago(hours=2))
    sandbox.store.unsubscribe("naive-much-later@example.com", _ago(days=3))
    messages = [
        schema(properties=CONSENT_SCHEMA),
        record(id=1, email="naive@example.com", marketing_ok=_text(_ago(hours=1), zone=False)),
        record(id=2, email="date@example.com", marketing_ok=today.date().isoformat()),
        record(id=3, email="fast-clock@example.com", marketing_ok=_text(_ago(minutes=-3))),
        # In a zone that is not UTC: a zero offset may be one a tap added to a local time.
        record(
            id=4,
            email="zoned@example.com",
            marketing_ok=_ago(hours=1)
            .astimezone(datetime.timezone(datetime.timedelta(hours=-5)))
            .isoformat(timespec="seconds"),
        ),
        record(id=5, email="naive-much-later@example.com", marketing_ok=_text(_ago(days=1), zone=False)),
    ]
    result = run_cli(consent_config(sandbox, tmp_path), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert _consent_in(sandbox) == {
        "naive@example.com": "UNSUBSCRIBED",
        "date@example.com": "UNSUBSCRIBED",
        "fast-clock@example.com": "UNSUBSCRIBED",
        "zoned@example.com": "SUBSCRIBED",
        "naive-much-later@example.com": "SUBSCRIBED",
    }
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["counts"]["values_dropped_by_reason"] == {"unsubscribed_in_klaviyo": 3}
    assert_requests_match_spec(sandbox)


def test_epoch_zero_is_a_placeholder_not_a_consent_date(sandbox, tmp_path):
    """1970-01-01T00:00:00Z, however it is written (UTC, local time east of UTC, a date), is refused."""
    messages = [
        schema(properties=CONSENT_SCHEMA),
        record(id=1, email="epoch@example.com", marketing_ok="1970-01-01T00:00:00Z"),
        record(id=2, email="tokyo@example.com", marketing_ok=True, opted_in_at="1970-01-01T09:00:00"),
        record(id=3, email="date@example.com", marketing_ok="1970-01-01"),
    ]
    result = run_cli(consent_config(sandbox, tmp_path), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert _consent_in(sandbox) == dict.fromkeys(
        ("epoch@example.com", "tokyo@example.com", "date@example.com")
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["counts"]["exported"] == 3
    assert report["counts"]["subscribed"] == 0
    assert report["counts"]["values_dropped_by_reason"] == {"invalid_consent": 3}
    assert (tmp_path / "rejects.jsonl").read_text() == "", "values dropped are counted, not rejects"
    assert [r for r in sandbox.recorded if r.spec_path == "/api/profile-subscription-bulk-create-jobs"] == []


def test_the_consent_check_reads_every_page_of_its_answer(sandbox_factory, tmp_path):
    """150 people consent in one job; Klaviyo answers the check 50 a page; one on the second page
    of the first check (100 emails) unsubscribed after the consent in the record."""
    server = sandbox_factory(page_limit=50)
    server.store.unsubscribe("person75@example.com")
    messages = [
        schema(properties=CONSENT_SCHEMA),
        *(
            record(
                id=i, email=f"person{i}@example.com", marketing_ok=True, opted_in_at="2024-01-01T00:00:00Z"
            )
            for i in range(150)
        ),
    ]
    result = run_cli(consent_config(server, tmp_path), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    consent = _consent_in(server)
    assert consent.pop("person75@example.com") == "UNSUBSCRIBED"
    assert set(consent.values()) == {"SUBSCRIBED"}
    assert len(consent) == 149
    reads = [r for r in server.recorded if r.spec_path == "/api/lists/{id}/profiles"]
    assert len(reads) == 3  # two pages for the first 100 emails, one for the other 50
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["counts"]["subscribed"] == 149
    assert report["counts"]["values_dropped_by_reason"] == {"unsubscribed_in_klaviyo": 1}


def test_suppressions_count_from_their_own_timestamps_and_list_suppressions_count(sandbox, tmp_path):
    """The moment of a withdrawal is its suppression record's, whatever last_updated says, and a
    suppression from a list stands as a global one does; consent after all of them is sent."""
    sandbox.store.unsubscribe("complained@example.com", _ago(days=30))
    sandbox.store.suppress("complained@example.com", "SPAM_COMPLAINT", _ago(days=10))
    sandbox.store.suppress("from-a-list@example.com", "USER_SUPPRESSED", _ago(days=10), list_id="TeStLs")
    sandbox.store.suppress("by-hand@example.com", "USER_SUPPRESSED", _ago(days=30))
    sandbox.store.suppress("bounced@example.com", "HARD_BOUNCE", _ago(days=1))
    twenty_days_ago = _text(_ago(days=20))
    messages = [
        schema(properties=CONSENT_SCHEMA),
        record(id=1, email="complained@example.com", marketing_ok=twenty_days_ago),
        record(id=2, email="from-a-list@example.com", marketing_ok=twenty_days_ago),
        record(id=3, email="by-hand@example.com", marketing_ok=twenty_days_ago),
        record(id=4, email="bounced@example.com", marketing_ok=True),
    ]
    result = run_cli(consent_config(sandbox, tmp_path), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert _consent_in(sandbox) == {
        "complained@example.com": "UNSUBSCRIBED",
        "from-a-list@example.com": None,
        "by-hand@example.com": "SUBSCRIBED",
        "bounced@example.com": "SUBSCRIBED",
    }
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["counts"]["values_dropped_by_reason"] == {"unsubscribed_in_klaviyo": 2}
    assert_requests_match_spec(sandbox)


REVIEW_SCHEMA = {
    "id": {"type": "integer"},
    "email": {"type": "string"},
    "ok": {},
    "at": {"type": ["string", "null"]},
}


def test_a_job_whose_failures_name_nobody_subscribes_nobody(sandbox_factory, tmp_path, monkeypatch):
    """Klaviyo may report failed profiles without saying which: a consenting one may be among them
    (not imported, not a member, so its unsubscribe cannot be read), and doubt means no subscription."""
    from klaviyo_sandbox.responses import SandboxApi

    original = SandboxApi._processing_failure

    def unnamed(self, position, profile):
        error = original(self, position, profile)
        error["source"], error["original_payload"] = {}, {}
        return error

    monkeypatch.setattr(SandboxApi, "_processing_failure", unnamed)
    server = sandbox_factory(fail_domains=("bounce.example",))
    yesterday = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    server.store.unsubscribe("alice@bounce.example", at=yesterday)  # not a member of the list
    messages = [
        schema(properties=REVIEW_SCHEMA),
        record(id=1, email="alice@bounce.example", ok=True, at="2020-01-01T00:00:00Z"),
        record(id=2, email="bob@example.com", ok=True, at="2020-01-01T00:00:00Z"),
    ]
    cfg = base_config(
        server, consent_property="ok", consented_at_property="at", report_path=str(tmp_path / "r.json")
    )
    result = run_cli(cfg, messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert [r for r in server.recorded if r.spec_path == "/api/profile-subscription-bulk-create-jobs"] == []
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"]["values_dropped_by_reason"] == {"consent_not_checked": 2}
    profiles = {p["attributes"]["email"]: p for p in server.store.profiles()}
    assert "alice@bounce.example" in profiles
    unsubscribed = [
        row
        for row in server.store.members("TeStLs", 0, 100)
        if row["attributes"]["email"] == "alice@bounce.example"
    ]
    assert all(
        row["email_marketing"]["consent"] != "SUBSCRIBED" for row in unsubscribed if row["email_marketing"]
    )


def test_the_subscription_names_the_address_as_imported_and_non_ascii_case_is_one_person(sandbox, tmp_path):
    yesterday = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    sandbox.store.unsubscribe("JOSÉ@example.com", at=yesterday)
    sandbox.store.add_members("TeStLs", [sandbox.store.upsert_profile({"email": "JOSÉ@example.com"})[0]])
    cfg = base_config(
        sandbox, consent_property="ok", consented_at_property="at", report_path=str(tmp_path / "r.json")
    )
    messages = [
        schema(properties=REVIEW_SCHEMA),
        record(id=1, email="José@example.com", ok=True, at="2020-01-01T00:00:00Z"),
    ]
    result = run_cli(cfg, messages, tmp_path)
    assert result.returncode == 0, result.stderr
    rows = sandbox.store.members("TeStLs", 0, 100)
    assert len(rows) == 1, "one person, whatever the case of its letters"
    assert rows[0]["email_marketing"]["consent"] == "UNSUBSCRIBED", "the later unsubscribe stands"
    assert len(sandbox.store.profiles()) == 1


def test_a_later_record_in_a_later_batch_decides_the_consent(sandbox, tmp_path):
    messages = [schema(properties=REVIEW_SCHEMA), record(id=1, email="z@example.com", ok=True),
                record(id=1, email="z@example.com", ok=False), record(id=2, email="y@example.com", ok=False),
                record(id=2, email="y@example.com", ok=True)]  # fmt: skip
    cfg = base_config(sandbox, consent_property="ok", batch_size_rows=1, report_path=str(tmp_path / "r.json"))
    result = run_cli(cfg, messages, tmp_path)
    assert result.returncode == 0, result.stderr
    consent = {
        row["attributes"]["email"]: row["email_marketing"] for row in sandbox.store.members("TeStLs", 0, 100)
    }
    assert not consent["z@example.com"], "an earlier yes never outvotes a later no"
    assert consent["y@example.com"]["consent"] == "SUBSCRIBED", "the later yes is sent"


def test_a_later_no_on_another_list_or_in_a_rejected_record_decides_too(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=("ViP001", "ChuRN2"))
    cfg = {"api_key": "pk_test_5ecret_never_printed_0123456789", "api_url": server.url,
           "stream_lists": {"vip": "ViP001", "churn": "ChuRN2"}, "consent_property": "ok",
           "max_reject_fraction": 1}  # fmt: skip
    messages = [schema("vip", properties=REVIEW_SCHEMA), schema("churn", properties=REVIEW_SCHEMA),
                record("vip", id=1, email="z@example.com", ok=True),
                record("churn", id=1, email="z@example.com", ok=False),
                record("vip", id=2, email="r@example.com", ok=True),
                record("vip", id="two", email="r@example.com", ok=False)]  # fmt: skip
    result = run_cli(cfg, messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert [r for r in server.recorded if r.spec_path == "/api/profile-subscription-bulk-create-jobs"] == []


def test_a_later_no_the_ledger_finds_unchanged_still_outvotes_an_earlier_yes(sandbox_factory, tmp_path):
    server = sandbox_factory(lists=("ViP001", "ChuRN2"))
    cfg = base_config(server, stream_lists={"vip": "ViP001", "churn": "ChuRN2"}, consent_property="ok",
                      consented_at_property="at")  # fmt: skip
    properties = {**REVIEW_SCHEMA, "at": {"type": ["string", "null"]}}
    churn = [record("churn", id=1, email="x@example.com", ok=False), record("churn", id=2, email="y@example.com", ok=True,
             at="2024-01-02T03:04:05Z")]  # fmt: skip
    first = run_cli(cfg, [schema("churn", properties=properties), *churn], tmp_path)
    assert first.returncode == 0, first.stderr
    # Each person's later record is unchanged for ChuRN2, so not sent; an earlier one asks for ViP001.
    messages = [schema("vip", properties=properties), schema("churn", properties=properties),
                record("vip", id=1, email="x@example.com", ok=True, at="2024-01-02T03:04:05Z"),
                record("vip", id=2, email="y@example.com", ok=True, at="2024-01-02T03:04:05Z"), *churn]  # fmt: skip
    second = run_cli(cfg, messages, tmp_path)
    assert second.returncode == 0, second.stderr
    assert "2 unchanged" in second.stderr
    consent = {
        row["attributes"]["email"]: row["email_marketing"] for row in server.store.members("ViP001", 0, 10)
    }
    assert not consent["x@example.com"], "the later no decides, although the ledger found it unchanged"
    assert consent["y@example.com"]["consent"] == "SUBSCRIBED", "a later yes does not outvote an earlier yes"


def test_a_later_record_the_reader_cannot_read_decides_whatever_the_stream_maps_would_do(sandbox, tmp_path):
    # Found by the eighth hostile review: the email exists only once the stream map has run, which it
    # never does for a record the reader rejects.
    cfg = base_config(sandbox, consent_property="ok", stream_maps={"customers": {"email": "EmailAddr", "EmailAddr": None}},
                      max_reject_fraction=1)  # fmt: skip
    properties = {
        "id": {"type": "integer"},
        "EmailAddr": {"type": "string"},
        "ok": {},
        "n": {"type": "string"},
    }
    messages = [schema(properties=properties), record(id=1, EmailAddr="p@example.com", ok=True),
                record(id=1, EmailAddr="Name <P@Example.com>", ok=False, n="\ud800")]  # fmt: skip
    result = run_cli(cfg, messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "invalid_unicode" in result.stderr
    assert [r for r in sandbox.recorded if r.spec_path == "/api/profile-subscription-bulk-create-jobs"] == []


def test_an_external_id_of_another_email_is_left_out_so_consent_never_crosses_people(sandbox, tmp_path):
    cfg = base_config(sandbox, consent_property="ok", property_mapping={"external_id": "cid"})
    messages = [schema(properties={**REVIEW_SCHEMA, "cid": {"type": "string"}}),
                record(id=1, email="old@example.com", ok=True, cid="C-1"),
                record(id=2, email="new@example.com", ok=False, cid="C-1")]  # fmt: skip
    result = run_cli({**cfg, "report_path": str(tmp_path / "r.json")}, messages, tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"]["values_dropped_by_reason"] == {"duplicate_external_id": 1}
    consent = {
        row["attributes"]["email"]: row["email_marketing"] for row in sandbox.store.members("TeStLs", 0, 100)
    }
    assert not consent["new@example.com"]


def test_a_utc_offset_a_tap_added_to_a_local_time_never_outweighs_an_unsubscribe(sandbox, tmp_path):
    """singer-io tap-postgres writes a timestamp without time zone as isoformat() + '+00:00', and a
    DATE as 'T00:00:00+00:00': such a time may be local (Tokyo's noon is 03:00 UTC)."""
    for email, unsubscribed, consented in (
        ("tokyo@example.com", "2024-03-01T08:00:00+00:00", "2024-03-01T12:00:00+00:00"),
        ("date@example.com", "2024-02-29T20:00:00+00:00", "2024-03-01T00:00:00+00:00"),
    ):
        sandbox.store.unsubscribe(email, datetime.datetime.fromisoformat(unsubscribed))
        sandbox.store.add_members("TeStLs", [sandbox.store.upsert_profile({"email": email})[0]])
        cfg = base_config(sandbox, consent_property="ok", consented_at_property="at")
        messages = [schema(properties=REVIEW_SCHEMA), record(id=1, email=email, ok=True, at=consented)]
        assert run_cli(cfg, messages, tmp_path).returncode == 0
        rows = {
            row["attributes"]["email"]: row["email_marketing"]
            for row in sandbox.store.members("TeStLs", 0, 100)
        }
        assert rows[email]["consent"] == "UNSUBSCRIBED", email
