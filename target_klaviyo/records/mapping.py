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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from email_validator import EmailNotValidError

from target_klaviyo.records.emails import normalize_email
from target_klaviyo.records.phones import e164, library_e164
from target_klaviyo.settings.settings import Settings

MAX_PROFILE_BYTES = 100_000
MAX_DOUBLE = (
    1.7976931348623157e308  # beyond it, a JSON parser that reads numbers as doubles (Klaviyo's) fails
)
MAX_DOUBLE_DECIMAL = decimal.Decimal(MAX_DOUBLE)
MAX_DOUBLE_INT = int(MAX_DOUBLE)
NUMERIC_ATTRIBUTES = {"location.latitude", "location.longitude"}
SDC_PREFIX = "_sdc_"
CONSENT_WORDS = {"true": True, "false": False}
CONSENT_VALUES = "true, false or an ISO 8601 date-time"  # what consent_property may hold
CLOCK_SKEW = datetime.timedelta(minutes=5)  # a consent date this far ahead is still "now"
# Before this, a consent date is a placeholder. Epoch zero (1970-01-01T00:00:00Z) is the usual one,
# and written as local time without a zone it reads as any hour of 1 January up to 14:00 (UTC+14);
# nobody consented to email marketing that day, so the whole day is refused.
EARLIEST_CONSENT = datetime.datetime(1970, 1, 2, tzinfo=datetime.timezone.utc)
# The most a local time can be ahead of UTC (UTC+14, the Line Islands): a date-time without a
# zone, read as UTC, may have happened this much earlier.
MOST_AHEAD_OF_UTC = datetime.timedelta(hours=14)
JSON_KINDS = {
    int: "a number",
    float: "a number",
    decimal.Decimal: "a number",
    dict: "an object",
    list: "an array",
}
_MISSING = object()


@dataclass(frozen=True)
class Reject:
    """Why a record was not exported (``reason`` is a stable code, ``detail`` a sentence)."""

    reason: str
    detail: str


class Consent(NamedTuple):
    """A record's email marketing consent, as :func:`consent_time` reads it.

    ``at`` is what is sent as ``consented_at`` (UTC, ISO 8601; "" for consent without a
    date, a plain subscription). ``since`` is the moment that may be weighed against an
    unsubscribe in Klaviyo: the earliest moment the record's value can mean, or None
    when it cannot show that consent came after anything (no date, or a date ahead of
    this machine's clock). For a date-time with its zone both are one string.
    """

    at: str
    since: str | None


UNDATED = Consent("", None)  # shared: consent without a date is the same for everyone


@dataclass
class Profile:
    """A Klaviyo profile ready to send: its dedupe key, its JSON:API resource, that resource as JSON."""

    key: str
    resource: dict[str, Any]
    encoded: bytes
    dropped: list[Reject] = field(default_factory=list)
    consent: Consent | None = None  # email marketing consent: None when the record gives none

    def without(self, attribute: str, reason: Reject) -> Profile:
        """This profile less one attribute, which is reported as dropped."""
        attributes = {name: value for name, value in self.resource["attributes"].items() if name != attribute}
        resource = {**self.resource, "attributes": attributes}
        return replace(self, resource=resource, encoded=encode(resource), dropped=[*self.dropped, reason])


class Unrepresentable(ValueError):
    """A number that JSON (as Klaviyo reads it) cannot represent: not finite, or beyond ±1.8e308."""


_ENCODER = json.JSONEncoder(separators=(",", ":"))


def encode(resource: dict[str, Any]) -> bytes:
    return _ENCODER.encode(resource).encode()


