"""One Singer record -> one Klaviyo profile, or a reject with its reason.

The email is the identity: it is trimmed, syntax-checked and normalised as
``email-validator`` does (Unicode NFC), with its domain in IDNA (ASCII) form; that
form is what is sent, and its lower case is the key that deduplicates profiles
within a run, so ``JOSÉ@Bücher.de`` and ``josé@xn--bcher-kva.de`` are one person.
Mapped attributes are converted to the types Klaviyo's schema wants; a value that
cannot be sent (a phone number that is not E.164, an object where text is
expected) is dropped from the profile and reported, while the profile itself
still goes. A number no JSON parser can hold rejects the record.
"""

from __future__ import annotations

import datetime
import decimal
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from email_validator import EmailNotValidError

from target_klaviyo.emails import normalize_email
from target_klaviyo.phones import e164
from target_klaviyo.settings import Settings

MAX_PROFILE_BYTES = 100_000
MAX_DOUBLE = (
    1.7976931348623157e308  # beyond it, a JSON parser that reads numbers as doubles (Klaviyo's) fails
)
MAX_DOUBLE_DECIMAL = decimal.Decimal(MAX_DOUBLE)
MAX_DOUBLE_INT = int(MAX_DOUBLE)
NUMERIC_ATTRIBUTES = {"location.latitude", "location.longitude"}
SDC_PREFIX = "_sdc_"
_MISSING = object()


@dataclass(frozen=True)
class Reject:
    """Why a record was not exported (``reason`` is a stable code, ``detail`` a sentence)."""

    reason: str
    detail: str


@dataclass
class Profile:
    """A Klaviyo profile ready to send: its dedupe key, its JSON:API resource, that resource as JSON."""

    key: str
    resource: dict[str, Any]
    encoded: bytes
    dropped: list[Reject] = field(default_factory=list)

    def without(self, attribute: str, reason: Reject) -> Profile:
        """This profile less one attribute, which is reported as dropped."""
        attributes = {name: value for name, value in self.resource["attributes"].items() if name != attribute}
        resource = {**self.resource, "attributes": attributes}
        return replace(self, resource=resource, encoded=encode(resource), dropped=[*self.dropped, reason])


class Unrepresentable(ValueError):
    """A number that JSON (as Klaviyo reads it) cannot represent: not finite, or beyond ±1.8e308."""


def encode(resource: dict[str, Any]) -> bytes:
    return json.dumps(resource, separators=(",", ":")).encode()


def to_json_value(value: Any) -> Any:
    """Turn what the SDK hands us (datetimes, Decimals, nested data) into plain JSON values.

    Raises :class:`Unrepresentable` for a number that cannot be sent. The checks
    come before any conversion, because ``int(Decimal("1e999999999"))`` alone would
    take minutes.
    """
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        # Comparing first is cheap at any exponent; int() of a huge one is not.
        if not value.is_finite() or value.copy_abs() > MAX_DOUBLE_DECIMAL:
            raise Unrepresentable
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise Unrepresentable
    if isinstance(value, int) and value.bit_length() > 1023 and abs(value) > MAX_DOUBLE_INT:
        raise Unrepresentable
    if isinstance(value, Mapping):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(item) for item in value]
    return value


def is_empty(value: Any) -> bool:
    """``null``, ``""``, ``[]`` and ``{}`` are left out, so that they never blank what Klaviyo has."""
    return value is None or (isinstance(value, (str, list, dict)) and not value)


