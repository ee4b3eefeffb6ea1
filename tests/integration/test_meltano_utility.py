"""The klaviyo-mirror utility's Hub definition (plugin/klaviyo-mirror.yml) in a new Meltano project.

The Hub keeps a utility as a plugin definition of its own; ``meltano add --from-ref`` on it
must give a project the utility that runs ``target-klaviyo-mirror`` with the loader's
``TARGET_KLAVIYO_*`` settings, as the repository's own meltano.yml defines it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import environment_without_settings

ROOT = Path(__file__).resolve().parents[2]
MELTANO = Path(sys.executable).with_name("meltano")
UTILITY_FILE = ROOT / "plugin" / "klaviyo-mirror.yml"

pytestmark = pytest.mark.slow


def meltano(*args: str, cwd: Path) -> str:
    environment = {**environment_without_settings(), "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"}
    result = subprocess.run(
        [str(MELTANO), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_meltano_add_the_mirror_utility_from_its_hub_definition(tmp_path):
    meltano("init", "project", "--no-usage-stats", cwd=tmp_path)
    project = tmp_path / "project"
    meltano(
        "add", "--plugin-type", "utility", "klaviyo-mirror", "--from-ref", str(UTILITY_FILE), "--no-install",
        cwd=project,
    )  # fmt: skip
    plugins = yaml.safe_load((project / "meltano.yml").read_text())["plugins"]
    assert list(plugins) == ["utilities"]
    [utility] = plugins["utilities"]
    assert (utility["name"], utility["namespace"]) == ("klaviyo-mirror", "target_klaviyo")
    assert utility["executable"] == "target-klaviyo-mirror"
    assert utility["commands"]["apply"]["args"] == "--config ENV"
    definition = {s["name"] for s in yaml.safe_load(UTILITY_FILE.read_text())["settings"]}
    assert {s["name"] for s in utility["settings"]} == definition
    assert next(s for s in utility["settings"] if s["name"] == "api_key")["sensitive"] is True
    # Meltano gives each setting to the utility as the loader's variable, which target-klaviyo-mirror reads.
    listed = meltano("config", "list", "klaviyo-mirror", "--all", cwd=project)
    variables = dict(re.findall(r"^(\w+) .*\[env: [^\]]*?(TARGET_KLAVIYO_\w+)\]", listed, re.MULTILINE))
    assert variables == {name: f"TARGET_KLAVIYO_{name.upper()}" for name in definition}
