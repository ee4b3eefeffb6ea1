"""target-klaviyo as a Meltano loader: the Hub definition, ``meltano add``, and ``meltano run``.

These tests run the real ``meltano`` command and install plugins into throwaway
projects, so they take a minute; CI runs them with the rest.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from support import API_KEY, LIST_ID, environment_without_settings, members

ROOT = Path(__file__).resolve().parents[2]
MELTANO = Path(sys.executable).with_name("meltano")
HUB_FILE = ROOT / "plugin" / "target-klaviyo.yml"

pytestmark = pytest.mark.slow


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = environment_without_settings()
    environment.update(MELTANO_SEND_ANONYMOUS_USAGE_STATS="false", **(env or {}))
    result = subprocess.run(
        args, cwd=cwd, env=environment, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


def about_settings() -> dict:
    output = run(sys.executable, "-m", "target_klaviyo.target", "--about", "--format=json", cwd=ROOT).stdout
    return json.loads(output)["settings"]


def test_every_setting_is_documented_in_both_directions():
    about = about_settings()
    hub = {s["name"]: s for s in yaml.safe_load(HUB_FILE.read_text())["settings"]}
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    loader = next(plugin for plugin in project["plugins"]["loaders"] if plugin["name"] == "target-klaviyo")
    # The Hub lists an object of named settings (faker_config) as one setting per child.
    expected = set()
    for name, schema in about["properties"].items():
        children = (
            schema.get("properties") if not isinstance(schema.get("additionalProperties"), dict) else None
        )
        expected |= {f"{name}.{child}" for child in children} if children else {name}
    assert set(hub) == expected
    assert {s["name"] for s in loader["settings"]} == set(hub)
    assert all(
        hub[name].get("description") and hub[name].get("label") and hub[name].get("kind") for name in hub
    )
    assert {name for name, s in hub.items() if s.get("sensitive")} == {
        name for name, s in about["properties"].items() if s.get("secret")
    }


def test_meltano_add_from_the_hub_definition(tmp_path):
    run(str(MELTANO), "init", "project", "--no-usage-stats", cwd=tmp_path)
    project = tmp_path / "project"
    run(
        str(MELTANO), "add", "--plugin-type", "loader", "target-klaviyo", "--from-ref", str(HUB_FILE), "--no-install",
        cwd=project,
    )  # fmt: skip
    added = yaml.safe_load((project / "meltano.yml").read_text())["plugins"]
    [loader] = added["loaders"]
    assert loader["namespace"] == "target_klaviyo"
    hub = {s["name"] for s in yaml.safe_load(HUB_FILE.read_text())["settings"]}
    assert {s["name"] for s in loader["settings"]} == hub
    assert next(s for s in loader["settings"] if s["name"] == "api_key")["sensitive"] is True


def throwaway_project(tmp_path: Path, api_url: str) -> Path:
    """The repository's meltano.yml, pointed at this checkout, its sample files and a sandbox."""
    definition = yaml.safe_load((ROOT / "meltano.yml").read_text())
    extractors = {plugin["name"]: plugin for plugin in definition["plugins"]["extractors"]}
    loaders = {plugin["name"]: plugin for plugin in definition["plugins"]["loaders"]}
    extractors["tap-sample"]["pip_url"] = f"-e {ROOT / 'sample_tap'}"
    for extractor in extractors.values():
        for stream in extractor["config"]["streams"]:
            stream["path"] = str(ROOT / stream["path"])
    loaders["target-klaviyo"]["pip_url"] = f"-e {ROOT}"
    for utility in definition["plugins"]["utilities"]:
        if "inherit_from" not in utility:
            utility["pip_url"] = f"-e {ROOT}"
        if "api_url" in utility.get("config", {}):
            utility["config"].update(api_url=api_url, list_id=LIST_ID)  # as the loader it follows
    loaders["target-klaviyo"]["config"].update(api_url=api_url, list_id=LIST_ID)
    project = tmp_path / "meltano-project"
    project.mkdir()
    (project / "meltano.yml").write_text(yaml.safe_dump(definition, sort_keys=False))
    (project / ".env").write_text(f"TARGET_KLAVIYO_API_KEY={API_KEY}\n")
    return project


