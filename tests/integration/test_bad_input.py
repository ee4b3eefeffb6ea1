"""Malformed input through the real CLI: one sentence with the line number, or a counted reject.

Never the line's content, never a traceback, and the records around a bad one still go.
"""

from __future__ import annotations

import json
import time

import pytest
from support import base_config, customers, members, record, run_cli_text, schema, singer_text, state

SECRET = "secret.person@example.com"


def report_of(tmp_path) -> dict:
    return json.loads((tmp_path / "report.json").read_text())


def config_for(sandbox, tmp_path, **overrides) -> dict:
    return base_config(
        sandbox,
        report_path=str(tmp_path / "report.json"),
        rejects_path=str(tmp_path / "rejects.jsonl"),
        **overrides,
    )


def raw_record(email: str, raw_value: str) -> str:
    """A RECORD line with ``raw_value`` pasted in as JSON text, as a broken tap might write it."""
    return (
        '{"type": "RECORD", "stream": "customers", "record": {"email": "'
        + email
        + '", "x": '
        + raw_value
        + "}}"
    )


def rejects_of(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]


def test_a_line_that_is_not_json_is_named_by_number_and_never_echoed(sandbox, tmp_path):
    broken = (
        '{"type": "RECORD", "stream": "customers", "record": {"email": "'
        + SECRET
        + '", "x": "'
        + "y" * 5_000_000
    )
    text = singer_text([schema(), *customers(2)]) + broken + "\n"
    result = run_cli_text(config_for(sandbox, tmp_path), text, tmp_path)
    assert result.returncode == 1
    assert "Line 4 is not valid JSON: Invalid control character (column 5000098)." in result.stderr
    assert SECRET not in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr) < 10_000
    assert report_of(tmp_path)["outcome"] == "failed"


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("[1, 2]", "Line 2 is an array, not a Singer message"),
        ('{"stream": "customers"}', "Line 2 has no message type."),
        ('{"type": "BOGUS"}', "Line 2 has the unknown message type 'BOGUS'."),
        ('{"type": "' + SECRET + '"}', "Line 2 has a message type that is not a Singer one."),
        ('{"type": "RECORD", "record": {}}', "Line 2 is a RECORD message without stream."),
        (
            '{"type": "SCHEMA", "stream": "s", "schema": {"type": "object"}}',
            "schema has no properties object",
        ),
        (
            '{"type": "RECORD", "stream": "nope", "record": {"email": "' + SECRET + '"}}',
            "Line 2 is a RECORD for stream 'nope', which no SCHEMA message announced before it.",
        ),
        (
            '{"type": "BATCH", "stream": "customers", "encoding": {"format": "jsonl"}, "manifest": []}',
            "Line 2 is a BATCH message; target-klaviyo reads RECORD messages only",
        ),
    ],
)
def test_lines_that_are_not_singer_messages_end_the_run_in_one_sentence(sandbox, tmp_path, line, words):
    text = singer_text([schema()]) + line + "\n"
    result = run_cli_text(config_for(sandbox, tmp_path), text, tmp_path)
    assert result.returncode == 1
    assert words in result.stderr
    assert SECRET not in result.stderr
    assert "Traceback" not in result.stderr


