"""``target-klaviyo-mirror``: remove the members a ``sync_mode: mirror`` run planned to remove.

Run it after the pipeline has succeeded, and only then: as the block after the
pipeline in a Meltano job (``meltano run tap target-klaviyo klaviyo-mirror:apply``,
which Meltano skips when the tap or the target failed), or ``tap | target-klaviyo
--config c.json && target-klaviyo-mirror --config c.json`` under ``set -o pipefail``
(without it, a failed tap does not stop the ``&&``).

It takes the loader's own config: ``--config`` (the JSON file the target was given),
or the ``TARGET_KLAVIYO_*`` environment, as Meltano gives it to a utility whose
namespace is ``target_klaviyo``. The config says where the plan is, and binds it: a
plan is applied only if it comes from the latest mirror run of that config, for its
``api_url`` and lists, and the API key goes only to the config's ``api_url``, never to
one read from a file (:mod:`target_klaviyo.mirror.plan_file` checks the rest). Applying
is exclusive; each confirmed removal request is recorded, so running it again after
an interruption finishes the plan with exact counts; the run's report says how many
were removed from each list, and whether the plan was applied whole or in part.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator

from target_klaviyo.errors import RunError
from target_klaviyo.klaviyo.http import KlaviyoClient
from target_klaviyo.mirror.plan_file import PlanFiles, meltano_run
from target_klaviyo.mirror.plan_format import Plan
from target_klaviyo.mirror.remover import Remover, removal_requests
from target_klaviyo.run.report import record_removals
from target_klaviyo.settings.environment import read_variables
from target_klaviyo.settings.schema import CONFIG_SCHEMA
from target_klaviyo.settings.settings import Settings, SettingsError

logger = logging.getLogger(
    "target_klaviyo.apply_mirror"
)  # the name its lines had before the modules moved into rooms: users' log filters keep working

ENV_PREFIX = "TARGET_KLAVIYO_"


def load_config(config_path: str | None, environ: Mapping[str, str]) -> Settings:
    """The loader's settings from ``--config`` (a JSON file) or else the ``TARGET_KLAVIYO_*`` environment.

    From the environment only the variables that name a setting are read: under Meltano the
    utility's environment also holds Meltano's own variables with the same prefix.
    """
    config: dict[str, Any]
    if config_path not in (None, "ENV"):
        try:
            loaded = json.loads(Path(config_path).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as error:
            raise RunError(
                f"--config {config_path!r} cannot be read as a JSON file ({type(error).__name__})."
            ) from None
        if not isinstance(loaded, dict):
            raise RunError(f"--config {config_path!r} does not hold a JSON object of settings.")
        config = loaded
    else:
        try:
            config = read_variables(CONFIG_SCHEMA, ENV_PREFIX, environ)
        except SettingsError as error:
            raise RunError(str(error)) from None
    if not isinstance(config.get("api_key"), str) or not config["api_key"].strip():
        raise RunError("No API key: set TARGET_KLAVIYO_API_KEY, or give --config the loader's config file.")
    # As strictly as the target checks it (it runs the SDK's validation first), never quoting a value.
    known = {name: value for name, value in config.items() if name in CONFIG_SCHEMA["properties"]}
    for problem in sorted(Draft7Validator(CONFIG_SCHEMA).iter_errors(known), key=lambda e: list(e.path)):
        setting = ".".join(str(part) for part in problem.path) or "the config"
        raise RunError(f"{setting} is not valid ({problem.validator} {problem.validator_value!r}).")
    try:
        settings = Settings.from_config(config)
    except SettingsError as error:
        raise RunError(str(error)) from None
    if not settings.mirror:
        raise RunError(
            "The config's sync_mode is not mirror, so it has no mirror plan: give target-klaviyo-mirror the "
            "config of the loader that mirrors."
        )
    if settings.dry_run:
        raise RunError("The config says dry_run, so target-klaviyo-mirror removes nobody.")
    return settings


def apply(settings: Settings, files: PlanFiles, plan: Plan) -> dict[str, int]:
    """Remove every planned member not yet removed; returns how many of each list's are removed in all.

    Each request Klaviyo confirms is recorded before the next, so an interrupted apply,
    run again, sends only what is left, and the counts are the plan's confirmed requests.
    """
    done = files.done(plan.run_id)
    requests = {list_id: removal_requests(list_plan) for list_id, list_plan in plan.lists.items()}
    # A request counts as done only as the plan has it: a progress line of another size is sent again.
    confirmed = {
        list_id: {index for index, ids in enumerate(batches) if done.get(list_id, {}).get(index) == len(ids)}
        for list_id, batches in requests.items()
    }
    removed = {
        list_id: sum(len(batches[index]) for index in confirmed[list_id])
        for list_id, batches in requests.items()
    }
    client = KlaviyoClient(settings.api_url, settings.api_key, settings.api_revision)
    remover = Remover(client)
    complete = False
    try:
        for list_id, list_plan in plan.lists.items():
            for index, ids in enumerate(requests[list_id]):
                if index in confirmed[list_id]:
                    continue
                remover.remove(list_id, ids, lambda: files.still_latest(plan.run_id))
                files.confirm(plan.run_id, list_id, index, len(ids))
                removed[list_id] += len(ids)
            kept = (
                f"; {list_plan.without_email:,} members without an email were kept"
                if list_plan.without_email
                else ""
            )
            logger.info(
                "Removed %d of the %d members list %s had before the run (sync_mode mirror)%s.",
                removed[list_id],
                list_plan.members_before,
                list_id,
                kept,
            )
        complete = True
    finally:
        client.close()
        planned = {list_id: len(list_plan.remove) for list_id, list_plan in plan.lists.items()}
        record_removals(settings.report_path, plan.run_id, planned, removed, complete=complete)
    files.used()
    return removed


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _version() -> str:
    try:
        return version("target-klaviyo")
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="target-klaviyo-mirror",
        description="Remove the list members that the last sync_mode mirror run of target-klaviyo planned "
        "to remove; run it only after the tap and the target have both succeeded. It takes the "
        "loader's config, which says where the plan is and which lists and api_url it may touch.",
    )
    parser.add_argument(
        "--config",
        help="the loader's JSON config file, or ENV for the TARGET_KLAVIYO_* environment (the default)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    args = parser.parse_args(argv)
    # SIGTERM (how Meltano and schedulers stop a job) ends it like Ctrl-C: the report says what was done.
    signal.signal(signal.SIGTERM, _interrupt)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)-8s | %(name)s | %(message)s")
    files: PlanFiles | None = None
    try:
        settings = load_config(args.config, os.environ)
        files = PlanFiles(settings.mirror_plan_path)
        files.lock("target-klaviyo-mirror")
        plan = files.read(settings.routing, settings.api_url, settings.lists, meltano_run())
        removed = apply(settings, files, plan)
    except RunError as error:
        logger.error("%s", error)
        sys.exit(1)
    except KeyboardInterrupt:
        logger.error(
            "Interrupted: the plan is kept with what was removed so far, and running target-klaviyo-mirror "
            "again finishes it."
        )
        sys.exit(130)
    finally:
        if files is not None:
            files.unlock()
    logger.info(
        "Mirror plan applied: %d members removed from %d list(s).", sum(removed.values()), len(removed)
    )


if __name__ == "__main__":
    main()
