"""The target's settings: their JSON schema (for ``--about`` and Meltano) and their checks.

Everything a user can get wrong in the configuration is caught here, before any
input is read, and reported as one sentence that names the setting.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import phonenumbers
from singer_sdk import typing as th

from target_klaviyo.files import make_private_folders

PROFILE_ATTRIBUTES = (
    "phone_number", "external_id", "first_name", "last_name", "organization", "title", "locale", "image",
)  # fmt: skip
LOCATION_ATTRIBUTES = (
    "address1", "address2", "city", "country", "region", "zip", "timezone", "latitude", "longitude", "ip",
)  # fmt: skip
MAPPABLE_ATTRIBUTES = (*PROFILE_ATTRIBUTES, *(f"location.{name}" for name in LOCATION_ATTRIBUTES))
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
LOOPBACK_HOSTS = {"localhost"}
MAX_BATCH_SIZE_ROWS = 10_000
LIST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
REVISION = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(\.[a-z]+)?$")
HEADER_SAFE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII without spaces: safe in an HTTP header

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
        default="email",
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
        default="unmapped",
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
        th.StringType(allowed_values=["upsert", "mirror"]),
        default="upsert",
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
        "`.target-klaviyo/mirror/<digest>.json`, one per api_url and set of lists, so two loaders never "
        "share a plan. Its folder must be private to the user.",
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
        th.StringType(allowed_values=["fail", "truncate"]),
        default="fail",
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


class SettingsError(ValueError):
    """A setting that cannot work; the message is one sentence naming it."""


@dataclass(frozen=True)
class Settings:
    api_key: str
    list_id: str | None
    email_path: tuple[str, ...]
    attribute_paths: Mapping[str, tuple[str, ...]]
    custom_properties: Literal["unmapped", "none"] | tuple[str, ...]
    max_profiles: int
    on_limit_exceeded: Literal["fail", "truncate"]
    api_url: str
    api_revision: str
    rejects_path: Path | None
    report_path: Path | None
    dry_run: bool
    max_jobs_in_flight: int = DEFAULT_MAX_JOBS_IN_FLIGHT
    stop_grace_seconds: int = DEFAULT_STOP_GRACE_SECONDS
    default_phone_region: str | None = None
    stream_lists: Mapping[str, str] = field(default_factory=dict)
    consent_path: tuple[str, ...] | None = None
    consented_at_path: tuple[str, ...] | None = None
    sync_mode: Literal["upsert", "mirror"] = "upsert"
    max_removal_fraction: float = DEFAULT_MAX_REMOVAL_FRACTION
    max_reject_fraction: float = DEFAULT_MAX_REJECT_FRACTION
    mirror_plan_path: Path = MIRROR_PLAN_FOLDER / "plan.json"

    @property
    def mirror(self) -> bool:
        return self.sync_mode == "mirror"

    @property
    def routing(self) -> str:
        """The digest a mirror plan is bound to: this loader's api_url, list_id and stream_lists."""
        return routing_digest(self.api_url, self.list_id, self.stream_lists)

    def list_for(self, stream: str) -> str | None:
        """The list a stream's profiles go to: its own in stream_lists, else list_id."""
        return self.stream_lists.get(stream, self.list_id)

    @property
    def lists(self) -> list[str]:
        """Every list the run may send to, each once, list_id first."""
        return list(dict.fromkeys([*([self.list_id] if self.list_id else []), *self.stream_lists.values()]))

    def __post_init__(self) -> None:
        if not self.lists:
            msg = "No Klaviyo list is set: set list_id, or stream_lists for each stream."
            raise SettingsError(msg)
        if self.consented_at_path is not None and self.consent_path is None:
            msg = "consented_at_property is set without consent_property, which says who consented."
            raise SettingsError(msg)
        outputs = {"rejects_path": self.rejects_path, "report_path": self.report_path}
        if self.mirror:
            plan = self.mirror_plan_path
            outputs["mirror_plan_path"] = plan
            # The files the plan owns beside it (mirror_plan.PlanFiles) must not be another output either.
            for suffix in (".run", ".lock", ".progress"):
                outputs[f"mirror_plan_path (its {suffix} file)"] = plan.with_name(plan.name + suffix)
        named: dict[Path, str] = {}
        for setting, path in outputs.items():
            if path is None:
                continue
            other = named.setdefault(path.resolve(), setting)
            if other != setting:
                msg = f"{other} and {setting} name the same file; give each its own."
                raise SettingsError(msg)

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> Settings:
        """Check a (schema-valid) config for what its JSON schema cannot express.

        ``null`` means "not set": the SDK makes every optional setting nullable, and
        Meltano writes ``null`` for a setting that was unset.
        """
        config = {name: value for name, value in raw.items() if value is not None}
        mapping = _flat_mapping(config.get("property_mapping") or {})
        unknown = sorted(set(mapping) - set(MAPPABLE_ATTRIBUTES))
        if unknown:
            msg = (
                f"property_mapping has unknown Klaviyo attribute(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(MAPPABLE_ATTRIBUTES)}."
            )
            raise SettingsError(msg)
        custom = _custom_properties(config.get("custom_properties", "unmapped"))
        list_id = _list_id(config["list_id"]) if "list_id" in config else None
        stream_lists = {
            stream: _list_id(value, f"stream_lists.{stream}")
            for stream, value in (config.get("stream_lists") or {}).items()
        }
        api_url = check_api_url(config.get("api_url", DEFAULT_API_URL))
        return cls(
            api_key=check_api_key(config["api_key"]),
            list_id=list_id,
            stream_lists=stream_lists,
            email_path=_path(config.get("email_property", "email"), "email_property"),
            attribute_paths={key: _path(path, f"property_mapping.{key}") for key, path in mapping.items()},
            custom_properties=custom,
            max_profiles=config.get("max_profiles_per_run", DEFAULT_MAX_PROFILES),
            on_limit_exceeded=config.get("on_limit_exceeded", "fail"),
            api_url=api_url,
            api_revision=check_revision(config.get("api_revision", DEFAULT_REVISION)),
            rejects_path=_output_path(config.get("rejects_path"), "rejects_path"),
            report_path=_output_path(config.get("report_path"), "report_path"),
            dry_run=bool(config.get("dry_run", False)),
            max_jobs_in_flight=config.get("max_jobs_in_flight", DEFAULT_MAX_JOBS_IN_FLIGHT),
            stop_grace_seconds=config.get("stop_grace_seconds", DEFAULT_STOP_GRACE_SECONDS),
            default_phone_region=_phone_region(config.get("default_phone_region")),
            consent_path=_optional_path(config, "consent_property"),
            consented_at_path=_optional_path(config, "consented_at_property"),
            sync_mode=config.get("sync_mode", "upsert"),
            max_removal_fraction=float(
                config.get("mirror_max_removal_fraction", DEFAULT_MAX_REMOVAL_FRACTION)
            ),
            max_reject_fraction=float(config.get("max_reject_fraction", DEFAULT_MAX_REJECT_FRACTION)),
            mirror_plan_path=_mirror_plan_path(config, api_url, list_id, stream_lists),
        )


