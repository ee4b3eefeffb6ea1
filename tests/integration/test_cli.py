"""The real ``target-klaviyo`` command, fed a Singer stream on stdin, against the sandbox."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from support import (
    API_KEY,
    LIST_ID,
    TARGET_BIN,
    assert_requests_match_spec,
    base_config,
    bulk_jobs,
    customers,
    environment_without_settings,
    members,
    record,
    run_cli,
    schema,
    singer_text,
    state,
)

SAMPLE = Path(__file__).parents[2] / "sample_data"


def sample_config(server, tmp_path) -> dict:
    config = json.loads((SAMPLE / "config.example.json").read_text())
    config.update(
        api_key=API_KEY,
        list_id=LIST_ID,
        api_url=server.url,
        rejects_path=str(tmp_path / "rejects.jsonl"),
        report_path=str(tmp_path / "report.json"),
    )
    return config


def test_sample_pipeline(sandbox_factory, tmp_path):
    server = sandbox_factory(fail_domains=("bounce.example.net",))
    messages = [json.loads(line) for line in (SAMPLE / "customers.singer.jsonl").read_text().splitlines()]
    result = run_cli(sample_config(server, tmp_path), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.states == [messages[-1]["value"]]
    listed = members(server)
    assert len(listed) == 24
    grace = listed["grace.hopper@example.com"]
    assert grace["properties"]["Plan"] == "enterprise"
    assert grace["phone_number"] == "+17035550143"
    assert grace["location"]["city"] == "Arlington"
    assert grace["external_id"] == "1033"
    assert grace["properties"]["SignedUpAt"].endswith("+00:00")
    assert "EmailAddress" not in grace["properties"]
    assert "Street" not in grace["properties"].get("Address", {})
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["counts"] == {
        "read": 30,
        "exported": 24,
        "unchanged": 0,
        "distinct_profiles": 25,
        "deduplicated": 2,
        "sent_again": 0,
        "rejected": 4,
        "rejected_by_reason": {"invalid_email": 1, "missing_email": 2, "rejected_by_klaviyo": 1},
        "skipped_over_limit": 0,
        "values_dropped_by_reason": {"invalid_phone": 2},
        "input_lines_skipped": {},
        "unaccounted": 0,
        "subscribed": 0,
        "removed": 0,
    }
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    # One line per rejected record; the two phones dropped from exported profiles are counts only.
    assert sorted(line["reason"] for line in rejects) == [
        "invalid_email",
        "missing_email",
        "missing_email",
        "rejected_by_klaviyo",
    ]
    assert "Run complete: 30 records read = 24 exported, 2 deduplicated, 4 rejected" in result.stderr
    assert_requests_match_spec(server)


def test_email_property_and_dedupe_later_record_wins(sandbox, tmp_path):
    messages = [
        schema(properties={"contact": {"type": "object"}, "plan": {"type": "string"}}),
        record(contact={"email": "Same@Example.com"}, plan="free"),
        record(contact={"email": "other@example.com"}, plan="pro"),
        record(contact={"email": " same@example.COM "}, plan="enterprise"),
    ]
    result = run_cli(base_config(sandbox, email_property="contact.email"), messages, tmp_path)
    assert result.returncode == 0, result.stderr
    [job] = bulk_jobs(sandbox)
    sent = job.body["data"]["attributes"]["profiles"]["data"]
    assert [p["attributes"]["email"] for p in sent] == ["same@example.com", "other@example.com"]
    assert sent[0]["attributes"]["properties"] == {"plan": "enterprise"}
    assert members(sandbox)["same@example.com"]["properties"]["plan"] == "enterprise"
    assert "1 deduplicated" in result.stderr


def test_bad_records_are_rejected_and_the_run_goes_on(sandbox, tmp_path):
    messages = [
        schema(),
        record(id=1, email="ok@example.com"),
        record(id=2),
        record(id=3, email=None),
        record(id=4, email="nope"),
        record(id="not-an-integer", email="typed@example.com"),
        record(id=6, email="ok2@example.com"),
        state(6),
    ]
    config = base_config(sandbox, rejects_path=str(tmp_path / "rejects.jsonl"))
    result = run_cli(config, messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(members(sandbox)) == {"ok@example.com", "ok2@example.com"}
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert reasons == ["missing_email", "missing_email", "invalid_email", "schema_violation"]
    assert result.states == [state(6)["value"]]


def test_profiles_klaviyo_refuses_are_rejected_and_the_rest_imported(sandbox_factory, tmp_path):
    server = sandbox_factory(refuse_domains=("refused.example.org",))
    messages = [schema(), *customers(2), record(id=7, email="x@refused.example.org"), *customers(2, start=2)]
    config = base_config(server, rejects_path=str(tmp_path / "rejects.jsonl"))
    result = run_cli(config, messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(members(server)) == {f"person{i}@example.com" for i in range(4)}
    [reject] = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert reject["reason"] == "rejected_by_klaviyo"
    assert reject["record"]["id"] == 7
    assert "Invalid email address" in reject["detail"]
    assert "1 rejected (rejected_by_klaviyo 1)" in result.stderr
    assert_requests_match_spec(server)


def test_a_stream_without_the_email_property_fails_before_its_records(sandbox, tmp_path):
    messages = [
        schema(stream="orders", properties={"order_id": {"type": "integer"}}),
        record("orders", order_id=1),
    ]
    result = run_cli(base_config(sandbox), messages, tmp_path)
    assert result.returncode == 1
    assert (
        "email_property 'email' is not a property of stream 'orders', so every record would be rejected"
        in result.stderr
    )
    assert "0 records read" in result.stderr
    assert bulk_jobs(sandbox) == []


def test_every_stream_goes_to_the_same_list(sandbox, tmp_path):
    messages = [
        schema("leads"),
        schema("customers"),
        record("leads", email="lead@example.com"),
        record("customers", email="customer@example.com"),
    ]
    assert run_cli(base_config(sandbox), messages, tmp_path).returncode == 0
    assert set(members(sandbox)) == {"lead@example.com", "customer@example.com"}


def test_each_state_is_written_once_the_records_before_it_are_in_klaviyo(sandbox_factory, tmp_path):
    server = sandbox_factory(job_delay=0.3)
    messages = [schema(), *customers(5), state(5), *customers(5, start=5), state(10)]
    config = base_config(server, batch_size_rows=3)
    with subprocess.Popen(
        [str(TARGET_BIN), "--config", str(_write(tmp_path, config))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        process.stdin.write(singer_text(messages))
        process.stdin.close()
        states_and_members = []
        for line in process.stdout:
            states_and_members.append((json.loads(line), set(members(server))))
        stderr = process.stderr.read()
        process.wait(timeout=60)
    assert process.returncode == 0, stderr
    assert [value for value, _ in states_and_members] == [state(5)["value"], state(10)["value"]]
    first_five = {f"person{i}@example.com" for i in range(5)}
    assert first_five <= states_and_members[0][1]
    assert len(states_and_members[1][1]) == 10
    assert len(bulk_jobs(server)) >= 3
    assert_requests_match_spec(server)


def test_limit_fail_exports_exactly_the_limit_and_emits_no_state_past_it(sandbox, tmp_path):
    messages = [schema(), *customers(3), state(3), *customers(3, start=3), state(6)]
    config = base_config(sandbox, max_profiles_per_run=4, report_path=str(tmp_path / "report.json"))
    result = run_cli(config, messages, tmp_path)
    assert result.returncode == 1
    assert result.states == [state(3)["value"]], "the records before state 3 were all exported"
    assert len(members(sandbox)) == 4
    assert "reached max_profiles_per_run (4 distinct profiles)" in result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["outcome"] == "stopped at the profile limit"
    assert report["counts"]["exported"] == 4
    assert report["counts"]["read"] == 5
    assert report["counts"]["skipped_over_limit"] == 1
    assert report["counts"]["unaccounted"] == 0


def test_limit_truncate_skips_the_rest_and_finishes(sandbox, tmp_path):
    messages = [
        schema(),
        *customers(6),
        record(id=0, email="person0@example.com", first_name="Again"),
        state(6),
    ]
    config = base_config(
        sandbox, max_profiles_per_run=4, on_limit_exceeded="truncate", rejects_path=str(tmp_path / "r.jsonl")
    )
    result = run_cli(config, messages, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.states == [state(6)["value"]]
    assert set(members(sandbox)) == {f"person{i}@example.com" for i in range(4)}
    assert members(sandbox)["person0@example.com"]["properties"]["first_name"] == "Again"
    assert "2 new profiles were skipped because the run reached max_profiles_per_run (4)" in result.stderr
    assert (tmp_path / "r.jsonl").read_text() == "", "skipped over the limit is counted, not rejected"


def test_rejected_key_ends_the_run_before_reading(sandbox, tmp_path):
    config = {**base_config(sandbox), "api_key": "pk_wrong_but_secret_value"}
    result = run_cli(config, [schema(), *customers(2)], tmp_path)
    assert result.returncode == 1
    assert "Klaviyo rejected the API key (401)" in result.stderr
    assert "pk_wrong_but_secret_value" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert [r.spec_path for r in sandbox.recorded] == ["/api/lists/{id}"]


def test_missing_list_is_named(sandbox, tmp_path):
    result = run_cli(base_config(sandbox, list_id="Gone42"), [schema()], tmp_path)
    assert result.returncode == 1
    assert "Klaviyo has no list with id 'Gone42'" in result.stderr
    assert "Traceback" not in result.stderr


def test_configuration_errors_are_one_sentence(sandbox, tmp_path):
    config = base_config(sandbox, property_mapping={"favourite_colour": "colour"})
    result = run_cli(config, [schema()], tmp_path)
    assert result.returncode == 1
    assert "property_mapping has unknown Klaviyo attribute(s) favourite_colour" in result.stderr
    assert "Traceback" not in result.stderr
    assert sandbox.recorded == []


def test_a_malformed_key_is_not_echoed(tmp_path):
    result = run_cli({"api_key": 987654321012, "list_id": LIST_ID}, [schema()], tmp_path)
    assert result.returncode == 1
    assert "api_key must be a string; its value is not shown because it is secret." in result.stderr
    assert "987654321012" not in result.stderr + result.stdout


def test_clear_text_url_is_refused_before_sending_the_key(tmp_path):
    config = {"api_key": API_KEY, "list_id": LIST_ID, "api_url": "http://klaviyo.example.com"}
    result = run_cli(config, [schema()], tmp_path)
    assert result.returncode == 1
    assert "api_url must use https://" in result.stderr


def test_config_from_the_environment(sandbox, tmp_path):
    env = {
        "TARGET_KLAVIYO_API_KEY": API_KEY,
        "TARGET_KLAVIYO_LIST_ID": LIST_ID,
        "TARGET_KLAVIYO_API_URL": sandbox.url,
        "TARGET_KLAVIYO_EMAIL_PROPERTY": "mail",
    }
    result = run_cli(
        {},
        [schema(properties={"mail": {"type": "string"}}), record(mail="env@example.com")],
        tmp_path,
        extra_env=env,
        config_arg="ENV",
    )
    assert result.returncode == 0, result.stderr
    assert set(members(sandbox)) == {"env@example.com"}


def test_dry_run_sends_nothing_and_logs_no_personal_data(sandbox, tmp_path):
    config = base_config(sandbox, dry_run=True, api_url="https://unreachable.invalid")
    result = run_cli(config, [schema(), *customers(3), state(3)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert sandbox.recorded == []
    assert "Dry run: would submit an import job of 3 profiles" in result.stderr
    assert "3 would be exported (dry run: nothing was sent)" in result.stderr
    assert "person1@example.com" not in result.stderr
    assert result.states == [], "a dry run sent nothing, so it must not advance the bookmark"


def test_the_api_key_and_emails_never_reach_output_or_files(sandbox_factory, tmp_path):
    server = sandbox_factory(fail_domains=("bounce.example.net",))
    config = base_config(
        server, rejects_path=str(tmp_path / "rejects.jsonl"), report_path=str(tmp_path / "report.json")
    )
    messages = [
        schema(),
        *customers(3),
        *customers(1, start=9, domain="bounce.example.net"),
        record(id=5, email="bad@"),
    ]
    result = run_cli(config, messages, tmp_path, extra_env={"TARGET_KLAVIYO_LOGLEVEL": "DEBUG"})
    assert result.returncode == 0, result.stderr
    written = (
        result.stdout
        + result.stderr
        + (tmp_path / "report.json").read_text()
        + (tmp_path / "rejects.jsonl").read_text()
    )
    assert API_KEY not in written
    assert "person1@example.com" not in result.stderr
    assert "person9@bounce.example.net" not in result.stderr


def _write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_an_output_path_that_cannot_be_written_fails_before_anything_is_sent(sandbox, tmp_path):
    result = run_cli(base_config(sandbox, report_path=str(tmp_path)), [schema(), *customers(2)], tmp_path)
    assert result.returncode == 1
    assert "report_path" in result.stderr
    assert "is a folder; name a file in it." in result.stderr
    assert "Traceback" not in result.stderr
    assert sandbox.recorded == []


def test_a_key_from_a_crlf_env_file_is_trimmed_and_never_shown(sandbox, tmp_path):
    env = {
        "TARGET_KLAVIYO_API_KEY": API_KEY + "\r",
        "TARGET_KLAVIYO_LIST_ID": LIST_ID,
        "TARGET_KLAVIYO_API_URL": sandbox.url,
    }
    result = run_cli({}, [schema(), *customers(2)], tmp_path, extra_env=env, config_arg="ENV")
    assert result.returncode == 0, result.stderr
    assert len(members(sandbox)) == 2
    assert API_KEY not in result.stderr + result.stdout


def test_the_summary_comes_before_the_final_state(sandbox, tmp_path):
    """Meltano logs both streams as they come: the run's summary, then the STATE it saves."""
    config_path = _write(tmp_path, base_config(sandbox))
    process = subprocess.run(
        [str(TARGET_BIN), "--config", str(config_path)],
        input=singer_text([schema(), *customers(3), state(3)]),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment_without_settings(),
        check=False,
    )
    assert process.returncode == 0, process.stdout
    lines = process.stdout.splitlines()
    summary = next(i for i, line in enumerate(lines) if "Run complete" in line)
    final_state = max(i for i, line in enumerate(lines) if line.startswith('{"bookmarks"'))
    assert summary < final_state