def get_path(record: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at a dotted path, or ``_MISSING`` when any step is absent or not an object."""
    node: Any = record
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def without_paths(record: Mapping[str, Any], paths: list[tuple[str, ...]]) -> dict[str, Any]:
    """A copy of ``record`` with the values at ``paths`` removed (and objects they empty)."""
    result = dict(record)
    for path in paths:
        head, rest = path[0], path[1:]
        if head not in result:
            continue
        if not rest:
            del result[head]
        elif isinstance(result[head], Mapping):
            trimmed = without_paths(result[head], [rest])
            if trimmed:
                result[head] = trimmed
            else:
                del result[head]
    return result


class ProfileMapper:
    """Applies ``email_property``, ``property_mapping`` and ``custom_properties`` to records."""

    def __init__(self, settings: Settings) -> None:
        self.email_path = settings.email_path
        self.attribute_paths = settings.attribute_paths
        self.custom_properties = settings.custom_properties
        self._used_paths = [self.email_path, *self.attribute_paths.values()]

    def map(self, record: Mapping[str, Any]) -> Profile | Reject:
        email = self._email(record)
        if isinstance(email, Reject):
            return email
        try:
            return self._profile(record, email)
        except Unrepresentable as error:
            where = error.args[0] if error.args else "A value"
            detail = f"{where} holds a number that JSON and Klaviyo cannot represent (not finite, or beyond ±1.8e308)."
            return Reject("unrepresentable_number", detail)

    def _profile(self, record: Mapping[str, Any], email: tuple[str, str]) -> Profile | Reject:
        key, normalized = email
        attributes: dict[str, Any] = {"email": normalized}
        dropped: list[Reject] = []
        for attribute, path in self.attribute_paths.items():
            value = get_path(record, path)
            if value is _MISSING or is_empty(value):
                continue
            try:
                converted = self._attribute(attribute, value)
            except Unrepresentable:
                raise Unrepresentable(f"The attribute {attribute}") from None
            if isinstance(converted, Reject):
                dropped.append(converted)
            elif "." in attribute:
                attributes.setdefault("location", {})[attribute.split(".", 1)[1]] = converted
            else:
                attributes[attribute] = converted
        properties = self._custom_properties(record)
        if properties:
            attributes["properties"] = properties
        resource = {"type": "profile", "attributes": attributes}
        encoded = encode(resource)
        size = len(encoded)
        if size > MAX_PROFILE_BYTES:
            return Reject(
                "profile_too_large",
                f"The profile is {size:,} bytes as JSON; Klaviyo accepts at most {MAX_PROFILE_BYTES:,}.",
            )
        return Profile(key, resource, encoded, dropped)

    def _email(self, record: Mapping[str, Any]) -> tuple[str, str] | Reject:
        """The dedupe key and the normalised address to send, or why there is none."""
        name = ".".join(self.email_path)
        value = get_path(record, self.email_path)
        if value is _MISSING or value is None:
            return Reject("missing_email", f"The record has no value at {name!r}.")
        if not isinstance(value, str):
            return Reject(
                "invalid_email", f"The value at {name!r} is a {type(value).__name__}, not a string."
            )
        email = value.strip()
        if not email:
            return Reject("missing_email", f"The value at {name!r} is empty.")
        normalized = normalize_email(email)
        if isinstance(normalized, EmailNotValidError):
            return Reject(
                "invalid_email", f"The value at {name!r} is not a valid email address: {normalized}"
            )
        return normalized.lower(), normalized

    @staticmethod
    def _attribute(attribute: str, value: Any) -> Any:
        if isinstance(value, (Mapping, list, tuple)):
            return Reject(
                "invalid_attribute",
                f"{attribute} needs a single value, not a {type(value).__name__}; "
                "it was left out of the profile.",
            )
        if attribute == "phone_number":
            return normalize_phone(str(value).strip())
        if (
            attribute in NUMERIC_ATTRIBUTES
            and isinstance(value, (int, float, decimal.Decimal))
            and not isinstance(value, bool)
        ):
            return to_json_value(value)
        converted = to_json_value(value)
        return converted if isinstance(converted, str) else json.dumps(converted)

    def _custom_properties(self, record: Mapping[str, Any]) -> dict[str, Any]:
        if self.custom_properties == "none":
            return {}
        if self.custom_properties == "unmapped":
            chosen = without_paths(record, self._used_paths)
        else:
            chosen = {name: record[name] for name in self.custom_properties if name in record}
        properties = {}
        for key, value in chosen.items():
            if is_empty(value) or key.startswith(SDC_PREFIX):
                continue
            try:
                properties[key] = to_json_value(value)
            except Unrepresentable:
                raise Unrepresentable(f"The property {key!r}") from None
        return properties


def normalize_phone(phone: str) -> str | Reject:
    """E.164 form of an international number ("+1 415-555-2671" -> "+14155552671").

    A number without its ``+`` country code is refused rather than guessed: the same
    digits mean different people in different countries.
    """
    invalid = Reject(
        "invalid_phone",
        "phone_number is not a valid international (E.164) number; the profile was exported without it.",
    )
    if not phone.startswith("+"):
        return invalid
    normalized = e164(phone)
    return invalid if normalized is None else normalized