def test_blank_lines_and_a_byte_order_mark_are_skipped_and_counted(sandbox, tmp_path):
    text = "\ufeff" + singer_text([schema(), *customers(2)]) + "\n  \n" + singer_text([state(2)]) + "\n"
    result = run_cli_text(config_for(sandbox, tmp_path), text, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.states == [state(2)["value"]]
    assert len(members(sandbox)) == 2
    assert report_of(tmp_path)["counts"]["input_lines_skipped"] == {"blank_line": 3, "byte_order_mark": 1}


def test_a_null_record_is_a_counted_reject(sandbox, tmp_path):
    text = singer_text([schema(), {"type": "RECORD", "stream": "customers", "record": None}, *customers(1)])
    result = run_cli_text(config_for(sandbox, tmp_path), text, tmp_path)
    assert result.returncode == 0, result.stderr
    counts = report_of(tmp_path)["counts"]
    assert counts["read"] == 2
    assert counts["rejected_by_reason"] == {"invalid_record": 1}
    assert counts["unaccounted"] == 0


UNREPRESENTABLE = {
    "exponent beyond double": '{"plan": 1e5000}',
    "gigantic exponent": "1e999999999",
    "exponent beyond what Decimal holds": "-1e5555555555555555555555",
    "5,000-digit integer": "9" * 5000,
    "NaN": "[1, NaN]",
    "Infinity": '{"a": -Infinity}',
}


def test_numbers_that_cannot_be_represented_reject_their_record_quickly(sandbox, tmp_path):
    lines = [raw_record(f"n{i}@example.com", value) for i, value in enumerate(UNREPRESENTABLE.values())]
    text = singer_text([schema(properties={"email": {"type": "string"}})]) + "\n".join(lines) + "\n"
    text += singer_text(customers(1, start=100))
    started = time.monotonic()
    result = run_cli_text(config_for(sandbox, tmp_path), text, tmp_path)
    assert time.monotonic() - started < 30
    assert result.returncode == 0, result.stderr
    counts = report_of(tmp_path)["counts"]
    assert counts["rejected_by_reason"] == {"unrepresentable_number": len(UNREPRESENTABLE)}
    assert set(members(sandbox)) == {"person100@example.com"}
    assert all("cannot represent" in reject["detail"] for reject in rejects_of(tmp_path))


def test_a_huge_integer_that_is_not_sent_still_gets_its_reject_from_klaviyo(sandbox_factory, tmp_path):
    """A held record is read again from its line for the rejects file, the way the reader read it."""
    server = sandbox_factory(refuse_domains=("refuse.example",), fail_domains=("fail.example",))
    lines = [
        '{"type": "RECORD", "stream": "customers", "record": {"email": "'
        + email
        + '", "_sdc_batch": '
        + "9" * 5000
        + "}}"
        for email in ("x@refuse.example", "y@fail.example", "z@ok.example")
    ]
    text = singer_text([schema(properties={"email": {"type": "string"}})]) + "\n".join(lines) + "\n"
    result = run_cli_text(config_for(server, tmp_path), text, tmp_path)
    assert result.returncode == 0, result.stderr
    counts = report_of(tmp_path)["counts"]
    assert counts["rejected_by_reason"] == {"rejected_by_klaviyo": 2}
    assert counts["unaccounted"] == 0
    assert {reject["record"]["email"] for reject in rejects_of(tmp_path)} == {
        "x@refuse.example",
        "y@fail.example",
    }
    assert set(members(server)) == {"z@ok.example"}


def test_extreme_nesting_rejects_the_record(sandbox, tmp_path):
    deep = "[" * 500 + "]" * 500
    text = singer_text([schema(properties={"email": {"type": "string"}})]) + raw_record(
        "deep@example.com", deep
    )
    text += "\n" + singer_text(customers(1))
    result = run_cli_text(config_for(sandbox, tmp_path), text, tmp_path)
    assert result.returncode == 0, result.stderr
    assert report_of(tmp_path)["counts"]["rejected_by_reason"] == {"too_deeply_nested": 1}
    assert set(members(sandbox)) == {"person0@example.com"}


def test_a_line_too_deep_to_parse_at_all_ends_the_run_like_a_broken_one(sandbox, tmp_path):
    too_deep = '{"type": "STATE", "value": ' + "[" * 100_000 + "]" * 100_000 + "}"
    text = singer_text([schema(), *customers(1)]) + too_deep + "\n" + singer_text([state(1)])
    result = run_cli_text(config_for(sandbox, tmp_path), text, tmp_path)
    assert result.returncode == 1
    assert "Line 3 nests objects or arrays too deeply to be read at all." in result.stderr
    assert result.states == []


@pytest.mark.parametrize(
    ("schema_line", "words"),
    [
        (
            {
                "type": "SCHEMA",
                "stream": "s",
                "schema": {"properties": {"e": {"type": "string", "pattern": "("}}},
            },
            "Line 1: the SCHEMA message for stream 's' cannot be used",
        ),
        (
            {
                "type": "SCHEMA",
                "stream": "s",
                "schema": {"properties": {"e": {"$ref": "http://127.0.0.1:9/x.json"}}},
            },
            "Line 1: the SCHEMA message for stream 's' cannot be used",
        ),
        (
            {"type": "SCHEMA", "stream": "s", "schema": {"properties": {}}, "key_properties": "id"},
            "Line 1 is a SCHEMA message whose key_properties is not a list of names.",
        ),
        (
            {"type": "ACTIVATE_VERSION", "stream": "nope", "version": 1},
            "Line 1: the ACTIVATE_VERSION message",
        ),
    ],
)
def test_schemas_the_sdk_cannot_use_end_the_run_in_one_sentence(sandbox, tmp_path, schema_line, words):
    result = run_cli_text(config_for(sandbox, tmp_path), singer_text([schema_line]), tmp_path)
    assert result.returncode == 1
    assert words in result.stderr
    assert "Traceback" not in result.stderr


def test_a_record_without_its_key_property_is_one_sentence(sandbox, tmp_path):
    messages = [schema(key=["id"]), record(email=SECRET)]
    result = run_cli_text(config_for(sandbox, tmp_path), singer_text(messages), tmp_path)
    assert result.returncode == 1
    assert "Line 2: the record lacks a key property of stream 'customers'" in result.stderr
    assert SECRET not in result.stderr


def test_date_times_the_sdk_cannot_parse_are_sent_as_the_tap_wrote_them(sandbox, tmp_path):
    messages = [
        schema(
            properties={
                "email": {"type": "string"},
                "when": {"type": ["string", "null"], "format": "date-time"},
            }
        ),
        record(email="a@example.com", when=""),
        record(email="b@example.com", when="0000-00-00 00:00:00"),
        record(email="c@example.com", when="2024-01-01T00:00:00Z"),
    ]
    result = run_cli_text(config_for(sandbox, tmp_path), singer_text(messages), tmp_path)
    assert result.returncode == 0, result.stderr
    listed = members(sandbox)
    assert "when" not in listed["a@example.com"].get("properties", {}), "empty values are left out"
    assert listed["b@example.com"]["properties"]["when"] == "0000-00-00 00:00:00"
    assert listed["c@example.com"]["properties"]["when"] == "2024-01-01T00:00:00Z"
    assert "0000-00-00" not in result.stderr


def test_empty_values_never_blank_what_klaviyo_has(sandbox, tmp_path):
    first = [
        schema(properties={"email": {"type": "string"}}),
        record(email="e@example.com", plan="gold", tags=["a"]),
    ]
    assert run_cli_text(config_for(sandbox, tmp_path), singer_text(first), tmp_path).returncode == 0
    again = [first[0], record(email="e@example.com", plan="", tags=[], extra={})]
    assert run_cli_text(config_for(sandbox, tmp_path), singer_text(again), tmp_path).returncode == 0
    assert members(sandbox)["e@example.com"]["properties"] == {"plan": "gold", "tags": ["a"]}


def test_a_property_named_format_is_a_property(sandbox, tmp_path):
    body = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"email": {"type": "string"}, "format": {"type": "string"}},
    }
    messages = [
        {"type": "SCHEMA", "stream": "s", "schema": body, "key_properties": []},
        record("s", email="f@example.com", format="A4"),
    ]
    result = run_cli_text(config_for(sandbox, tmp_path), singer_text(messages), tmp_path)
    assert result.returncode == 0, result.stderr
    assert members(sandbox)["f@example.com"]["properties"]["format"] == "A4"


