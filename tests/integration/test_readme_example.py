"""The example in docs/sandbox.md of testing a pipeline with the klaviyo_sandbox fixture
(tests/test_docs.py checks that docs/sandbox.md shows this file as it is)."""

import json
import subprocess
import sys
from pathlib import Path

SAMPLE = Path("sample_data/customers.singer.jsonl")  # your tap's output (or run your tap here)
TARGET = Path(sys.executable).with_name("target-klaviyo")  # installed beside pytest, on PATH or not


def test_my_pipeline_exports_customers(klaviyo_sandbox, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(klaviyo_sandbox.config(email_property="EmailAddress")))
    with SAMPLE.open("rb") as singer_messages:
        run = subprocess.run(
            [TARGET, "--config", str(config)],
            stdin=singer_messages,
            capture_output=True,
            check=False,
        )
    assert run.returncode == 0, run.stderr.decode()
    members = klaviyo_sandbox.members()  # by lower-case email
    assert len(members) == 25
    assert members["ada.lovelace@example.com"]["properties"]["FirstName"] == "Ada"
    assert [job["status"] for job in klaviyo_sandbox.jobs()] == ["complete"]
