"""A misconfigured run never looks like a success: each mistake a new user makes is said in one
sentence, naming the setting (and the closest right value), through the real CLI."""

from __future__ import annotations

import json
import subprocess
import time

from support import (
    TARGET_BIN,
    base_config,
    environment_without_settings,
    members,
    record,
    run_cli,
    schema,
    state,
)

CRM = {"id": {"type": "integer"}, "EmailAddress": {"type": "string"}, "Phone": {"type": "string"}}


def test_an_email_property_the_schema_lacks_stops_the_run_naming_the_closest(sandbox, tmp_path):
    messages = [schema(properties=CRM), record(id=1, EmailAddress="a@example.com"), state(1)]
    result = run_cli(base_config(sandbox, email_property="emailaddress"), messages, tmp_path)
    assert result.returncode == 1
    assert (
        "email_property 'emailaddress' is not a property of stream 'customers' (the closest it has is "
        "'EmailAddress'), so every record would be rejected; set email_property to the property that "
        "holds the email." in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert members(sandbox) == {}


def test_a_mapping_or_consent_path_the_schema_lacks_is_a_warning_naming_the_closest(sandbox, tmp_path):
    messages = [schema(properties=CRM), record(id=1, EmailAddress="a@example.com", Phone="+14155552671")]
    config = base_config(
        sandbox,
        email_property="EmailAddress",
        property_mapping={"phone_number": "phone"},
        consent_property="MarketingOptIn",
    )
    result = run_cli(config, messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (
        "property_mapping.phone_number 'phone' is not a property of stream 'customers' (the closest it has "
        "is 'Phone'), so no record of it gives that value." in result.stderr
    )
    assert "consent_property 'MarketingOptIn' is not a property of stream 'customers'" in result.stderr


def test_a_stream_lists_key_that_matches_no_stream_is_a_warning_naming_the_closest(sandbox, tmp_path):
    messages = [schema("vip_customers"), record("vip_customers", email="a@example.com"), state(1)]
    config = base_config(sandbox, stream_lists={"vip_customer": "TeStLs"})
    result = run_cli(config, messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (
        "stream_lists names stream 'vip_customer', which did not appear in this run (streams: "
        "'vip_customers'); the closest is 'vip_customers'." in result.stderr
    )


def test_a_run_that_rejects_most_records_exports_the_rest_then_fails_naming_the_top_reason(sandbox, tmp_path):
    messages = [
        schema(),
        record(id=1, email="good@example.com"),
        record(id=2, email="not an email"),
        record(id=3, email="neither"),
        record(id=4),
        state(4),
    ]
    report = tmp_path / "report.json"
    result = run_cli(
        {**base_config(sandbox), "report_path": str(report), "max_reject_fraction": 0.5}, messages, tmp_path
    )
    assert result.returncode == 1
    assert (
        "3 of the 4 records read (75%) were rejected, more than max_reject_fraction (50%); the most common "
        "reason is invalid_email (2): the rest were exported" in result.stderr
    )
    assert set(members(sandbox)) == {"good@example.com"}
    assert result.states == [state(4)["value"]], "the exported profiles are confirmed and covered"
    assert json.loads(report.read_text())["outcome"] == "failed"
    config = {key: value for key, value in base_config(sandbox).items() if key != "max_reject_fraction"}
    assert run_cli(config, messages, tmp_path).returncode == 1, "0.5 is the default"
    assert run_cli({**config, "max_reject_fraction": 1}, messages, tmp_path).returncode == 0


def target(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(TARGET_BIN), *args], input=stdin, capture_output=True, text=True,
        env=environment_without_settings(), timeout=60, check=False,
    )  # fmt: skip


def test_a_config_file_that_cannot_be_read_is_one_sentence(tmp_path):
    (tmp_path / "broken.json").write_text('{"api_key": "pk_secret_value",\n  "list_id": XyZ}\n')
    (tmp_path / "list.json").write_text("[1, 2]")
    cases = {
        str(tmp_path / "missing.json"): f"--config '{tmp_path / 'missing.json'}': there is no such file.",
        str(tmp_path / "broken.json"): "is not JSON: Expecting value at line 2, column 14.",
        str(tmp_path / "list.json"): "holds JSON that is not an object of settings.",
        str(tmp_path): "is a folder; name the JSON config file.",
    }
    for path, sentence in cases.items():
        result = target("--config", path)
        assert result.returncode == 1, path
        assert sentence in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) <= 2, result.stderr
        assert "pk_secret_value" not in result.stderr


def test_an_api_url_where_nothing_listens_fails_within_15_seconds_naming_it_and_the_cause(tmp_path):
    line = json.dumps(schema()) + "\n"
    for url, cause in (
        ("http://127.0.0.1:9", "the connection was refused: nothing listens there"),
        ("https://klaviyo-nowhere.invalid", "its host name does not resolve"),
    ):
        (tmp_path / "c.json").write_text(json.dumps({"api_key": "pk_x", "list_id": "L1", "api_url": url}))
        started = time.monotonic()
        result = target("--config", str(tmp_path / "c.json"), stdin=line)
        assert time.monotonic() - started < 15
        assert result.returncode == 1
        assert f"Cannot reach Klaviyo at api_url {url}: {cause}; check the api_url setting" in result.stderr


def test_addresses_that_differ_only_in_the_case_of_any_letter_are_one_person(sandbox, tmp_path):
    messages = [
        schema(),
        record(id=1, email="JOSÉ.SILVA@example.com"),
        record(id=2, email="José.Silva@example.com"),
    ]
    result = run_cli(base_config(sandbox), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 deduplicated" in result.stderr
    assert len(members(sandbox)) == 1


TAP = """
import json
print(json.dumps({"type": "SCHEMA", "stream": "s", "schema": {"properties": {"email": {"type": "string"}}},
                  "key_properties": []}), flush=True)
for i in range(20000):
    print(json.dumps({"type": "RECORD", "stream": "s", "record": {"email": f"p{i}@example.com"}}))
"""


def test_a_failed_run_lets_the_tap_finish_so_its_sentence_is_not_buried_in_broken_pipes(sandbox, tmp_path):
    """Under meltano run a wrong key's sentence was followed by some 150 lines of the tap's
    BrokenPipeError tracebacks: the target now reads what the tap still writes (for a few seconds)."""
    (tmp_path / "c.json").write_text(json.dumps({**base_config(sandbox), "api_key": "pk_wrong_key_000000"}))
    tap = subprocess.Popen(
        ["python3", "-c", TAP],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment_without_settings(),
    )
    target = subprocess.run(
        [str(TARGET_BIN), "--config", str(tmp_path / "c.json")], stdin=tap.stdout, capture_output=True,
        text=True, env=environment_without_settings(), timeout=60, check=False,
    )  # fmt: skip
    assert tap.stdout is not None
    tap.stdout.close()
    _, tap_errors = tap.communicate(timeout=30)
    assert target.returncode == 1
    assert "Klaviyo rejected the API key (401)" in target.stderr.strip().splitlines()[-1]
    assert tap.returncode == 0, tap_errors
    assert b"BrokenPipeError" not in tap_errors


def test_a_stream_map_that_fails_on_a_record_is_one_sentence_without_its_values(sandbox, tmp_path):
    messages = [schema(), record(id=1, email="hidden.person@leak.example")]
    result = run_cli(base_config(sandbox, stream_maps={"customers": {"x": "int(email)"}}), messages, tmp_path)
    assert result.returncode == 1
    assert "Line 2: a stream map failed on this record (ValueError)." in result.stderr
    assert "hidden.person" not in result.stderr
    assert "Traceback" not in result.stderr
