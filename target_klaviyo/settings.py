"""The target's settings: their JSON schema (for ``--about`` and Meltano) and their checks.

Everything a user can get wrong in the configuration is caught here, before any
input is read, and reported as one sentence that names the setting.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from singer_sdk import typing as th

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
LOOPBACK_HOSTS = {"localhost"}

CONFIG_SCHEMA = th.PropertiesList(
    th.Property(
        "api_key",
        th.StringType,
        required=True,
        secret=True,
        title="API key",
        description="Klaviyo private API key (scopes lists:write, profiles:write). "
        "Sent as `Authorization: Klaviyo-API-Key <key>`; never logged.",
    ),
    th.Property(
        "list_id",
        th.StringType,
        required=True,
        title="List ID",
        description="The Klaviyo list that receives the profiles.",
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
        th.CustomType({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
        default="unmapped",
        title="Custom properties",
        description='Record properties sent as custom profile properties: "unmapped" (every '
        'property not used by email_property or property_mapping, never `_sdc_*`), "none", '
        'or a list of property names (in an environment variable, a JSON array: `["plan", "ltv"]`).',
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
        description="On SIGTERM or SIGINT, how long import jobs already in flight may take to "
        "finish before the target exits; their profiles count as exported only if they do.",
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


class SettingsError(ValueError):
    """A setting that cannot work; the message is one sentence naming it."""


@dataclass(frozen=True)
class Settings:
    api_key: str
    list_id: str
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

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Check a (schema-valid) config for what its JSON schema cannot express."""
        mapping = _flat_mapping(config.get("property_mapping") or {})
        unknown = sorted(set(mapping) - set(MAPPABLE_ATTRIBUTES))
        if unknown:
            msg = (
                f"property_mapping has unknown Klaviyo attribute(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(MAPPABLE_ATTRIBUTES)}."
            )
            raise SettingsError(msg)
        custom = _custom_properties(config.get("custom_properties", "unmapped"))
        return cls(
            api_key=config["api_key"],
            list_id=_non_empty(config, "list_id"),
            email_path=_path(config.get("email_property", "email"), "email_property"),
            attribute_paths={key: _path(path, f"property_mapping.{key}") for key, path in mapping.items()},
            custom_properties=custom,
            max_profiles=config.get("max_profiles_per_run", DEFAULT_MAX_PROFILES),
            on_limit_exceeded=config.get("on_limit_exceeded", "fail"),
            api_url=_api_url(config.get("api_url", DEFAULT_API_URL)),
            api_revision=config.get("api_revision", DEFAULT_REVISION),
            rejects_path=_optional_path(config.get("rejects_path")),
            report_path=_optional_path(config.get("report_path")),
            dry_run=bool(config.get("dry_run", False)),
            max_jobs_in_flight=config.get("max_jobs_in_flight", DEFAULT_MAX_JOBS_IN_FLIGHT),
            stop_grace_seconds=config.get("stop_grace_seconds", DEFAULT_STOP_GRACE_SECONDS),
        )


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
        return tuple(value)
    if value in {"unmapped", "none"}:
        return value  # type: ignore[return-value]
    try:
        names = json.loads(value)
    except ValueError:
        names = None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        msg = f'custom_properties must be "unmapped", "none" or a list of property names, not {value!r}.'
        raise SettingsError(msg)
    return tuple(names)


def _non_empty(config: Mapping[str, Any], name: str) -> str:
    value = str(config[name]).strip()
    if not value:
        msg = f"{name} must not be empty."
        raise SettingsError(msg)
    return value


def _path(dotted: str, setting: str) -> tuple[str, ...]:
    parts = tuple(dotted.split("."))
    if not all(parts):
        msg = f"{setting} {dotted!r} is not a property path (use names joined by dots, like contact.email)."
        raise SettingsError(msg)
    return parts


def _api_url(url: str) -> str:
    """Refuse a URL that would send the API key in clear text to another machine."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        msg = f"api_url {url!r} is not an http(s) URL."
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


def _optional_path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None
