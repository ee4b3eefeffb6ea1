"""How profiles are upserted: matched on email, then phone number, then external id, and merged.

Functions of an open transaction's connection, shared by single profile imports,
subscriptions and the import jobs that upsert 10,000 profiles at a time.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import msgspec

from klaviyo_sandbox.models.database import iso, new_id

IDENTIFIERS = ("email", "phone_number", "external_id")


def merge_attributes(current: dict[str, Any], incoming: dict[str, Any]) -> dict[str, Any]:
    """Apply an upsert: given fields replace, ``null`` clears, objects merge key by key."""
    merged = dict(current)
    for key, value in incoming.items():
        if value is None:
            merged.pop(key, None)
        elif key in {"location", "properties"} and isinstance(value, dict):
            merged[key] = merge_attributes(merged.get(key) or {}, value)
        else:
            merged[key] = value
    return merged


def upsert_many(db: sqlite3.Connection, profiles: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    """Upsert profiles in order; returns each one's (id, created).

    Existing profiles are looked up in a few set queries rather than one query per
    profile, so that applying a 10,000-profile job stays cheap.
    """
    identities = [_identity_keys(attributes) for attributes in profiles]
    known = _lookup(db, profiles, identities)
    merged_by_id: dict[str, dict[str, Any]] = {}
    created: set[str] = set()
    results = []
    for attributes, keys in zip(profiles, identities, strict=True):
        match = next((known[key] for key in keys if key in known), None)
        if match is None:
            profile_id, current = new_id(), dict[str, Any]()
            created.add(profile_id)
        else:
            profile_id, current = match
        merged = merge_attributes(current, attributes)
        merged_by_id[profile_id] = merged
        for key in _identity_keys(merged):
            known[key] = (profile_id, merged)
        results.append((profile_id, profile_id in created))
    now = iso(time.time())
    db.executemany(
        "UPDATE profiles SET email = ?, phone_number = ?, external_id = ?, attributes = ?, updated = ?"
        " WHERE id = ?",
        [
            (*_identifiers(merged), _encode(merged), now, profile_id)
            for profile_id, merged in merged_by_id.items()
            if profile_id not in created
        ],
    )
    db.executemany(
        "INSERT INTO profiles VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (profile_id, *_identifiers(merged), _encode(merged), now, now)
            for profile_id, merged in merged_by_id.items()
            if profile_id in created
        ],
    )
    return results


def _lookup(
    db: sqlite3.Connection, profiles: list[dict[str, Any]], identities: list[list[tuple[str, str]]]
) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    """Existing profiles that ``profiles`` (with their ``identities``) match, by (identifier, value).

    A profile is looked up by phone number only when its email matched nothing,
    and by external id only when neither did, as matching itself works.
    """
    known: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    unmatched = list(zip(profiles, identities, strict=True))
    for identifier in IDENTIFIERS:
        values = list({str(p[identifier]) for p, _ in unmatched if p.get(identifier)})
        for start in range(0, len(values), 500):
            chunk = values[start : start + 500]
            rows = db.execute(
                f"SELECT id, attributes FROM profiles WHERE {identifier} IN ({','.join('?' * len(chunk))})",  # noqa: S608
                chunk,
            ).fetchall()
            for profile_id, attributes in rows:
                merged = json.loads(attributes)
                for key in _identity_keys(merged):
                    known.setdefault(key, (profile_id, merged))
        if known:
            unmatched = [(p, keys) for p, keys in unmatched if not any(key in known for key in keys)]
    return known


def _encode(attributes: dict[str, Any]) -> str:
    """A profile's attributes as stored: JSON, by msgspec (10,000 of them for every import job)."""
    return msgspec.json.encode(attributes).decode()


def _identity_keys(attributes: dict[str, Any]) -> list[tuple[str, str]]:
    """The (identifier, value) pairs a profile can be matched on; emails compare case-blind."""
    keys = []
    for identifier in IDENTIFIERS:
        value = attributes.get(identifier)
        if value:
            keys.append((identifier, str(value).lower() if identifier == "email" else str(value)))
    return keys


def _identifiers(attributes: dict[str, Any]) -> tuple[Any, Any, Any]:
    return attributes.get("email"), attributes.get("phone_number"), attributes.get("external_id")
