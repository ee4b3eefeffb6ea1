"""Whether a stream's schema has a record path, and the closest one it has.

A setting that names a property the stream does not have is a typo far more often
than a property that appears only in some records; the run says so when the stream's
SCHEMA arrives, before its records (``email_property`` stops the run, the others
warn). A schema that does not list its properties (no ``properties``, or one that
admits any other property) cannot say a path is absent, and is never held against it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any

from target_klaviyo.errors import RunError
from target_klaviyo.settings.settings import Settings

UNKNOWABLE = {"$ref", "allOf", "if", "not"}  # schemas this check does not follow
DESCRIBING = {"type", "properties", "anyOf", "oneOf", "enum", "const"}
MAX_DEPTH = 8  # deeper paths than any mapping names; keeps a hostile schema cheap


def has_path(schema: Any, path: tuple[str, ...]) -> bool:
    """False only when the schema lists its properties at some level and ``path`` is not among them."""
    nodes = [schema]
    for name in path:
        children = []
        for node in nodes:
            if isinstance(node, Mapping) and any(
                UNKNOWABLE & option.keys() or not DESCRIBING & option.keys() for option in _alternatives(node)
            ):
                return True  # a reference, a combination, or no description at all: anything may be here
            for option in _options(node):
                properties = option.get("properties")
                if not isinstance(properties, Mapping) or _open(option):
                    return True  # this level admits any property
                if name in properties:
                    children.append(properties[name])
        if not children:
            return False
        nodes = children
    return True


def closest(schema: Any, path: tuple[str, ...]) -> str | None:
    """The dotted path of the schema's that is most like ``path``, if any is much alike."""
    wanted = ".".join(path)
    candidates = sorted(set(_paths(schema, (), 0)))
    lowered = {candidate.lower(): candidate for candidate in candidates}
    if wanted.lower() in lowered:
        return lowered[wanted.lower()]  # the same name in another case
    match = difflib.get_close_matches(wanted, candidates, n=1, cutoff=0.6)
    return match[0] if match else None


def _paths(schema: Any, prefix: tuple[str, ...], depth: int) -> Iterator[str]:
    if depth >= MAX_DEPTH:
        return
    for option in _options(schema):
        properties = option.get("properties")
        if not isinstance(properties, Mapping):
            continue
        for name, child in properties.items():
            if isinstance(name, str):
                yield ".".join((*prefix, name))
                yield from _paths(child, (*prefix, name), depth + 1)


def _alternatives(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The node and every schema it may be instead (``anyOf``/``oneOf``), whatever they are."""
    alternatives = [node]
    for key in ("anyOf", "oneOf"):
        items = node.get(key)
        if isinstance(items, list):
            alternatives += [item for item in items if isinstance(item, Mapping)]
    return alternatives


def _options(node: Any) -> list[Mapping[str, Any]]:
    """The object schemas a node may be (itself, or its ``anyOf``/``oneOf`` alternatives)."""
    if not isinstance(node, Mapping):
        return []
    return [option for option in _alternatives(node) if "properties" in option or _is_object(option)]


def _is_object(node: Mapping[str, Any]) -> bool:
    kinds = node.get("type")
    return kinds == "object" or (isinstance(kinds, list) and "object" in kinds)


def _open(node: Mapping[str, Any]) -> bool:
    """Whether the object admits properties it does not list."""
    extra = node.get("additionalProperties")
    return bool(node.get("patternProperties")) or (extra is not None and extra is not False)


def check_stream(settings: Settings, stream: str, schema: Any) -> list[str]:
    """Compare the settings' record paths with a stream's schema, when its SCHEMA arrives.

    An ``email_property`` the schema does not have would reject every record as
    ``missing_email``: that ends the run before the stream's records, in one sentence.
    A ``property_mapping`` or consent path it does not have is returned as a warning.
    """
    if not has_path(schema, settings.email_path):
        raise RunError(
            f"email_property {'.'.join(settings.email_path)!r} is not a property of stream {stream!r}"
            f"{_hint(schema, settings.email_path)}, so every record would be rejected; set "
            "email_property to the property that holds the email."
        )
    named = [(f"property_mapping.{key}", path) for key, path in settings.attribute_paths.items()]
    named += [
        (setting, path)
        for setting, path in (
            ("consent_property", settings.consent_path),
            ("consented_at_property", settings.consented_at_path),
        )
        if path is not None
    ]
    return [
        f"{setting} {'.'.join(path)!r} is not a property of stream {stream!r}{_hint(schema, path)}, so "
        "no record of it gives that value."
        for setting, path in named
        if not has_path(schema, path)
    ]


def _hint(schema: Any, path: tuple[str, ...]) -> str:
    near = closest(schema, path)
    return f" (the closest it has is {near!r})" if near else ""
