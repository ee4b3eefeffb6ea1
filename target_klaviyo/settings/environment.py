"""Settings from ``<PREFIX><NAME>`` environment variables, parsed as strictly as a config file.

singer-sdk 0.54.9 reads a boolean that is not a known true word as false (``ture``
exports for real) and a plain string for a text-or-list setting as a one-item list;
here each variable is parsed by the kinds its schema property declares, and a
misspelt variable is an error, as a misspelt key in a config file is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from target_klaviyo.settings.schema import unknown_setting_error
from target_klaviyo.settings.settings import SettingsError

NOT_SETTINGS = {"LOGLEVEL", "LOG_LEVEL"}  # read by the SDK's logging, not settings


def parse_environment(schema: Mapping[str, Any], prefix: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings from ``<PREFIX><NAME>`` environment variables, parsed as strictly as a config file.

    A boolean is ``true`` or ``false``, a number is a number, an object or a list is
    JSON, and a setting that may be text or a list (``custom_properties``) is a list
    only when its value is a JSON array. A ``<PREFIX>`` variable that names no setting
    is an error, like a misspelt key in a config file (Meltano's own extras, with a
    double underscore after the prefix, and the log level are not settings).
    """
    names = {_variable(prefix, name): name for name in schema.get("properties", {})}
    for variable in sorted(environ):
        rest = variable[len(prefix) :]
        setting_like = variable.startswith(prefix) and not rest.startswith("_") and rest not in NOT_SETTINGS
        if setting_like and variable not in names:
            raise SettingsError(unknown_setting_error(variable, list(names)))
    return read_variables(schema, prefix, environ)


def read_variables(schema: Mapping[str, Any], prefix: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings that ``<PREFIX><NAME>`` variables set, each parsed by its kinds; other variables
    are left alone (under Meltano a utility's environment holds Meltano's own, with the same prefix)."""
    config: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        variable = _variable(prefix, name)
        if variable in environ:
            config[name] = parse_variable(variable, environ[variable], property_kinds(prop))
    return config


def _variable(prefix: str, name: str) -> str:
    return prefix + name.upper().replace("-", "_")


def property_kinds(prop: Mapping[str, Any]) -> set[str]:
    """The JSON types a schema property accepts, through ``anyOf`` and ``oneOf``, less ``null``."""
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
    """``value`` as the setting's ``kinds`` want it; a value of none of them is one sentence naming ``variable``."""
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
