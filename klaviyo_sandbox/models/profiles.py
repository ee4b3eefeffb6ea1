"""How profiles are upserted: matched on email, then phone number, then external id, and merged.

Functions of an open transaction's connection, shared by single profile imports,
subscriptions and the import jobs that upsert 10,000 profiles at a time.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import msgspec

from klaviyo_sandbox.models.database import email_key, iso, new_id

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
        # A new profile is matched on what it was looked up by; a merged one may hold more.
        for key in keys if match is None else _identity_keys(merged):
            known[key] = (profile_id, merged)
        results.append((profile_id, profile_id in created))
    now = iso(time.time())
    db.executemany(
        "UPDATE profiles SET email = ?, email_key = ?, phone_number = ?, external_id = ?, attributes = ?,"
        " updated = ? WHERE id = ?",
        [
            (*_identifiers(merged), _encode(merged), now, profile_id)
            for profile_id, merged in merged_by_id.items()
            if profile_id not in created
        ],
    )
    db.executemany(
        "INSERT INTO profiles (id, email, email_key, phone_number, external_id, attributes, created, updated)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
        values = list({value for _, keys in unmatched for name, value in keys if name == identifier})
        column = "email_key" if identifier == "email" else identifier
        for start in range(0, len(values), 500):
            chunk = values[start : start + 500]
            rows = db.execute(
                f"SELECT id, attributes FROM profiles WHERE {column} IN ({','.join('?' * len(chunk))})",  # noqa: S608
                chunk,
            ).fetchall()
            for profile_id, attributes in rows:
                merged = msgspec.json.decode(attributes)
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
            keys.append((identifier, str(email_key(value)) if identifier == "email" else str(value)))
    return keys


def _identifiers(attributes: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """The columns a profile is matched on: email, its folded form, phone number and external id."""
    email = attributes.get("email")
    return email, email_key(email), attributes.get("phone_number"), attributes.get("external_id")
