"""The public repository's GitHub workflows: valid YAML, and the shape CI and releases need.

actionlint cannot be installed here (its Python package downloads the binary from GitHub), so
these checks stand in for it: every job runs somewhere and has steps, every step runs a
command or an action pinned to a commit, the test matrix covers every supported Python, and a release
publishes with trusted publishing only from a version tag.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
SUPPORTED = yaml.safe_load((ROOT / "plugin" / "target-klaviyo.yml").read_text())["supported_python_versions"]


def load(path: Path) -> dict:
    # YAML 1.1 reads the key "on" as True; GitHub reads it as "on".
    document = yaml.safe_load(path.read_text())
    if True in document:
        document["on"] = document.pop(True)
    return document


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_every_job_runs_pinned_steps(path):
    workflow = load(path)
    assert workflow["name"]
    assert workflow["on"]
    assert workflow["permissions"] == {"contents": "read"}, "least privilege by default"
    for name, job in workflow["jobs"].items():
        assert job["runs-on"] == "ubuntu-latest", name
        assert job["timeout-minutes"] <= 30, name
        assert job["steps"], name
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), (name, step)
            if "uses" in step:
                action, _, ref = step["uses"].partition("@")
                assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{name}: {action} is not pinned to a commit"


def test_the_test_matrix_covers_every_supported_python():
    test = load(ROOT / ".github" / "workflows" / "test.yml")
    assert test["jobs"]["test"]["strategy"]["matrix"]["python-version"] == SUPPORTED
    assert any("scripts/test.sh" in step.get("run", "") for step in test["jobs"]["test"]["steps"])
    assert any("scripts/check_package.sh" in step.get("run", "") for step in test["jobs"]["package"]["steps"])


def test_a_release_publishes_from_a_version_tag_with_trusted_publishing():
    release = load(ROOT / ".github" / "workflows" / "release.yml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    publish = release["jobs"]["publish"]
    assert publish["needs"] == "build"
    assert publish["permissions"] == {"id-token": "write"}
    assert any(step.get("uses", "").startswith("pypa/gh-action-pypi-publish@") for step in publish["steps"])
    build_steps = " ".join(step.get("run", "") for step in release["jobs"]["build"]["steps"])
    assert "DIST_DIR=dist bash scripts/check_package.sh" in build_steps, "publish exactly what was checked"
    assert "python -m build" not in build_steps
    assert not any(
        "password" in str(step) or "token" in str(step.get("with", {})) for step in publish["steps"]
    )
