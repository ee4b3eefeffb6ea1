"""One Singer record -> one Klaviyo profile, or a reject with its reason.

The email is the identity: it is trimmed, syntax-checked and normalised as
``email-validator`` does (Unicode NFC), with its domain in IDNA (ASCII) form; that
form is what is sent, and its lower case is the key that deduplicates profiles
within a run, so ``JOSÉ@Bücher.de`` and ``josé@xn--bcher-kva.de`` are one person.
Mapped attributes are converted to the types Klaviyo's schema wants; a value that
cannot be sent (a phone number that is not E.164, an object where text is
expected) is dropped from the profile and reported, while the profile itself
still goes. A number no JSON parser can hold rejects the record. How values
become JSON is :mod:`~target_klaviyo.records.values`' job, and how consent is read
:mod:`~target_klaviyo.records.consent`'s.
"""

from __future__ import annotations

import decimal
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from email_validator import EmailNotValidError

from target_klaviyo.records.consent import ConsentReader
from target_klaviyo.records.emails import normalize_email
from target_klaviyo.records.phones import e164, library_e164
from target_klaviyo.records.profile import Profile, Reject, encode
from target_klaviyo.records.values import (
    MISSING,
    Unrepresentable,
    get_path,
    is_empty,
    to_json_value,
    without_paths,
)
from target_klaviyo.settings.settings import Settings

MAX_PROFILE_BYTES = 100_000
NUMERIC_ATTRIBUTES = {"location.latitude", "location.longitude"}
SDC_PREFIX = "_sdc_"


@dataclass(frozen=True)
class _Attribute:
    """One entry of ``property_mapping``, resolved once: where to read it and how to convert it."""

    name: str
    path: tuple[str, ...]
    location_key: str | None  # "city" for "location.city"; None for a top-level attribute
    phone_region: str | None = None  # default_phone_region, for phone_number

    def convert(self, value: Any) -> Any:
        if type(value) is not str and isinstance(value, (Mapping, list, tuple)):
            return Reject(
                "invalid_attribute",
                f"{self.name} needs a single value, not a {type(value).__name__}; "
                "it was left out of the profile.",
            )
        if self.name == "phone_number":
            return normalize_phone(str(value).strip(), self.phone_region)
        if (
            self.name in NUMERIC_ATTRIBUTES
            and isinstance(value, (int, float, decimal.Decimal))
            and not isinstance(value, bool)
        ):
            return to_json_value(value)
        converted = to_json_value(value)
        return converted if isinstance(converted, str) else json.dumps(converted)


AttributeFiller = Callable[[dict[str, Any], dict[str, Any], list[Reject]], None]


def compile_attributes(plan: list[_Attribute]) -> AttributeFiller:
    """:meth:`ProfileMapper._interpret_attributes` as straight-line code for this plan, for dict records.

    Mapping runs once per record and the plan once per run, so the plan becomes one
    Python function (as ``fastjsonschema`` does for schemas): no loop, no lookups of
    the plan, a direct ``dict.get`` for a top-level property. Text values, the common
    case, skip the conversion, which leaves text unchanged for every attribute but the
    phone number. Paths and names enter the source only as ``repr`` literals; every
    conversion is the attribute's own ``convert``.
    """
    namespace: dict[str, Any] = {
        "MISSING": MISSING,
        "Reject": Reject,
        "Unrepresentable": Unrepresentable,
        "get_path": get_path,
        "is_empty": is_empty,
    }
    lines = ["def fill(record, attributes, dropped):"]
    for index, attribute in enumerate(plan):
        namespace[f"convert_{index}"] = attribute.convert
        namespace[f"path_{index}"] = attribute.path
        if attribute.location_key is None:
            store = f"attributes[{attribute.name!r}] = converted"
        else:
            store = f"attributes.setdefault('location', {{}})[{attribute.location_key!r}] = converted"
        lookup = (
            f"record.get({attribute.path[0]!r}, MISSING)"
            if len(attribute.path) == 1
            else f"get_path(record, path_{index})"
        )
        text = f"convert_{index}(value)" if attribute.name == "phone_number" else "value"
        lines += [
            f"    value = {lookup}",
            "    if value.__class__ is str:",
            "        if value:",
            f"            converted = {text}",
            "            if converted.__class__ is Reject:",
            "                dropped.append(converted)",
            "            else:",
            f"                {store}",
            "    elif value is not MISSING and not is_empty(value):",
            "        try:",
            f"            converted = convert_{index}(value)",
            "        except Unrepresentable:",
            f"            raise Unrepresentable({'The attribute ' + attribute.name!r}) from None",
            "        if isinstance(converted, Reject):",
            "            dropped.append(converted)",
            "        else:",
            f"            {store}",
        ]
    lines.append("    return None")
    exec(compile("\n".join(lines), "<compiled property_mapping>", "exec"), namespace)  # noqa: S102
    fill: AttributeFiller = namespace["fill"]
    return fill


