"""Property-based tests: whatever the input, a run ends as exports, rejects with a reason, or
one sentence, never a traceback, a hang, an uncounted record, or the key or an email in the log.

CI runs a bounded number of examples; ``HYPOTHESIS_PROFILE=thorough`` runs many more
(profiles in conftest.py).
"""

from __future__ import annotations

import io
import json
import logging
import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from singer_sdk.exceptions import ConfigValidationError
from support import API_KEY

from target_klaviyo.errors import RunError
from target_klaviyo.records.mapping import ProfileMapper, normalize_phone
from target_klaviyo.records.profile import Reject
from target_klaviyo.settings.schema import CONFIG_SCHEMA
from target_klaviyo.settings.settings import Settings
from target_klaviyo.target import TargetKlaviyo

DRY_RUN = {"api_key": API_KEY, "list_id": "FuZz01", "dry_run": True, "max_profiles_per_run": 50}
SCHEMA = {
    "type": "SCHEMA",
    "stream": "people",
    "key_properties": [],
    "schema": {"type": "object", "properties": {"email": {"type": ["string", "null"]}, "phone": {}}},
}
MARK = "fuzzmark"  # every generated email contains it, so the log can be searched for any of them

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
odd_emails = st.one_of(
    st.builds(lambda local, domain: f"{local}.{MARK}@{domain}", st.text(max_size=12), st.text(max_size=12)),
    st.sampled_from(
        [
            f"{MARK}@example.com",
            f"Jos\u00e9.{MARK}@B\u00fccher.de",
            f" {MARK}@EXAMPLE.com ",
            f"{MARK}@@example.com",
            f"{MARK}@xn--bcher-kva.de",
            f"{MARK}\ud800@example.com",
        ]
    ),
)
records = st.fixed_dictionaries(
    {"email": st.one_of(odd_emails, json_values)},
    optional={"phone": st.one_of(st.text(max_size=16), st.integers()), "extra": json_values},
)


def record_line(record: dict[str, Any]) -> str:
    return json.dumps({"type": "RECORD", "stream": "people", "record": record})


raw_values = st.sampled_from(
    [
        "1e999999999",
        "-1e5000",
        "1e5555555555555555555555",
        "9" * 5000,
        "NaN",
        "Infinity",
        '"\\ud800"',
        "[" * 70 + "]" * 70,
        '"\\u0000"',
    ]
)
raw_record_lines = st.builds(
    lambda email, raw: (
        '{"type": "RECORD", "stream": "people", "record": {"email": '
        + json.dumps(email)
        + ', "x": '
        + raw
        + "}}"
    ),
    odd_emails,
    raw_values,
)

lines = st.one_of(
    records.map(record_line),
    raw_record_lines,
    st.integers(min_value=0, max_value=10).map(lambda n: json.dumps({"type": "STATE", "value": {"n": n}})),
    st.just(""),
    st.just(json.dumps({"type": "RECORD", "stream": "people", "record": None})),
    st.text(max_size=30),
    json_values.map(json.dumps),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None)
@given(body=st.lists(lines, max_size=12))
def test_any_singer_input_ends_counted_or_in_one_sentence(body, caplog):
    text = "\n".join([json.dumps(SCHEMA), *body]) + "\n"
    caplog.clear()
    target = TargetKlaviyo(config=DRY_RUN, parse_env_config=False)
    with caplog.at_level(logging.DEBUG):
        try:
            target.listen(io.StringIO(text))
        except RunError as error:
            message = str(error)
            assert "\n" not in message
            assert MARK not in message
            assert target.run.report.outcome == "failed"
        else:
            report = target.run.report
            assert report.outcome == "complete"
            assert report.unaccounted == 0
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert MARK not in logged
    assert API_KEY not in logged
    assert "Traceback" not in caplog.text


@given(value=st.one_of(odd_emails, st.text()))
def test_every_email_ends_as_a_normalised_profile_or_a_reject(value):
    result = ProfileMapper(Settings.from_config(DRY_RUN)).map({"email": value})
    if isinstance(result, Reject):
        assert result.reason in {"missing_email", "invalid_email"}
        return
    sent = result.resource["attributes"]["email"]
    assert result.key == sent.lower()
    again = ProfileMapper(Settings.from_config(DRY_RUN)).map({"email": sent})
    assert not isinstance(again, Reject)
    assert again.key == result.key


@given(phone=st.one_of(st.text(max_size=24), st.from_regex(r"\+[0-9 ()-]{0,20}", fullmatch=True)))
def test_every_phone_is_e164_or_refused(phone):
    result = normalize_phone(phone)
    if not isinstance(result, Reject):
        assert result.startswith("+")
        assert result[1:].isdigit()
        assert normalize_phone(result) == result


@given(value=json_values)
def test_any_custom_property_value_is_sent_or_rejected_with_a_reason(value):
    result = ProfileMapper(Settings.from_config(DRY_RUN)).map({"email": "a@example.com", "x": value})
    if isinstance(result, Reject):
        assert result.reason in {"unrepresentable_number", "profile_too_large"}
        return
    sent = json.loads(result.encoded)["attributes"].get("properties", {}).get("x")
    if isinstance(value, float) and math.isfinite(value):
        assert sent == value
    elif isinstance(value, Decimal):
        assert sent is not None


setting_names = st.sampled_from(
    [*CONFIG_SCHEMA["properties"], "dryrun", "on_limit_exceded", "batch_size_rows"]
)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(extra=st.dictionaries(setting_names, json_values, max_size=4), key=st.text(min_size=1, max_size=30))
def test_any_configuration_is_accepted_or_refused_in_sentences_that_hide_the_key(
    extra, key, tmp_path_factory
):
    secret = f"pk_{key}_Zq9"
    config = {**DRY_RUN, **extra, "api_key": secret}
    if "rejects_path" in extra or "report_path" in extra:
        folder = tmp_path_factory.mktemp("out")
        config.update(rejects_path=str(folder / "r.jsonl"), report_path=str(folder / "report.json"))
    try:
        TargetKlaviyo(config=config, parse_env_config=False)
    except ConfigValidationError as error:
        for message in [str(error), *error.errors]:
            assert secret.strip() not in message
            assert "Traceback" not in message


@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e999999999", "1e5555555555555555555555"])
def test_the_rejects_file_keeps_unrepresentable_numbers_as_text(tmp_path, value):
    config = {**DRY_RUN, "rejects_path": str(tmp_path / "rejects.jsonl"), "max_reject_fraction": 1}
    line = '{"type": "RECORD", "stream": "people", "record": {"email": "a@example.com", "x": ' + value + "}}"
    target = TargetKlaviyo(config=config, parse_env_config=False)
    target.listen(io.StringIO(json.dumps(SCHEMA) + "\n" + line + "\n"))
    [reject] = [json.loads(text) for text in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert reject["reason"] == "unrepresentable_number"
