"""``target-klaviyo-mirror``: remove the members a ``sync_mode: mirror`` run planned to remove.

Run it after the pipeline has succeeded, and only then: as the block after the
pipeline in a Meltano job (``meltano run tap target-klaviyo klaviyo-mirror:apply``,
which Meltano skips when the tap or the target failed), or ``tap | target-klaviyo
--config c.json && target-klaviyo-mirror --plan p.json`` under ``set -o pipefail``.
Everything it needs but the API key is in the plan (the API URL and revision, the
lists, the members to remove, the report to update); the key comes from
``TARGET_KLAVIYO_API_KEY`` or ``--config``, as for the target. A plan is used once,
within a day of the run that made it; the plan is deleted once it is applied, and
the removals are added to that run's report.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from target_klaviyo.client import KlaviyoClient
from target_klaviyo.errors import RunError
from target_klaviyo.mirror import ListPlan, remove
from target_klaviyo.report import write_whole
from target_klaviyo.settings import (
    DEFAULT_MIRROR_PLAN,
    SettingsError,
    check_api_key,
    check_api_url,
    check_revision,
)

logger = logging.getLogger("target_klaviyo.apply_mirror")

MAX_PLAN_AGE = 24 * 3600.0
ENV_PREFIX = "TARGET_KLAVIYO_"


def api_key(config_path: str | None) -> str:
    """The key from ``--config`` (a JSON file, or ENV) or else from ``TARGET_KLAVIYO_API_KEY``; never shown."""
    if config_path not in (None, "ENV"):
        try:
            loaded = json.loads(Path(config_path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise RunError(
                f"--config {config_path!r} cannot be read as a JSON file ({type(error).__name__})."
            ) from None
        key = loaded.get("api_key") if isinstance(loaded, dict) else None
    else:
        key = os.environ.get(f"{ENV_PREFIX}API_KEY")
    if not isinstance(key, str) or not key.strip():
        raise RunError("No API key: set TARGET_KLAVIYO_API_KEY, or give --config a file with api_key.")
    return check_api_key(key)


@dataclass
class Plan:
    path: Path
    api_url: str
    api_revision: str
    report_path: Path | None
    lists: dict[str, ListPlan]


def read_plan(path: Path) -> Plan:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(
            f"There is no mirror plan at {str(path)!r}: run target-klaviyo with sync_mode mirror first "
            "(a plan is used once)."
        ) from None
    except (OSError, ValueError) as error:
        raise RunError(f"The mirror plan at {str(path)!r} cannot be read ({type(error).__name__}).") from None
    try:
        age = time.time() - float(document["created_at"])
        report = document["report_path"]
        plan = Plan(
            path,
            check_api_url(document["api_url"]),
            check_revision(document["api_revision"]),
            Path(report) if report else None,
            {
                list_id: ListPlan(
                    list_id, int(entry["members_before"]), int(entry["members"]), list(entry["remove"])
                )
                for list_id, entry in document["lists"].items()
            },
        )
    except (KeyError, TypeError, ValueError, AttributeError, SettingsError):
        raise RunError(f"The mirror plan at {str(path)!r} is not one target-klaviyo wrote.") from None
    if age > MAX_PLAN_AGE:
        raise RunError(
            f"The mirror plan at {str(path)!r} is {age / 3600:.0f} hours old: run the pipeline again rather "
            "than remove members by an old picture of the segment."
        )
    return plan


def apply(plan: Plan, key: str) -> dict[str, int]:
    """Remove every planned member; returns how many were removed from each list."""
    client = KlaviyoClient(plan.api_url, key, plan.api_revision)
    removed: dict[str, int] = {}
    try:
        for list_id, list_plan in plan.lists.items():
            removed[list_id] = 0
            for count in remove(client, list_plan):
                removed[list_id] += count
            logger.info(
                "Removed %d of the %d members list %s had before the run (sync_mode mirror).",
                removed[list_id],
                list_plan.members_before,
                list_id,
            )
    finally:
        client.close()
        if removed:
            _add_to_report(plan.report_path, removed)
    plan.path.unlink(missing_ok=True)
    return removed


def _add_to_report(path: Path | None, removed: dict[str, int]) -> None:
    """Add the removals to the run's report, if it has one: counts, each list, the lists touched."""
    if path is None or not path.is_file():
        return
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        report["counts"]["removed"] = report["counts"].get("removed", 0) + sum(removed.values())
        for list_id, count in removed.items():
            entry = report["lists"].setdefault(list_id, {})
            entry["removed"] = entry.get("removed", 0) + count
            if isinstance(entry.get("mirror"), dict):
                entry["mirror"]["outcome"] = "mirrored"
        touched = {
            *report.get("lists_touched", []),
            *(list_id for list_id, count in removed.items() if count),
        }
        report["lists_touched"] = sorted(touched)
        write_whole(path, json.dumps(report, indent=2) + "\n", "report_path")
    except (RunError, OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        logger.warning("The run's report could not be updated with the removals (%s).", type(error).__name__)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="target-klaviyo-mirror",
        description="Remove the list members that the last sync_mode mirror run of target-klaviyo planned "
        "to remove; run it only after the tap and the target have both succeeded.",
    )
    parser.add_argument(
        "--plan", default=DEFAULT_MIRROR_PLAN, help=f"the plan file (default {DEFAULT_MIRROR_PLAN})"
    )
    parser.add_argument("--config", help="a JSON config file with api_key, or ENV (TARGET_KLAVIYO_API_KEY)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)-8s | %(name)s | %(message)s")
    try:
        removed = apply(read_plan(Path(args.plan).expanduser()), api_key(args.config))
    except RunError as error:
        logger.error("%s", error)
        sys.exit(1)
    except KeyboardInterrupt:
        logger.error("Interrupted: the plan is kept, and running target-klaviyo-mirror again finishes it.")
        sys.exit(130)
    logger.info(
        "Mirror plan applied: %d members removed from %d list(s).", sum(removed.values()), len(removed)
    )


if __name__ == "__main__":
    main()