class ProfileMapper:
    """Applies ``email_property``, ``property_mapping`` and ``custom_properties`` to records.

    The settings are turned into a plan once (which paths to read, which record keys
    the custom properties leave out, which nested objects they trim), so that mapping
    a record only follows the plan.
    """

    def __init__(self, settings: Settings) -> None:
        self.email_path = settings.email_path
        self._email_name = ".".join(settings.email_path)
        self._attributes = [
            _Attribute(
                name, path, name.split(".", 1)[1] if "." in name else None, settings.default_phone_region
            )
            for name, path in settings.attribute_paths.items()
        ]
        self.custom_properties = settings.custom_properties
        self._consent = (
            ConsentReader(settings.consent_path, settings.consented_at_path)
            if settings.consent_path is not None
            else None
        )
        consent_paths = [path for path in (settings.consent_path, settings.consented_at_path) if path]
        used = [self.email_path, *settings.attribute_paths.values(), *consent_paths]
        # For "unmapped": record keys that are used whole, and nested paths to trim per key.
        self._used_keys = {path[0] for path in used if len(path) == 1}
        self._trimmed: dict[str, list[tuple[str, ...]]] = {}
        for path in used:
            if len(path) > 1 and path[0] not in self._used_keys:
                self._trimmed.setdefault(path[0], []).append(path[1:])
        self._compiled_attributes = compile_attributes(self._attributes)

    def key_of(self, record: Mapping[str, Any]) -> str | None:
        """The person a record is for (its normalised email, lower case), or None if it names nobody."""
        try:
            email = self._email(record)
        except (ValueError, TypeError, UnicodeError):
            return None
        return None if isinstance(email, Reject) else email[0]

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
        if type(record) is dict:
            self._compiled_attributes(record, attributes, dropped)
        else:
            self._interpret_attributes(record, attributes, dropped)
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
        consent = self._consent.read(record, dropped) if self._consent is not None else None
        return Profile(key, resource, encoded, dropped, consent)

    def _interpret_attributes(
        self, record: Mapping[str, Any], attributes: dict[str, Any], dropped: list[Reject]
    ) -> None:
        """The mapped attributes, read by following each path; for any kind of mapping."""
        for attribute in self._attributes:
            value = get_path(record, attribute.path)
            if value is MISSING or is_empty(value):
                continue
            try:
                converted = attribute.convert(value)
            except Unrepresentable:
                raise Unrepresentable(f"The attribute {attribute.name}") from None
            if isinstance(converted, Reject):
                dropped.append(converted)
            elif attribute.location_key is not None:
                attributes.setdefault("location", {})[attribute.location_key] = converted
            else:
                attributes[attribute.name] = converted

    def _email(self, record: Mapping[str, Any]) -> tuple[str, str] | Reject:
        """The dedupe key and the normalised address to send, or why there is none."""
        name = self._email_name
        value = get_path(record, self.email_path)
        if value is MISSING or value is None:
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

    def _custom_properties(self, record: Mapping[str, Any]) -> dict[str, Any]:
        if self.custom_properties == "none":
            return {}
        if self.custom_properties == "unmapped":
            items = self._unmapped(record)
        else:
            items = [(name, record[name]) for name in self.custom_properties if name in record]
        properties = {}
        for key, value in items:
            if value.__class__ is str:  # the common case, which needs no conversion
                if value and not key.startswith(SDC_PREFIX):
                    properties[key] = value
                continue
            if is_empty(value) or key.startswith(SDC_PREFIX):
                continue
            try:
                properties[key] = to_json_value(value)
            except Unrepresentable:
                raise Unrepresentable(f"The property {key!r}") from None
        return properties

    def _unmapped(self, record: Mapping[str, Any]) -> list[tuple[str, Any]]:
        """The record's values less those the email and the attributes used (in record order)."""
        used, trimmed = self._used_keys, self._trimmed
        items = [(key, value) for key, value in record.items() if key not in used]
        if trimmed:
            items = [
                (key, without_paths(value, trimmed[key]))
                if key in trimmed and isinstance(value, Mapping)
                else (key, value)
                for key, value in items
            ]
        return items


def normalize_phone(phone: str, region: str | None = None) -> str | Reject:
    """E.164 form of a phone number ("+1 415-555-2671" -> "+14155552671").

    A number without its ``+`` country code is read as a number of ``region``
    (``default_phone_region``) when one is set, and refused otherwise rather than
    guessed: the same digits mean different people in different countries.
    """
    if phone.startswith("+"):
        normalized = e164(phone)
    elif region is not None:
        normalized = library_e164(phone, region)
    else:
        normalized = None
    if normalized is not None:
        return normalized
    what = f"is neither a valid number for default_phone_region {region} nor" if region else "is not"
    return Reject(
        "invalid_phone",
        f"phone_number {what} a valid international (E.164) number; the profile was exported without it.",
    )