def test_help_describes_this_target_and_the_sdks_options_still_work(sandbox, tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(TARGET_BIN), *args],
            capture_output=True,
            text=True,
            env=environment_without_settings(),
            check=False,
        )

    shown = run("--help")
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())  # click wraps to the terminal's width
    assert "Execute the Singer target." not in text
    for words in (
        "Upsert the profiles of Singer streams into Klaviyo lists.",
        "JSON files, merged in order, and ENV for the TARGET_KLAVIYO_* environment variables",
        "api_key is required, with list_id or stream_lists.",
        "--about --format=markdown describes each",
        "target-klaviyo --config config.json --config ENV <customers.singer.jsonl",
        "target-klaviyo-mirror",
    ):
        assert words in text, words
    for option in ("--version", "--about", "--format [json|markdown]", "--config TEXT", "--input FILENAME"):
        assert option in text, option
    assert run("--version").stdout.startswith("target-klaviyo v")
    about = json.loads(run("--about", "--format=json").stdout)
    assert {"api_key", "list_id", "stream_lists"} <= set(about["settings"]["properties"])
    (tmp_path / "config.json").write_text(json.dumps(base_config(sandbox)))
    (tmp_path / "input.jsonl").write_text(singer_text([schema(), *customers(3), state(3)]))
    exported = run("--config", str(tmp_path / "config.json"), "--input", str(tmp_path / "input.jsonl"))
    assert exported.returncode == 0, exported.stderr
    assert len(members(sandbox)) == 3
