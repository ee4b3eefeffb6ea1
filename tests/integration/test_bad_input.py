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
            "Line 2: A record for stream 'nope'",
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


def test_extreme_nesting_rejects_the_record(sandbox, tmp_path):
    deep = "[" * 500 + "]" * 500
    too_deep_to_parse = "[" * 100_000 + "]" * 100_000
    lines = [raw_record("deep@example.com", deep), raw_record("deeper@example.com", too_deep_to_parse)]
    text = singer_text([schema(properties={"email": {"type": "string"}})]) + "\n".join(lines) + "\n"
    text += singer_text(customers(1))
    result = run_cli_text(config_for(sandbox, tmp_path), text, tmp_path)
    assert result.returncode == 0, result.stderr
    assert report_of(tmp_path)["counts"]["rejected_by_reason"] == {"too_deeply_nested": 2}
    assert set(members(sandbox)) == {"person0@example.com"}


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
