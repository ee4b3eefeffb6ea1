"""``bash scripts/demo.sh`` on first use: it makes its venv with the package alone, no test tools.

The test tools (pytest, meltano, mypy...) were most of the demo's first run; scripts/test.sh
installs them on top. This runs the real script into a venv of its own, so it takes seconds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import environment_without_settings

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def demo(venv: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**environment_without_settings(), "VENV": str(venv), "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_demo_installs_the_package_alone_once_and_says_so(tmp_path):
    venv = tmp_path / "venv"
    first = demo(venv, tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"bootstrap: creating {venv} with" in first.stderr
    assert "bootstrap: installing target-klaviyo and its dependencies (no test tools)" in first.stderr
    assert "bootstrap: installed " in first.stderr
    assert "24 member(s) in list SaMPLE" in first.stdout
    for command in ("target-klaviyo", "target-klaviyo-mirror", "klaviyo-sandbox"):
        assert (venv / "bin" / command).exists(), command
    for tool in ("pytest", "meltano", "mypy", "ruff"):
        assert not (venv / "bin" / tool).exists(), tool
    again = demo(venv, tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "bootstrap:" not in again.stderr
    assert "24 member(s) in list SaMPLE" in again.stdout