def test_meltano_run_end_to_end_and_a_second_run_sends_nothing_new(sandbox_factory, tmp_path):
    sandbox = sandbox_factory(fail_domains=("bounce.example.net",))
    project = throwaway_project(tmp_path, sandbox.url)
    run(str(MELTANO), "install", cwd=project)
    result = run(str(MELTANO), "run", "tap-sample", "target-klaviyo", cwd=project)
    assert "Run complete: 30 records read = 24 exported" in result.stderr
    assert API_KEY not in result.stdout + result.stderr
    listed = members(sandbox)
    assert len(listed) == 24
    assert listed["grace.hopper@example.com"]["location"]["city"] == "Arlington"
    assert not any(
        key.startswith("_sdc_") for member in listed.values() for key in member.get("properties", {})
    )
    state = json.loads(
        run(str(MELTANO), "state", "get", "dev:tap-sample-to-target-klaviyo", cwd=project).stdout
    )
    bookmark = state["singer_state"]["bookmarks"]["customers"]
    assert bookmark == {"replication_key": "UpdatedAt", "replication_key_value": "2026-11-27T09:00:00+00:00"}
    report = json.loads((project / "output" / "report.json").read_text())
    assert report["counts"]["exported"] == 24
    again = run(str(MELTANO), "run", "tap-sample", "target-klaviyo", cwd=project)
    assert "Run complete: 0 records read = 0 exported" in again.stderr


def segment(name: str) -> list[dict]:
    return [
        json.loads(line) for line in (ROOT / f"sample_data/segments/{name}.jsonl").read_text().splitlines()
    ]


def test_meltano_runs_two_segment_streams_into_two_mirrored_lists(sandbox_factory, tmp_path):
    sandbox = sandbox_factory(lists=("VIPS01", "CHURN1"))
    vips = {row["EmailAddress"] for row in segment("vip_customers")}
    churn = {row["EmailAddress"] for row in segment("churn_risk")}
    seed = [
        sandbox.store.upsert_profile({"email": email})[0] for email in [*vips, "left.the.segment@example.com"]
    ]
    sandbox.store.add_members("VIPS01", seed)
    project = throwaway_project(tmp_path, sandbox.url)
    # Members seeded by hand, not put there by this target: mirror_scope list removes them too.
    definition = yaml.safe_load((project / "meltano.yml").read_text())
    loader = next(p for p in definition["plugins"]["loaders"] if p["name"] == "target-klaviyo-segments")
    loader["config"]["mirror_scope"] = "list"
    (project / "meltano.yml").write_text(yaml.safe_dump(definition, sort_keys=False))
    run(str(MELTANO), "install", cwd=project)
    result = run(
        str(MELTANO),
        "run",
        "tap-sample-segments",
        "target-klaviyo-segments",
        "klaviyo-mirror-segments:apply",
        cwd=project,
    )
    assert "10 records read = 10 exported to 2 lists" in result.stderr
    assert "Removed 1 of the 6 members list VIPS01 had before the run" in result.stderr
    assert set(members(sandbox, "VIPS01")) == vips
    assert set(members(sandbox, "CHURN1")) == churn
    report = json.loads((project / "output" / "segments-report.json").read_text())
    assert report["lists"]["VIPS01"]["removed"] == 1
    opted_in = [
        row for name in ("vip_customers", "churn_risk") for row in segment(name) if row["MarketingOptIn"]
    ]
    assert report["counts"]["subscribed"] == len(opted_in)
    consent = {row["attributes"]["email"]: row["email_marketing"] for row in sandbox.store.members("VIPS01")}
    dated = next(row for row in opted_in if row["EmailAddress"] in vips)
    assert consent[dated["EmailAddress"]]["historical_import"] is True