def to_json_value(value: Any) -> Any:
    """Turn what the SDK hands us (datetimes, Decimals, nested data) into plain JSON values.

    Raises :class:`Unrepresentable` for a number that cannot be sent. The checks
    come before any conversion, because ``int(Decimal("1e999999999"))`` alone would
    take minutes. Plain JSON types are answered by their exact type first: this runs
    for every value of every record.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if value.bit_length() > 1023 and abs(value) > MAX_DOUBLE_INT:
            raise Unrepresentable
        return value
    if kind is float:
        if not math.isfinite(value):
            raise Unrepresentable
        return value
    if kind is dict:
        return {str(key): to_json_value(item) for key, item in value.items()}
    if kind is list:
        return [to_json_value(item) for item in value]
    return _to_json_value(value)


def _to_json_value(value: Any) -> Any:
    """:func:`to_json_value` for every other type: Decimals, datetimes, subclasses."""
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
        if (type(node) is not dict and not isinstance(node, Mapping)) or part not in node:
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
        "MISSING": _MISSING,
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
        self._consent_path = settings.consent_path
        self._consented_at_path = settings.consented_at_path
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
        consent = self._consent(record, dropped) if self._consent_path is not None else None
        return Profile(key, resource, encoded, dropped, consent)

    def _consent(self, record: Mapping[str, Any], dropped: list[Reject]) -> Consent | None:
        """The record's email marketing consent: None, or given (with its date, if any).

        A value that says neither yes nor no drops the consent, with a reason; the profile
        still goes to its list. ``false`` is only "no consent", never an unsubscribe.
        """
        assert self._consent_path is not None
        name = ".".join(self._consent_path)
        value = get_path(record, self._consent_path)
        if isinstance(value, str):
            value = CONSENT_WORDS.get(value.strip().lower(), value.strip())
        if value is _MISSING or value is None or value is False or value == "":
            return None
        if value is True:
            return self._consented_at(record, dropped)
        return _consent_time_or_drop(value, f"consent_property {name!r}", dropped)

    def _consented_at(self, record: Mapping[str, Any], dropped: list[Reject]) -> Consent | None:
        if self._consented_at_path is None:
            return UNDATED
        value = get_path(record, self._consented_at_path)
        if value is _MISSING or is_empty(value):
            return UNDATED
        name = ".".join(self._consented_at_path)
        return _consent_time_or_drop(
            value, f"consented_at_property {name!r}", dropped, what="an ISO 8601 date-time"
        )

    def _interpret_attributes(
        self, record: Mapping[str, Any], attributes: dict[str, Any], dropped: list[Reject]
    ) -> None:
        """The mapped attributes, read by following each path; for any kind of mapping."""
        for attribute in self._attributes:
            value = get_path(record, attribute.path)
            if value is _MISSING or is_empty(value):
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


NO_SUBSCRIPTION = "the profile was exported without a subscription."


def _consent_time_or_drop(
    value: Any, where: str, dropped: list[Reject], what: str = CONSENT_VALUES
) -> Consent | None:
    """:func:`consent_time`, or None with the reason added to ``dropped`` (the profile still goes)."""
    try:
        return consent_time(value, what=what)
    except ValueError as problem:
        dropped.append(Reject("invalid_consent", f"{where} {problem}; {NO_SUBSCRIPTION}"))
        return None


def consent_time(value: Any, now: datetime.datetime | None = None, *, what: str = CONSENT_VALUES) -> Consent:
    """When consent was given, in UTC as Klaviyo takes it; a ValueError says what is wrong with it.

    What is sent (``Consent.at``): a date-time without a time zone is taken as UTC, a
    date alone as its midnight, UTC. Klaviyo refuses a consent date in the future, so one
    is an error here too, except one at most ``CLOCK_SKEW`` ahead, which is the tap's
    clock running fast and is sent as now.

    What may outweigh an unsubscribe in Klaviyo (``Consent.since``) is the earliest
    moment the value can mean, because subscribing lifts the unsubscribe and doubt must
    leave it standing. A time without a zone may be local time anywhere, so it counts
    from 14 hours before its UTC reading (UTC+14); a date alone likewise from 10:00 UTC
    the day before. A date ahead of this machine's clock counts as undated: the other
    clock is off by an unknown amount, so the date cannot show that consent came after
    anything. Subtracting only the five minutes allowed would assume it is off by no more.
    """
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, datetime.date):
        moment = datetime.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        if text[-1:] in {"Z", "z"}:
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"is not {what}") from None
    else:
        raise ValueError(f"is {JSON_KINDS.get(type(value), 'a value')}, not {what}")
    offset = moment.utcoffset() if moment.tzinfo is not None else None
    # A zero offset is what taps add to a time kept without a zone (singer-io tap-postgres and
    # tap-mysql write local times and dates as "...+00:00"): it cannot be told from real UTC, so
    # for the comparison with an unsubscribe it counts as a time without a zone.
    zoned = offset is not None and offset != datetime.timedelta(0)
    if offset is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    try:
        moment = moment.astimezone(datetime.timezone.utc)
    except OverflowError:
        raise ValueError("is a date-time outside the years Klaviyo can take") from None
    if moment < EARLIEST_CONSENT:
        raise ValueError(
            "is before 2 January 1970: a placeholder (such as the Unix epoch), not the date consent was given"
        )
    if moment > now + CLOCK_SKEW:
        raise ValueError("is a date in the future, and Klaviyo takes consent only as given")
    if moment > now:
        return Consent(now.isoformat(timespec="seconds"), None)
    at = moment.isoformat(timespec="seconds")
    if zoned:
        return Consent(at, at)
    return Consent(at, (moment - MOST_AHEAD_OF_UTC).isoformat(timespec="seconds"))


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
