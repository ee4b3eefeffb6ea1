"""The checked settings: a config turned into :class:`Settings`, or one sentence naming what is wrong.

Everything a user can get wrong in the configuration is caught here, before any
input is read. Checking creates nothing: an output's folder is only checked to be
one this user could create and write, and its writer creates it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

import phonenumbers

from target_klaviyo.files import check_folder_creatable
from target_klaviyo.settings.schema import (
    DEFAULT_REVISION,
    DEFAULTS,
    MAPPABLE_ATTRIBUTES,
    MIRROR_PLAN_FOLDER,
    CustomPropertiesWord,
    MirrorScope,
    OnLimitExceeded,
    SyncMode,
)

LOOPBACK_HOSTS = {"localhost"}
LIST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
REVISION = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(\.[a-z]+)?$")
HEADER_SAFE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII without spaces: safe in an HTTP header


class SettingsError(ValueError):
    """A setting that cannot work; the message is one sentence naming it."""


@dataclass(frozen=True)
class Settings:
    """What a run does, checked. Only :meth:`from_config` makes one, and it gives every field:
    a default is the schema's, never restated here."""

    api_key: str
    list_id: str | None
    stream_lists: Mapping[str, str]
    email_path: tuple[str, ...]
    attribute_paths: Mapping[str, tuple[str, ...]]
    custom_properties: CustomPropertiesWord | tuple[str, ...]
    max_profiles: int
    on_limit_exceeded: OnLimitExceeded
    api_url: str
    api_revision: str
    rejects_path: Path | None
    report_path: Path | None
    dry_run: bool
    max_jobs_in_flight: int
    stop_grace_seconds: int
    default_phone_region: str | None
    consent_path: tuple[str, ...] | None
    consented_at_path: tuple[str, ...] | None
    sync_mode: SyncMode
    mirror_scope: MirrorScope
    max_removal_fraction: float
    max_reject_fraction: float
    mirror_plan_path: Path
    ledger: LedgerPlace | None  # None with use_ledger false
    resync_after_days: int
    full_refresh: bool

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
        if self.ledger is not None and self.ledger.path is not None:
            ledger = self.ledger.path
            outputs["ledger_path"] = ledger
            for suffix in LEDGER_SIDE_FILES:
                outputs[f"ledger_path (its {suffix} file)"] = ledger.with_name(ledger.name + suffix)
        if self.mirror:
            plan = self.mirror_plan_path
            outputs["mirror_plan_path"] = plan
            # The files the plan owns beside it (mirror.plan_file.PlanFiles) must not be another output either.
            for suffix in PLAN_SIDE_FILES:
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
        Meltano writes ``null`` for a setting that was unset. A setting not set takes the
        schema's default.
        """
        config = {**DEFAULTS, **{name: value for name, value in raw.items() if value is not None}}
        mapping = _flat_mapping(config["property_mapping"])
        unknown = sorted(set(mapping) - set(MAPPABLE_ATTRIBUTES))
        if unknown:
            msg = (
                f"property_mapping has unknown Klaviyo attribute(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(MAPPABLE_ATTRIBUTES)}."
            )
            raise SettingsError(msg)
        custom = _custom_properties(config["custom_properties"])
        list_id = _list_id(config["list_id"]) if "list_id" in config else None
        stream_lists = {
            stream: _list_id(value, f"stream_lists.{stream}")
            for stream, value in (config.get("stream_lists") or {}).items()
        }
        api_url = check_api_url(config["api_url"])
        return cls(
            api_key=check_api_key(config["api_key"]),
            list_id=list_id,
            stream_lists=stream_lists,
            email_path=_path(config["email_property"], "email_property"),
            attribute_paths={key: _path(path, f"property_mapping.{key}") for key, path in mapping.items()},
            custom_properties=custom,
            max_profiles=config["max_profiles_per_run"],
            on_limit_exceeded=config["on_limit_exceeded"],
            api_url=api_url,
            api_revision=check_revision(config["api_revision"]),
            rejects_path=_output_path(config.get("rejects_path"), "rejects_path"),
            report_path=_output_path(config.get("report_path"), "report_path"),
            dry_run=bool(config["dry_run"]),
            max_jobs_in_flight=config["max_jobs_in_flight"],
            stop_grace_seconds=config["stop_grace_seconds"],
            default_phone_region=_phone_region(config.get("default_phone_region")),
            consent_path=_optional_path(config, "consent_property"),
            consented_at_path=_optional_path(config, "consented_at_property"),
            sync_mode=config["sync_mode"],
            mirror_scope=_mirror_scope(config),
            max_removal_fraction=float(config["mirror_max_removal_fraction"]),
            max_reject_fraction=float(config["max_reject_fraction"]),
            mirror_plan_path=_mirror_plan_path(config, api_url, list_id, stream_lists),
            ledger=_ledger_place(raw, config),
            resync_after_days=config["resync_after_days"],
            full_refresh=bool(config["full_refresh"]),
        )


def _mirror_scope(config: Mapping[str, Any]) -> MirrorScope:
    """``synced`` needs the ledger (who this target put into each list); without it, ``list``."""
    scope: MirrorScope | None = config.get("mirror_scope")
    if scope is None:
        return "synced" if config["use_ledger"] else "list"
    if scope == "synced" and not config["use_ledger"]:
        msg = (
            "mirror_scope synced removes only the people the ledger says this target put into a list, "
            "so it needs use_ledger true; set mirror_scope to list to mirror without the ledger."
        )
        raise SettingsError(msg)
    return scope


LEDGER_LOCKS = ".locks"  # the folder of the ledger's list locks, beside its file (ledger.store)
# SQLite's own files beside the database, and that folder: no other output may be one of them.
LEDGER_SIDE_FILES = ("-wal", "-shm", "-journal", LEDGER_LOCKS)
# The files a mirror plan keeps beside it (mirror.plan_file.PlanFiles): its run marker, lock and progress.
PLAN_MARKER, PLAN_LOCK, PLAN_PROGRESS = PLAN_SIDE_FILES = (".run", ".lock", ".progress")


@dataclass(frozen=True)
class LedgerPlace:
    """Where the ledger lives: a SQLAlchemy ``url``; ``path`` is its file when it is SQLite.

    ``setting`` names it in sentences (``ledger_path`` or ``ledger_url``); a ``ledger_url``
    may hold a password, so sentences never show it.
    """

    url: str
    path: Path | None
    setting: str

    def __repr__(self) -> str:  # the URL may hold a password
        return f"LedgerPlace(setting={self.setting!r}, path={self.path!r})"


def _ledger_place(raw: Mapping[str, Any], config: Mapping[str, Any]) -> LedgerPlace | None:
    """The ledger's place: ``ledger_url`` when set, else the SQLite file ``ledger_path``."""
    if not config["use_ledger"]:
        return None
    url = raw.get("ledger_url")
    if not url:
        path = _output_path(config["ledger_path"], "ledger_path")
        if path is None:
            msg = (
                f"ledger_path is empty: name the ledger's file (the default is {DEFAULTS['ledger_path']}), "
                "or set use_ledger to false."
            )
            raise SettingsError(msg)
        return LedgerPlace(f"sqlite:///{path.absolute()}", path, "ledger_path")
    # The SDK fills in ledger_path's default, so only another path is one the user set too.
    if raw.get("ledger_path") not in (None, "", DEFAULTS["ledger_path"]):
        msg = "ledger_path and ledger_url are both set; set one (ledger_url for a database, ledger_path for a file)."
        raise SettingsError(msg)
    return _ledger_url(url)


