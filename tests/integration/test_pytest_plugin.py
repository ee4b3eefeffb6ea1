"""The klaviyo_sandbox pytest plugin, used as a user would (the README's example is
tests/integration/test_readme_example.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_plugin_is_registered_for_any_project(tmp_path):
    """No conftest: the fixture comes from the installed package's pytest11 entry point."""
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            def test_sandbox(klaviyo_sandbox, klaviyo_sandbox_factory):
                assert klaviyo_sandbox.url.startswith("http://127.0.0.1:")
                other = klaviyo_sandbox_factory(lists=("A1", "B2"))
                other.add_members("B2", "someone@example.com")
                assert list(other.members("B2")) == ["someone@example.com"]
                other.unsubscribe("someone@example.com")
                assert other.members("B2")["someone@example.com"]["email_marketing"]["consent"] == "UNSUBSCRIBED"
                assert klaviyo_sandbox.config()["list_id"] == klaviyo_sandbox.list_id
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_user.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
