"""The Meltano SDK's standard target tests, run against the sandbox.

Most standard streams carry no email: as they are, each fails in one sentence before
its records (a stream without ``email_property`` would export nothing); only
``pk_updates`` has emails, and exactly its two people must reach the list. The SDK's
test class runs them with a stream map that gives every record an email.
"""

from __future__ import annotations

import importlib.resources
import io
import json
import tempfile
from pathlib import Path

import pytest
from singer_sdk.testing import get_target_test_class, target_test_streams
from support import API_KEY, LIST_ID, base_config, make_sandbox, members

from target_klaviyo.errors import RunError
from target_klaviyo.target import TargetKlaviyo

SANDBOX = make_sandbox(job_delay=0)
REPORT = Path(tempfile.mkdtemp(prefix="target-klaviyo-standard-")) / "report.json"
RAISING_STREAMS = {"invalid_schema", "record_before_schema", "record_missing_key_property"}

# The standard streams are not customer data: most have no email, and target-klaviyo refuses a
# stream whose schema lacks email_property (one sentence, before its records; issue 17). A stream
# map gives each record an email of its own, so the SDK's tests exercise everything after that
# check; test_standard_streams_fail_or_load_as_they_are below runs each stream as it is.
EMAIL_FOR_EVERY_STREAM = {
    "*": {"email": "record.get('email') or ('row-' + str(record.get('id', 0)) + '@example.com')"}
}
_StandardTests = get_target_test_class(
    TargetKlaviyo,
    config={
        "api_key": API_KEY,
        "list_id": LIST_ID,
        "api_url": SANDBOX.url,
        "report_path": str(REPORT),
        "stream_maps": EMAIL_FOR_EVERY_STREAM,
        "max_reject_fraction": 1,
    },
    parse_env_config=False,
)


class TestTargetKlaviyo(_StandardTests):
    """The SDK's standard tests, each also checked for the run's real lifecycle.

    The SDK's runner calls ``process_lines`` and ``process_endofpipe`` directly, so
    these show that the connection check and the report happen through the SDK's
    hooks, not only through the CLI.
    """

    @pytest.fixture(autouse=True)
    def _each_run_checks_the_connection_and_ends_with_a_report(self, request):
        REPORT.unlink(missing_ok=True)
        seen = len(SANDBOX.recorded)
        yield
        if request.node.name.startswith("test_target_cli_prints"):
            return
        outcome = json.loads(REPORT.read_text())["outcome"]
        assert outcome in {"complete", "failed"}, outcome
        if outcome == "complete":
            assert any(r.spec_path == "/api/lists/{id}" for r in SANDBOX.recorded[seen:])


def standard_streams() -> list[str]:
    files = importlib.resources.files(target_test_streams).iterdir()
    return sorted(f.name.removesuffix(".singer") for f in files if f.name.endswith(".singer"))


def test_standard_streams_fail_or_load_as_they_are(sandbox):
    """Without the stream map: a stream whose schema has no email fails in one sentence before its
    records; the others load, and only pk_updates' two people reach the list."""
    exported, refused = 0, []
    for name in standard_streams():
        if name in RAISING_STREAMS:
            continue
        text = (importlib.resources.files(target_test_streams) / f"{name}.singer").read_text()
        target = TargetKlaviyo(config=base_config(sandbox), parse_env_config=False)
        schemas = [json.loads(line) for line in text.splitlines() if '"SCHEMA"' in line]
        if not any("email" in message["schema"].get("properties", {}) for message in schemas):
            with pytest.raises(RunError, match="email_property 'email' is not a property of stream"):
                target.listen(io.StringIO(text))
            assert target.run.report.read == 0, "refused before any record"
            refused.append(name)
            continue
        target.listen(io.StringIO(text))
        report = target.run.report
        assert report.unaccounted == 0, name
        assert set(report.rejected) <= {"missing_email", "schema_violation"}, (name, report.rejected)
        exported += report.exported
    assert "array_data" in refused
    assert "pk_updates" not in refused
    assert set(members(sandbox)) == {"alice@example.com", "bob@example.com"}
    assert exported == 2


@pytest.mark.parametrize("name", sorted(RAISING_STREAMS))
def test_malformed_singer_input_still_fails(sandbox, name):
    text = (importlib.resources.files(target_test_streams) / f"{name}.singer").read_text()
    target = TargetKlaviyo(config=base_config(sandbox), parse_env_config=False)
    with pytest.raises(Exception):  # noqa: B017 - the SDK raises a different type for each
        target.listen(io.StringIO(text))