def test_when_the_tap_fails_part_way_meltano_never_applies_the_mirror(sandbox_factory, tmp_path):
    """The target sees the same end of input whether the tap finished or failed; Meltano knows."""
    sandbox = sandbox_factory(lists=("VIPS01", "CHURN1"))
    rows = segment("vip_customers")
    before = [sandbox.store.upsert_profile({"email": row["EmailAddress"]})[0] for row in rows]
    sandbox.store.add_members("VIPS01", before)
    broken = tmp_path / "vip_customers.jsonl"
    broken.write_text(
        "".join(json.dumps(row) + "\n" for row in rows[:3]) + "not json: the source failed here\n"
    )
    project = throwaway_project(tmp_path, sandbox.url)
    definition = yaml.safe_load((project / "meltano.yml").read_text())
    segments_tap = next(p for p in definition["plugins"]["extractors"] if p["name"] == "tap-sample-segments")
    segments_tap["config"]["streams"][0]["path"] = str(broken)
    (project / "meltano.yml").write_text(yaml.safe_dump(definition, sort_keys=False))
    run(str(MELTANO), "install", cwd=project)
    failed = subprocess.run(
        [
            str(MELTANO),
            "run",
            "tap-sample-segments",
            "target-klaviyo-segments",
            "klaviyo-mirror-segments:apply",
        ],
        cwd=project,
        env={**environment_without_settings(), "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert failed.returncode != 0
    assert "Extractor failed" in failed.stderr
    assert "Removed" not in failed.stderr
    assert set(members(sandbox, "VIPS01")) == {row["EmailAddress"] for row in rows}


def test_two_loaders_at_once_and_a_failing_tap_each_list_mirrored_only_by_its_own_run(
    sandbox_factory, tmp_path
):
    """Two mirror jobs in one project, started 0.5 s apart, with default plan paths: job B's tap fails
    after three rows (the target sees a complete input and plans); Meltano skips B's apply step, and
    A's apply step carries out A's plan only."""
    sandbox = sandbox_factory(lists=("VIPS01", "CHURN1"))
    vips = {row["EmailAddress"] for row in segment("vip_customers")}
    churn_rows = segment("churn_risk")
    churn = {row["EmailAddress"] for row in churn_rows}
    for list_id, emails in (("VIPS01", [*vips, "left.vip@example.com"]), ("CHURN1", sorted(churn))):
        sandbox.store.add_members(list_id, [sandbox.store.upsert_profile({"email": e})[0] for e in emails])
    broken = tmp_path / "churn_risk.jsonl"
    broken.write_text(
        "".join(json.dumps(row) + "\n" for row in churn_rows[:3]) + "not json: the source failed\n"
    )
    project = throwaway_project(tmp_path, sandbox.url)
    definition = yaml.safe_load((project / "meltano.yml").read_text())
    plugins = definition["plugins"]
    segments_tap = next(p for p in plugins["extractors"] if p["name"] == "tap-sample-segments")
    segments_loader = next(p for p in plugins["loaders"] if p["name"] == "target-klaviyo-segments")
    segments_utility = next(p for p in plugins["utilities"] if p["name"] == "klaviyo-mirror-segments")
    for name, stream, list_id, path in (
        ("vip", "vip_customers", "VIPS01", segments_tap["config"]["streams"][0]["path"]),
        ("churn", "churn_risk", "CHURN1", str(broken)),
    ):
        plugins["extractors"].append(
            {"name": f"tap-{name}", "inherit_from": "tap-sample-segments",
             "config": {"streams": [{"name": stream, "path": path}]}, "select": [f"{stream}.*"]}
        )  # fmt: skip
        lists = {
            "stream_lists": {stream: list_id},
            "report_path": f"$MELTANO_PROJECT_ROOT/output/{name}.json",
        }
        plugins["loaders"].append(
            # From the base loader: Meltano merges an inherited object setting (stream_lists) key by key.
            {"name": f"target-{name}", "inherit_from": "target-klaviyo",
             "config": {**segments_loader["config"], **lists, "mirror_max_removal_fraction": 1,
                        "mirror_scope": "list"}}
        )  # fmt: skip
        plugins["utilities"].append(
            {"name": f"mirror-{name}", "inherit_from": "klaviyo-mirror",
             "config": {**segments_utility["config"], **lists}}
        )  # fmt: skip
    (project / "meltano.yml").write_text(yaml.safe_dump(definition, sort_keys=False))
    run(str(MELTANO), "install", cwd=project)
    env = {**environment_without_settings(), "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"}
    jobs = {}
    for name in ("churn", "vip"):
        jobs[name] = subprocess.Popen(
            [str(MELTANO), "run", f"tap-{name}", f"target-{name}", f"mirror-{name}:apply"],
            cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(0.5)
    outputs = {name: job.communicate(timeout=900) for name, job in jobs.items()}
    assert jobs["churn"].returncode != 0
    assert "Removed" not in outputs["churn"][1]
    assert jobs["vip"].returncode == 0, outputs["vip"][1]
    assert "Removed 1 of the 6 members list VIPS01 had before the run" in outputs["vip"][1]
    assert set(members(sandbox, "VIPS01")) == vips
    assert set(members(sandbox, "CHURN1")) == churn, "the failed job's plan was never applied"
    plans = list((project / ".target-klaviyo" / "mirror").glob("*.json"))
    assert len(plans) == 1, "B's plan stays behind, unapplied; A's was used"
    # B's plan, applied by hand (outside B's meltano run) with A's config: refused.
    a_env = {**env, "TARGET_KLAVIYO_API_KEY": API_KEY, "TARGET_KLAVIYO_API_URL": sandbox.url,
             "TARGET_KLAVIYO_STREAM_LISTS": json.dumps({"vip_customers": "VIPS01"}),
             "TARGET_KLAVIYO_SYNC_MODE": "mirror", "TARGET_KLAVIYO_MIRROR_PLAN_PATH": str(plans[0])}  # fmt: skip
    by_hand = subprocess.run(
        [str(MELTANO.with_name("target-klaviyo-mirror"))], cwd=project, env=a_env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert by_hand.returncode == 1
    assert "was made in another meltano run than this one" in by_hand.stderr
    assert set(members(sandbox, "CHURN1")) == churn


def readme_own_project_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- BEGIN own-project commands", 1)[1].split("<!-- END own-project commands", 1)[0]
    code = block.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in code.splitlines() if line.strip()]


def test_the_readmes_own_project_commands_work_as_written(tmp_path):
    """A fresh Meltano project, a checkout at ~/target-klaviyo, and the README's commands verbatim
    (all but the last, which needs the reader's own extractor: it is checked to be what it says)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "target-klaviyo").symlink_to(ROOT)
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(Path.home() / ".cache")}
    run(str(MELTANO), "init", "project", "--no-usage-stats", cwd=tmp_path, env=env)
    project = tmp_path / "project"
    *commands, last = readme_own_project_commands()
    assert last.startswith("meltano run tap-postgres target-klaviyo")
    for command in commands:
        run("bash", "-c", command.replace("meltano ", f"{MELTANO} ", 1), cwd=project, env=env)
    loader = next(p for p in yaml.safe_load((project / "meltano.yml").read_text())["plugins"]["loaders"])
    assert loader["pip_url"] == str(home / "target-klaviyo")
    assert loader["config"]["list_id"] == "XyZ123"
    installed = project / ".meltano" / "loaders" / "target-klaviyo" / "venv" / "bin" / "target-klaviyo"
    assert installed.exists()
    utility = project / ".meltano" / "utilities" / "klaviyo-mirror" / "venv" / "bin" / "target-klaviyo-mirror"
    assert utility.exists(), "the mirror utility installs as written too"
    assert (project / ".env").read_text().strip().endswith("TARGET_KLAVIYO_API_KEY=pk_...")


def test_the_daily_schedule_runs_the_export(sandbox_factory, tmp_path):
    sandbox = sandbox_factory()
    project = throwaway_project(tmp_path, sandbox.url)
    run(str(MELTANO), "install", cwd=project)
    listed = run(str(MELTANO), "schedule", "list", "--format=json", cwd=project).stdout
    schedules = {entry["name"]: entry for entry in json.loads(listed)["schedules"]["job"]}
    assert schedules["daily-klaviyo-export"]["interval"] == "@daily"
    result = run(str(MELTANO), "schedule", "run", "daily-klaviyo-export", cwd=project)
    assert "Run complete: 30 records read" in result.stderr
    assert len(members(sandbox)) == 25