def routing_digest(api_url: str, list_id: str | None, stream_lists: Mapping[str, str]) -> str:
    """What makes two loader configs one loader for mirroring: the account URL and where each stream goes."""
    routing = json.dumps([api_url, list_id, sorted(stream_lists.items())])
    return hashlib.sha256(routing.encode()).hexdigest()[:16]


def default_plan_path(api_url: str, list_id: str | None, stream_lists: Mapping[str, str]) -> Path:
    """``.target-klaviyo/mirror/<digest>.json``: one per Klaviyo account URL and routing of streams
    to lists, so two loaders never share a plan by default, and target-klaviyo-mirror finds it from
    the same config."""
    return MIRROR_PLAN_FOLDER / f"{routing_digest(api_url, list_id, stream_lists)}.json"


def _mirror_plan_path(
    config: Mapping[str, Any], api_url: str, list_id: str | None, stream_lists: Mapping[str, str]
) -> Path:
    """The plan's path; its folder is created and checked by the run (mirror_plan.PlanFiles.prepare)."""
    value = config.get("mirror_plan_path")
    if not value:
        return default_plan_path(api_url, list_id, stream_lists)
    path = _expanded(value, "mirror_plan_path")
    try:
        is_folder = path.is_dir()
    except OSError as error:
        msg = f"mirror_plan_path {str(path)[:100]!r} cannot be used ({error.strerror})."
        raise SettingsError(msg) from None
    if config.get("sync_mode") == "mirror" and is_folder:
        msg = f"mirror_plan_path {str(path)!r} is a folder; name a file in it."
        raise SettingsError(msg)
    return path


