"""The mirror plan on disk: bound to the latest run of one config, private, exclusive, and read as
strictly as a setting (every fault one sentence)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from target_klaviyo.errors import RunError
from target_klaviyo.mirror.plan_file import PlanFiles
from target_klaviyo.mirror.plan_format import ListPlan

URL = "http://127.0.0.1:9"
ROUTING = "0123456789abcdef"


def written(tmp_path: Path, *plans: ListPlan) -> tuple[PlanFiles, str]:
    files = PlanFiles(tmp_path / "mirror" / "plan.json")
    files.prepare()
    run_id = files.start_run()
    files.write(run_id, ROUTING, URL, list(plans) or [ListPlan("L1", 3, 3, 0, ["P1"])])
    return files, run_id


def edit(files: PlanFiles, **changes) -> None:
    document = json.loads(files.path.read_text())
    document.update(changes)
    files.path.write_text(json.dumps(document))


def refused(files: PlanFiles, match: str, lists=("L1",)) -> str:
    with pytest.raises(RunError, match=match) as raised:
        files.read(ROUTING, URL, list(lists))
    sentence = str(raised.value)
    assert "\n" not in sentence
    return sentence


def test_a_plan_reads_back_as_written(tmp_path):
    files, run_id = written(tmp_path, ListPlan("L1", 5, 6, 1, ["P1", "P2"]))
    plan = files.read(ROUTING, URL, ["L1", "L2"])
    assert plan.run_id == run_id
    assert plan.lists["L1"] == ListPlan("L1", 5, 6, 1, ["P1", "P2"])
    assert files.path.stat().st_mode & 0o777 == 0o600
    assert files.path.parent.stat().st_mode & 0o777 == 0o700


def test_only_the_latest_run_of_this_config_for_its_url_and_lists(tmp_path):
    files, _ = written(tmp_path)
    refused(files, "removes members from list L1, which is not among this config's lists", lists=("L2",))
    with pytest.raises(RunError, match="was made for another api_url"):
        files.read(ROUTING, "http://127.0.0.1:10", ["L1"])
    with pytest.raises(RunError, match="made by a loader whose api_url, list_id or stream_lists differ"):
        files.read("fedcba9876543210", URL, ["L1"])
    copy = files.path.read_bytes()
    files.start_run()  # a newer run: the plan is deleted; a copy put back is not its plan
    assert not files.path.exists()
    files.path.write_bytes(copy)
    os.chmod(files.path, 0o600)
    refused(files, "is not from the latest mirror run of this config")


def test_a_plan_and_its_marker_put_back_together_are_refused(tmp_path):
    """Found by the hostile review of issue 16: both files restored from a copy, after a newer run
    or after the plan was applied. Here the run "wrote" them two minutes ago, and they were
    put back now."""
    files, _ = written(tmp_path)
    document = json.loads(files.path.read_text())
    document["created_at"] -= 120
    files.path.write_text(json.dumps(document))
    refused(files, "or its marker was put there after its run wrote it")


@pytest.mark.parametrize(
    ("changes", "text"),
    [
        ({"created_at": 3600}, "made in the future"),  # seconds from now, when the test runs
        ({"created_at": -7200}, "120 minutes old"),
        (
            {"lists": {"L1/../L2": {"members_before": 1, "members": 1, "without_email": 0, "remove": []}}},
            None,
        ),
        (
            {
                "lists": {
                    "L1": {"members_before": 1, "members": 1, "without_email": 0, "remove": ["P1", "P2"]}
                }
            },
            None,
        ),
        ({"lists": {"L1": {"members_before": True, "members": 1, "without_email": 0, "remove": []}}}, None),
        (
            {"lists": {"L1": {"members_before": 1, "members": 1, "without_email": 0, "remove": ["../x"]}}},
            None,
        ),
        ({"lists": []}, None),
        ({"format": "something else"}, None),
        ({"run_id": 5}, None),
    ],
)
def test_every_value_is_checked(tmp_path, changes, text):
    files, _ = written(tmp_path)
    if "created_at" in changes:
        changes = {"created_at": time.time() + changes["created_at"]}
    edit(files, **changes)
    refused(files, text or "is not one target-klaviyo wrote")


@pytest.mark.parametrize(
    "raw",
    [
        '"members_before": 1e400',
        '"created_at": NaN',
        '"created_at": Infinity',
        '"created_at": -' + "9" * 400,  # an integer: no float can hold it, and none is made
        '"deep": ' + "[" * 100_000 + "]" * 100_000,
    ],
)
def test_numbers_json_cannot_hold_and_deep_nesting_are_one_sentence(tmp_path, raw):
    files, _ = written(tmp_path)
    text = files.path.read_text()
    files.path.write_text(text[:-1] + ", " + raw + "}")
    refused(files, "cannot be read|is not one target-klaviyo wrote")


def test_a_plan_others_may_read_or_a_folder_others_may_write_is_refused(tmp_path):
    files, _ = written(tmp_path)
    os.chmod(files.path, 0o644)
    refused(files, r"can be read or written by other users \(mode 0644\)")
    os.chmod(files.path, 0o600)
    os.chmod(files.path.parent, 0o777)
    refused(files, r"can be written by other users \(mode 0777\)")
    with pytest.raises(RunError, match="can be written by other users"):
        files.prepare()


def test_folders_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        files = PlanFiles(tmp_path / "a" / "b" / "plan.json")
        files.prepare()
        files.write(files.start_run(), ROUTING, URL, [])
    finally:
        os.umask(old)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o700
    assert files.path.stat().st_mode & 0o777 == 0o600


def test_a_file_target_klaviyo_did_not_write_is_never_deleted(tmp_path):
    (tmp_path / "mirror").mkdir(mode=0o700)
    precious = tmp_path / "mirror" / "plan.json"
    precious.write_text("customer list, not a plan\n")
    with pytest.raises(RunError, match="holds a file target-klaviyo did not write"):
        PlanFiles(precious).prepare()
    assert precious.read_text() == "customer list, not a plan\n"


def test_one_user_at_a_time(tmp_path):
    files, _ = written(tmp_path)
    files.lock("target-klaviyo")
    other = PlanFiles(files.path)
    with pytest.raises(RunError, match="Another target-klaviyo mirror run or target-klaviyo-mirror is using"):
        other.lock("target-klaviyo-mirror")
    files.unlock()
    other.lock("target-klaviyo-mirror")
    other.unlock()


def test_progress_is_per_run_and_survives_a_line_cut_short(tmp_path):
    files, run_id = written(tmp_path)
    files.confirm(run_id, "L1", 0, 1000)
    files.confirm("another", "L1", 1, 1000)
    with files.progress_path.open("a") as progress:
        progress.write('{"run_id": "' + run_id + '", "li')
    assert files.done(run_id) == {"L1": {0: 1000}}
    files.used()
    assert not files.path.exists()
    assert not files.progress_path.exists()
