"""What a user may set: the JSON schema of the settings (for ``--about`` and Meltano), each default once.

Every default and every closed set of values is a constant here, and the schema
declares it; :mod:`target_klaviyo.settings.settings` reads the defaults back from
the schema, so that what ``--about`` documents is what a run uses.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, get_args

from singer_sdk import typing as th

from target_klaviyo.klaviyo.endpoints import IMPORT_JOB_CREATE

PROFILE_ATTRIBUTES = (
    "phone_number", "external_id", "first_name", "last_name", "organization", "title", "locale", "image",
)  # fmt: skip
LOCATION_ATTRIBUTES = (
    "address1", "address2", "city", "country", "region", "zip", "timezone", "latitude", "longitude", "ip",
)  # fmt: skip
MAPPABLE_ATTRIBUTES = (*PROFILE_ATTRIBUTES, *(f"location.{name}" for name in LOCATION_ATTRIBUTES))
SyncMode = Literal["upsert", "mirror"]
MirrorScope = Literal["synced", "list"]
OnLimitExceeded = Literal["fail", "truncate"]
CustomPropertiesWord = Literal["unmapped", "none"]  # or a list of property names
DEFAULT_EMAIL_PROPERTY = "email"
DEFAULT_CUSTOM_PROPERTIES: CustomPropertiesWord = "unmapped"
DEFAULT_SYNC_MODE: SyncMode = "upsert"
DEFAULT_ON_LIMIT_EXCEEDED: OnLimitExceeded = "fail"
DEFAULT_API_URL = "https://a.klaviyo.com"
DEFAULT_REVISION = "2026-07-15"
DEFAULT_MAX_PROFILES = 100_000
DEFAULT_MAX_JOBS_IN_FLIGHT = 10
MAX_JOBS_IN_FLIGHT = 50
DEFAULT_STOP_GRACE_SECONDS = 20
DEFAULT_MAX_REMOVAL_FRACTION = 0.5
# More than half the records rejected is never a healthy export (a wrong mapping, a broken source),
# while sources where many rows legitimately lack an email (phone-only customers) stay green.
DEFAULT_MAX_REJECT_FRACTION = 0.5
MIRROR_PLAN_FOLDER = Path(".target-klaviyo") / "mirror"
DEFAULT_LEDGER_PATH = (Path(".target-klaviyo") / "ledger.sqlite").as_posix()
# A week: a member removed by hand in Klaviyo, or a value another integration overwrote, is put
# right within a week, at the cost of sending about a seventh of an unchanged segment each night
# (each person falls due on a day of their own, see ledger/known.py); marketing lists are
# mostly used weekly, and a daily sync that changes 1% would otherwise cost 15x less.
DEFAULT_RESYNC_AFTER_DAYS = 7
MAX_RESYNC_AFTER_DAYS = 365
MAX_BATCH_SIZE_ROWS = IMPORT_JOB_CREATE.max_items  # a batch never needs more than one job

CONFIG_SCHEMA = th.PropertiesList(
    th.Property(
        "api_key",
        th.StringType,
        required=True,
        secret=True,
        title="API key",
        description="Klaviyo private API key (scopes lists:write, profiles:write; for sync_mode "
        "mirror also lists:read, profiles:read; for consent_property subscriptions:write). "
        "Sent as `Authorization: Klaviyo-API-Key <key>`; never logged.",
    ),
    th.Property(
        "list_id",
        th.StringType,
        title="List ID",
        description="The Klaviyo list that receives the profiles of every stream not named in "
        "stream_lists. Required unless stream_lists names every stream.",
    ),
    th.Property(
        "stream_lists",
        th.ObjectType(additional_properties=th.StringType),
        title="Stream lists",
        description='Stream name -> Klaviyo list id, e.g. `{"vip_customers": "AbC123", "churn_risk": '
        '"XyZ789"}`: each stream\'s profiles go to its own list; other streams go to list_id.',
    ),
    th.Property(
        "email_property",
        th.StringType,
        default=DEFAULT_EMAIL_PROPERTY,
        title="Email property",
        description="The record property that holds the email address; a dotted path "
        "(`contact.email`) reaches into nested objects.",
    ),
    th.Property(
        "property_mapping",
        th.ObjectType(
            additional_properties=th.CustomType(
                {
                    "anyOf": [
                        {"type": "string"},
                        {"type": "object", "additionalProperties": {"type": "string"}},
                    ]
                }
            )
        ),
        default={},
        title="Property mapping",
        description="Klaviyo profile attribute -> record property path, e.g. "
        '`{"first_name": "FirstName", "location.city": "Address.City"}` (location may also be '
        'nested: `{"location": {"city": "Address.City"}}`, as Meltano writes dotted keys). Keys: '
        + ", ".join(MAPPABLE_ATTRIBUTES)
        + ".",
    ),
    th.Property(
        "custom_properties",
        # One "type" (not "anyOf") so that --about and Meltano can tell the kind of setting; the
        # names in a list are checked by Settings, in one sentence.
        th.CustomType({"type": ["string", "array"]}),
        default=DEFAULT_CUSTOM_PROPERTIES,
        title="Custom properties",
        description='Record properties sent as custom profile properties: "unmapped" (every '
        'property not used by email_property or property_mapping, never `_sdc_*`), "none", '
        'or a list of property names (in an environment variable, a JSON array: `["plan", "ltv"]`).',
    ),
    th.Property(
        "default_phone_region",
        th.StringType,
        title="Default phone region",
        description="Two-letter country code (ISO 3166-1, e.g. `SE`) for phone numbers written "
        "without their `+` country code: `070-123 45 67` becomes `+46701234567`. Unset, such "
        "numbers are dropped from the profile as invalid.",
    ),
    th.Property(
        "consent_property",
        th.StringType,
        title="Consent property",
        description="Record path whose value says the person consented to email marketing: `true` "
        "(or a date-time, the moment consent was given) subscribes the profile to email marketing "
        "in its list; `false`, null or a missing value only adds it to the list (never an "
        "unsubscribe). Needs the subscriptions:write scope.",
    ),
    th.Property(
        "consented_at_property",
        th.StringType,
        title="Consented at property",
        description="Record path of the date-time consent was given, for a `true` in "
        "consent_property. With a date in the past, the subscription is a historical import: "
        'no confirmation mail, no "added to list" flows.',
    ),
    th.Property(
        "sync_mode",
        th.StringType(allowed_values=list(get_args(SyncMode))),
        default=DEFAULT_SYNC_MODE,
        title="Sync mode",
        description='"upsert": add and update profiles in the list. "mirror": also plan to remove from '
        "each list the members that are not among this run's profiles for it, after a complete run of "
        "full extracts (the tap sends ACTIVATE_VERSION for each stream); target-klaviyo-mirror removes "
        "them once the tap has succeeded too. The profiles stay in Klaviyo.",
    ),
    th.Property(
        "mirror_plan_path",
        th.StringType,
        title="Mirror plan file",
        description="In mirror mode, the file where a run writes the members it plans to remove, for "
        "target-klaviyo-mirror to remove once the whole pipeline has succeeded. Default: "
        f"`{MIRROR_PLAN_FOLDER.as_posix()}/<digest>.json`, one per api_url and set of lists, so two loaders never "
        "share a plan. Its folder must be private to the user.",
    ),
    th.Property(
        "mirror_scope",
        th.StringType(allowed_values=list(get_args(MirrorScope))),
        title="Mirror scope",
        description='In mirror mode, whom a run may remove from a list. "synced" (the default with the '
        "ledger): only the people this target put there (the ledger holds them) who left the segment, "
        'so a run reads only the members who joined since the last run, not the whole list. "list" '
        "(the default with use_ledger false): every member not in the segment, reading the whole list.",
    ),
    th.Property(
        "mirror_max_removal_fraction",
        th.NumberType(minimum=0, maximum=1),
        default=DEFAULT_MAX_REMOVAL_FRACTION,
        title="Mirror max removal fraction",
        description="In mirror mode, the largest share of a list's members one run may remove; a "
        "run that would remove more removes nothing from that list and fails.",
    ),
    th.Property(
        "max_reject_fraction",
        th.NumberType(minimum=0, maximum=1),
        default=DEFAULT_MAX_REJECT_FRACTION,
        title="Max reject fraction",
        description="The largest share of a run's records that may be rejected: a run that rejects "
        "more still exports the rest, then fails (exit 1) naming the most common reason, so a "
        "scheduled job that exports little or nothing never looks like a success. 1 turns it off.",
    ),
    th.Property(
        "max_profiles_per_run",
        th.IntegerType(minimum=0),
        default=DEFAULT_MAX_PROFILES,
        title="Max profiles per run",
        description="The most distinct profiles one run may export; 0 means no limit.",
    ),
    th.Property(
        "on_limit_exceeded",
        th.StringType(allowed_values=list(get_args(OnLimitExceeded))),
        default=DEFAULT_ON_LIMIT_EXCEEDED,
        title="On limit exceeded",
        description='"fail": export exactly max_profiles_per_run profiles, then stop with an '
        'error and no further STATE. "truncate": export the first max_profiles_per_run, skip '
        "the rest with a warning and finish normally.",
    ),
    th.Property(
        "api_url",
        th.StringType,
        default=DEFAULT_API_URL,
        title="API URL",
        description="Base URL of the Klaviyo API. Must be https:// unless the host is "
        "loopback (127.0.0.1, ::1, localhost), such as the bundled klaviyo-sandbox.",
    ),
    th.Property(
        "api_revision",
        th.StringType,
        default=DEFAULT_REVISION,
        title="API revision",
        description="Value of the `revision` header sent with every request.",
    ),
    th.Property(
        "rejects_path",
        th.StringType,
        title="Rejects file",
        description="JSONL file to which every record that was not exported is appended, "
        "with its reason and detail. It holds personal data: protect it like the source.",
    ),
    th.Property(
        "report_path",
        th.StringType,
        title="Report file",
        description="JSON run report written at the end: counts read, exported, "
        "deduplicated, rejected by reason, skipped over the limit; job ids; timings.",
    ),
    th.Property(
        "max_jobs_in_flight",
        th.IntegerType(minimum=1, maximum=MAX_JOBS_IN_FLIGHT),
        default=DEFAULT_MAX_JOBS_IN_FLIGHT,
        title="Max jobs in flight",
        description="How many bulk import jobs may be submitted and not yet finished at once; "
        "at the bound, reading waits. Each holds up to 10,000 profiles in memory.",
    ),
    th.Property(
        "stop_grace_seconds",
        th.IntegerType(minimum=0, maximum=3600),
        default=DEFAULT_STOP_GRACE_SECONDS,
        title="Stop grace seconds",
        description="When a run stops early (SIGTERM, SIGINT or a failure), how long import jobs "
        "already in flight may take to finish before the target exits; their profiles count as "
        "exported, and their STATE is written, only if they do.",
    ),
    th.Property(
        "batch_size_rows",
        th.IntegerType(minimum=1, maximum=MAX_BATCH_SIZE_ROWS),
        title="Batch size rows",
        description="Records per batch; each full batch is submitted as one import job "
        f"(at most {MAX_BATCH_SIZE_ROWS:,}, Klaviyo's limit per job, which is also the default).",
    ),
    th.Property(
        "use_ledger",
        th.BooleanType,
        default=True,
        title="Use the ledger",
        description="Remember, per list, what Klaviyo confirmed for each person, and send only the "
        "profiles that changed (or are due again after resync_after_days); false sends everyone "
        "every run and neither reads nor writes a ledger.",
    ),
    th.Property(
        "ledger_path",
        th.StringType,
        default=DEFAULT_LEDGER_PATH,
        title="Ledger file",
        description="The SQLite file of the ledger, created owner-only; relative to the working "
        "folder (the Meltano project under meltano run). One ledger serves one api_url. It holds "
        "hashes of emails, never the addresses.",
    ),
    th.Property(
        "ledger_url",
        th.StringType,
        secret=True,
        title="Ledger database URL",
        description="Instead of ledger_path, a SQLAlchemy URL of a database for the ledger, for "
        "workers without a lasting disk: `postgresql+psycopg://user:password@host/db` (install "
        "target-klaviyo[postgres]) or `sqlite:///path`. Its tables are named target_klaviyo_ledger_*.",
    ),
    th.Property(
        "resync_after_days",
        th.IntegerType(minimum=1, maximum=MAX_RESYNC_AFTER_DAYS),
        default=DEFAULT_RESYNC_AFTER_DAYS,
        title="Resync after days",
        description="A profile Klaviyo has not confirmed for this many days is sent again even if "
        "unchanged, so that what changed in Klaviyo alone (a member removed by hand) is put right "
        "within that time. Each person falls due on a day of their own, in the second half of it.",
    ),
    th.Property(
        "full_refresh",
        th.BooleanType,
        default=False,
        title="Full refresh",
        description="Send every profile this run, whatever the ledger says, and record each one "
        "Klaviyo confirms (also TARGET_KLAVIYO_FULL_REFRESH=true for one run).",
    ),
    th.Property(
        "dry_run",
        th.BooleanType,
        default=False,
        title="Dry run",
        description="Read, map, validate, dedupe and count everything, but send nothing to "
        "Klaviyo; log what would have been sent.",
    ),
).to_dict()


def null_as_schema(schema: Any) -> Any:
    """singer-sdk 0.54.9 makes an optional ``anyOf`` property nullable by appending the bare
    string ``"null"`` to the ``anyOf`` list, which is not a schema (not valid Draft 7: the
    validator crashes on it); replace it with ``{"type": "null"}``."""
    if isinstance(schema, dict):
        return {
            key: [{"type": "null"} if item == "null" else null_as_schema(item) for item in value]
            if key == "anyOf"
            else null_as_schema(value)
            for key, value in schema.items()
        }
    return schema


CONFIG_SCHEMA = null_as_schema(CONFIG_SCHEMA)
# What a config that leaves a setting out gets, read back from the schema: the documented default is the one used.
DEFAULTS: dict[str, Any] = {
    name: prop["default"] for name, prop in CONFIG_SCHEMA["properties"].items() if "default" in prop
}


def unknown_setting_error(name: str, known: list[str]) -> str:
    """One sentence for a setting name that does not exist, with the closest known one."""
    closest = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = (
        f"; did you mean {closest[0]!r}?" if closest else f"; the settings are: {', '.join(sorted(known))}."
    )
    return f"There is no setting {name[:60]!r}{hint}"