def _expanded(value: str, setting: str) -> Path:
    """``value`` as a path, ``~`` expanded; a name no file can have is one sentence."""
    if "\0" in value:
        msg = f"{setting} holds a NUL character, which no file name can."
        raise SettingsError(msg)
    try:
        return Path(value).expanduser()
    except RuntimeError:  # ~user of a user this machine does not have
        msg = f"{setting} {value[:100]!r} names the home folder of a user this machine does not have."
        raise SettingsError(msg) from None


def _optional_path(config: Mapping[str, Any], setting: str) -> tuple[str, ...] | None:
    return _path(config[setting], setting) if config.get(setting) else None


def _phone_region(value: str | None) -> str | None:
    if value is None:
        return None
    region = value.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        msg = (
            f"default_phone_region must be a two-letter country code that has phone numbers "
            f"(ISO 3166-1, such as SE or US), not {value[:20]!r}."
        )
        raise SettingsError(msg)
    return region


def _flat_mapping(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """``{"location": {"city": "X"}}`` -> ``{"location.city": "X"}``; other keys unchanged."""
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}.{sub_key}": path for sub_key, path in value.items()})
        else:
            flat[key] = value
    return flat


def _custom_properties(value: str | list[str]) -> Literal["unmapped", "none"] | tuple[str, ...]:
    if isinstance(value, list):
        names: Any = value
    elif value in {"unmapped", "none"}:
        return value  # type: ignore[return-value]
    else:
        try:
            names = json.loads(value)
        except ValueError:
            names = None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        msg = f'custom_properties must be "unmapped", "none" or a list of property names, not {str(value)[:60]!r}.'
        raise SettingsError(msg)
    return tuple(names)


def check_api_key(value: str) -> str:
    """The key without surrounding whitespace (a CRLF .env file adds some); never echoed."""
    key = value.strip()
    if not key:
        msg = "api_key must not be empty."
        raise SettingsError(msg)
    if not HEADER_SAFE.match(key):
        msg = (
            "api_key has characters that cannot be sent in an HTTP header (spaces, control or "
            "non-ASCII characters); its value is not shown because it is secret."
        )
        raise SettingsError(msg)
    return key


def _list_id(value: str, name: str = "list_id") -> str:
    list_id = value.strip()
    if not LIST_ID.match(list_id):
        msg = f"{name} {list_id[:70]!r} is not a Klaviyo list id (letters and digits, like XyZ123)."
        raise SettingsError(msg)
    return list_id


def check_revision(value: str) -> str:
    if not REVISION.match(value):
        msg = f"api_revision {value[:40]!r} is not a Klaviyo API revision (a date like {DEFAULT_REVISION})."
        raise SettingsError(msg)
    return value


def _output_path(value: str | None, setting: str) -> Path | None:
    """A file the run will write: checked now, before any input is read, and its folder created."""
    if not value:
        return None
    path = _expanded(value, setting)
    try:
        return _checked_output(path, setting)
    except OSError as error:  # a name too long, say
        msg = f"{setting} {str(path)[:100]!r} cannot be used ({error.strerror or type(error).__name__})."
        raise SettingsError(msg) from None


def _checked_output(path: Path, setting: str) -> Path:
    """A regular file this user may write, its folder created private; else one sentence."""
    if path.is_dir():
        msg = f"{setting} {str(path)!r} is a folder; name a file in it."
        raise SettingsError(msg)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        msg = f"{setting} {str(path)!r} is a link or a special file; name a regular file."
        raise SettingsError(msg)
    try:
        make_private_folders(path.parent)
    except OSError as error:
        msg = f"{setting}: the folder {str(path.parent)!r} cannot be created ({error.strerror})."
        raise SettingsError(msg) from None
    writable = os.access(path, os.W_OK) if path.exists() else os.access(path.parent, os.W_OK | os.X_OK)
    if not writable:
        msg = f"{setting} {str(path)!r} cannot be written by this user."
        raise SettingsError(msg)
    return path


