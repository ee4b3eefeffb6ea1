"""Files that restate the target's settings or data must not drift from their source."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_table_plugin_definition_and_meltano_yml_match_about():
    result = subprocess.run(
        [sys.executable, "scripts/sync_settings.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_starts_with_the_demo_and_the_test_command():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    assert first_block.splitlines()[0].startswith("bash scripts/demo.sh")
    assert first_block.splitlines()[1].startswith("bash scripts/test.sh")
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_sample_records_for_tap_jsonl_are_the_singer_streams_records():
    singer = [
        json.loads(line) for line in (ROOT / "sample_data/customers.singer.jsonl").read_text().splitlines()
    ]
    plain = [json.loads(line) for line in (ROOT / "sample_data/customers.jsonl").read_text().splitlines()]
    assert plain == [message["record"] for message in singer if message["type"] == "RECORD"]


def test_the_readme_shows_the_pytest_plugin_example_as_it_is_tested():
    example = (ROOT / "tests" / "integration" / "test_readme_example.py").read_text()
    assert f"```python\n{example}```" in (ROOT / "README.md").read_text()