def test_text_that_is_not_unicode_rejects_the_record(sandbox, tmp_path):
    surrogate = (
        '{"type": "RECORD", "stream": "customers", "record": {"email": "s@example.com", "n": "\\ud800"}}\n'
    )
    bad_bytes = (
        b'{"type": "RECORD", "stream": "customers", "record": {"email": "b@example.com", "n": "\xff\xfe"}}\n'
    )
    emoji = '{"type": "RECORD", "stream": "customers", "record": {"email": "e@example.com", "n": "\\ud83d\\ude00"}}\n'
    text = (singer_text([schema(properties={"email": {"type": "string"}})]) + surrogate).encode() + bad_bytes
    result = run_cli_text(config_for(sandbox, tmp_path), text + emoji.encode(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert report_of(tmp_path)["counts"]["rejected_by_reason"] == {"invalid_unicode": 2}
    assert set(members(sandbox)) == {"e@example.com"}
    assert members(sandbox)["e@example.com"]["properties"]["n"] == "\U0001f600"


def test_one_phone_for_several_emails_is_kept_on_the_first_only(sandbox, tmp_path):
    messages = [schema()] + [record(id=i, email=f"p{i}@example.com", phone="+14155552671") for i in range(6)]
    config = config_for(sandbox, tmp_path, property_mapping={"phone_number": "phone"})
    result = run_cli_text(config, singer_text(messages), tmp_path)
    assert result.returncode == 0, result.stderr
    counts = report_of(tmp_path)["counts"]
    assert counts["exported"] == 6
    assert len(members(sandbox)) == 6, "Klaviyo would merge people who share a phone"
    assert counts["values_dropped_by_reason"] == {"duplicate_phone": 5}
    assert members(sandbox)["p0@example.com"]["phone_number"] == "+14155552671"


def test_national_phone_numbers_with_a_default_region(sandbox, tmp_path):
    messages = [
        schema(),
        record(id=1, email="a@example.com", phone="070-123 45 67"),
        record(id=2, email="b@example.com", phone="+44 20 7946 0958"),
        record(id=3, email="c@example.com", phone="12"),
    ]
    config = config_for(
        sandbox, tmp_path, property_mapping={"phone_number": "phone"}, default_phone_region="SE"
    )
    result = run_cli_text(config, singer_text(messages), tmp_path)
    assert result.returncode == 0, result.stderr
    people = members(sandbox)
    assert people["a@example.com"]["phone_number"] == "+46701234567"
    assert people["b@example.com"]["phone_number"] == "+442079460958"
    assert "phone_number" not in people["c@example.com"]
    assert report_of(tmp_path)["counts"]["values_dropped_by_reason"] == {"invalid_phone": 1}


def test_the_same_address_in_other_unicode_forms_is_one_person(sandbox, tmp_path):
    messages = [
        schema(),
        record(id=1, email="Jos\u00e9@B\u00fccher.de", plan="first"),
        record(id=2, email="jose\u0301@xn--bcher-kva.de", plan="second"),
    ]
    result = run_cli_text(config_for(sandbox, tmp_path), singer_text(messages), tmp_path)
    assert result.returncode == 0, result.stderr
    counts = report_of(tmp_path)["counts"]
    assert counts["deduplicated"] == 1
    assert counts["distinct_profiles"] == 1
    [(email, attributes)] = members(sandbox).items()
    assert email == "jos\u00e9@xn--bcher-kva.de"
    assert attributes["properties"]["plan"] == "second"


def test_a_schema_ref_to_a_url_is_never_fetched(sandbox, tmp_path):
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/x.json"
    line = {"type": "SCHEMA", "stream": "s", "schema": {"properties": {"e": {"$ref": url}}}}
    try:
        result = run_cli_text(config_for(sandbox, tmp_path), singer_text([line]), tmp_path)
        assert result.returncode == 1
        assert "Line 1: the SCHEMA message for stream 's' cannot be used" in result.stderr
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()