def _path(dotted: str, setting: str) -> tuple[str, ...]:
    parts = tuple(dotted.split("."))
    if not all(parts):
        msg = f"{setting} {dotted!r} is not a property path (use names joined by dots, like contact.email)."
        raise SettingsError(msg)
    return parts


def check_api_url(url: str) -> str:
    """Refuse a URL that would send the API key in clear text to another machine."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed IPv6 bracket, say
        msg = f"api_url {url[:100]!r} is not an http(s) URL."
        raise SettingsError(msg) from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        msg = f"api_url {url[:100]!r} is not an http(s) URL."
        raise SettingsError(msg)
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        msg = f"api_url {url[:100]!r} has a port that is not a number from 1 to 65535."
        raise SettingsError(msg)
    if parts.query or parts.fragment or parts.username or parts.password:
        msg = "api_url must be a plain base URL, without a query, a fragment or credentials."
        raise SettingsError(msg)
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        msg = (
            f"api_url must use https:// unless its host is loopback (got host {parts.hostname!r}): "
            "the API key must not travel in clear text."
        )
        raise SettingsError(msg)
    return url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def unknown_setting_error(name: str, known: list[str]) -> str:
    """One sentence for a setting name that does not exist, with the closest known one."""
    closest = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = (
        f"; did you mean {closest[0]!r}?" if closest else f"; the settings are: {', '.join(sorted(known))}."
    )
    return f"There is no setting {name[:60]!r}{hint}"


NOT_SETTINGS = {"LOGLEVEL", "LOG_LEVEL"}  # read by the SDK's logging, not settings


def parse_environment(schema: Mapping[str, Any], prefix: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings from ``<PREFIX><NAME>`` environment variables, parsed as strictly as a config file.

    A boolean is ``true`` or ``false``, a number is a number, an object or a list is
    JSON, and a setting that may be text or a list (``custom_properties``) is a list
    only when its value is a JSON array. A ``<PREFIX>`` variable that names no setting
    is an error, like a misspelt key in a config file (Meltano's own extras, with a
    double underscore after the prefix, and the log level are not settings).
    """
    names = {prefix + name.upper().replace("-", "_"): name for name in schema.get("properties", {})}
    for variable in sorted(environ):
        rest = variable[len(prefix) :]
        setting_like = variable.startswith(prefix) and not rest.startswith("_") and rest not in NOT_SETTINGS
        if setting_like and variable not in names:
            raise SettingsError(unknown_setting_error(variable, list(names)))
    config: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        variable = prefix + name.upper().replace("-", "_")
        if variable in environ:
            config[name] = parse_variable(variable, environ[variable], property_kinds(prop))
    return config


def property_kinds(prop: Mapping[str, Any]) -> set[str]:
    kinds: set[str] = set()
    declared = prop.get("type")
    if isinstance(declared, str):
        kinds.add(declared)
    elif isinstance(declared, list):
        kinds.update(declared)
    for option in prop.get("anyOf", []) + prop.get("oneOf", []):
        kinds |= property_kinds(option)
    return kinds - {"null"}


def parse_variable(variable: str, value: str, kinds: set[str]) -> Any:
    text = value.strip()
    if kinds == {"boolean"}:
        if text.lower() not in {"true", "false"}:
            msg = f"{variable} must be true or false."
            raise SettingsError(msg)
        return text.lower() == "true"
    if kinds <= {"integer", "number"} and kinds:
        try:
            return int(text) if kinds == {"integer"} else float(text)
        except (ValueError, RecursionError):
            kind = "a whole number" if kinds == {"integer"} else "a number"
            raise SettingsError(f"{variable} must be {kind}.") from None
    wants_json = kinds <= {"object", "array"} and kinds
    if wants_json or ("array" in kinds and text.startswith("[")):
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            parsed = None
        allowed = tuple(python for kind, python in (("object", dict), ("array", list)) if kind in kinds)
        if not isinstance(parsed, allowed):
            what = " or ".join(sorted(f"a JSON {kind}" for kind in kinds & {"object", "array"}))
            raise SettingsError(f"{variable} must be {what}.")
        return parsed
    return value