def _ledger_url(value: str) -> LedgerPlace:
    """A SQLite or PostgreSQL SQLAlchemy URL; a sentence about it never shows it (it may hold a password)."""
    from sqlalchemy.engine import make_url  # SQLAlchemy comes with singer-sdk; imported only when used
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        msg = (
            "ledger_url is not a SQLAlchemy database URL (such as postgresql+psycopg://user@host/db); "
            "its value is not shown because it may hold a password."
        )
        raise SettingsError(msg) from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            msg = "ledger_url names an in-memory SQLite database, which forgets everything at the end of the run; name a file."
            raise SettingsError(msg)
        path = _output_path(url.database, "ledger_url")
        assert path is not None
        return LedgerPlace(f"sqlite:///{path.absolute()}", path, "ledger_url")
    if backend == "postgresql":
        if url.get_driver_name() == "psycopg2" and "+" not in url.drivername:
            url = url.set(drivername="postgresql+psycopg")  # psycopg 3, the [postgres] extra
        return LedgerPlace(url.render_as_string(hide_password=False), None, "ledger_url")
    msg = f"ledger_url is a {backend} URL; the ledger lives in SQLite or PostgreSQL."
    raise SettingsError(msg)


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
    """The plan's path; its folder is created and checked by the run (mirror.plan_file.PlanFiles.prepare)."""
    value = config.get("mirror_plan_path")
    if not value:
        return default_plan_path(api_url, list_id, stream_lists)
    path = _expanded(value, "mirror_plan_path")
    try:
        is_folder = path.is_dir()
    except OSError as error:
        msg = f"mirror_plan_path {str(path)[:100]!r} cannot be used ({error.strerror})."
        raise SettingsError(msg) from None
    if config["sync_mode"] == "mirror" and is_folder:
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


def _custom_properties(value: str | list[str]) -> CustomPropertiesWord | tuple[str, ...]:
    words: tuple[CustomPropertiesWord, ...] = get_args(CustomPropertiesWord)
    if isinstance(value, list):
        names: Any = value
    elif value in words:
        return words[words.index(value)]
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
    """A file the run will write: checked now, before any input is read; its writer creates its folder."""
    if not value:
        return None
    path = _expanded(value, setting)
    try:
        return _checked_output(path, setting)
    except OSError as error:  # a name too long, say
        msg = f"{setting} {str(path)[:100]!r} cannot be used ({error.strerror or type(error).__name__})."
        raise SettingsError(msg) from None


def _checked_output(path: Path, setting: str) -> Path:
    """A regular file this user may write, in a folder that is or could be created; else one sentence."""
    if path.is_dir():
        msg = f"{setting} {str(path)!r} is a folder; name a file in it."
        raise SettingsError(msg)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        msg = f"{setting} {str(path)!r} is a link or a special file; name a regular file."
        raise SettingsError(msg)
    try:
        check_folder_creatable(path.parent)
    except OSError as error:
        msg = f"{setting}: the folder {str(path.parent)!r} cannot be created ({error.strerror})."
        raise SettingsError(msg) from None
    if path.exists():
        writable = os.access(path, os.W_OK)
    elif path.parent.exists():
        writable = os.access(path.parent, os.W_OK | os.X_OK)
    else:  # the folders its writer creates are this user's, and their first existing parent is writable
        writable = True
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
