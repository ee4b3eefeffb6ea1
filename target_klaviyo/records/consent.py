"""A record's email marketing consent: read from ``consent_property`` and dated as Klaviyo takes it.

``true`` (or a date-time, the moment consent was given) is consent; ``false``, null
or nothing is only "no consent", never an unsubscribe. A value that says neither
drops the consent with a reason, and the profile still goes to its list.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Mapping
from typing import Any, NamedTuple

from target_klaviyo.records.profile import Reject
from target_klaviyo.records.values import MISSING, get_path, is_empty

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
NO_SUBSCRIPTION = "the profile was exported without a subscription."  # ends the reason a consent is dropped


class ConsentReader:
    """Reads ``consent_property`` (and ``consented_at_property``, when set) from records."""

    def __init__(self, consent_path: tuple[str, ...], consented_at_path: tuple[str, ...] | None) -> None:
        self._consent_path = consent_path
        self._consented_at_path = consented_at_path

    def read(self, record: Mapping[str, Any], dropped: list[Reject]) -> Consent | None:
        """The record's email marketing consent: None, or given (with its date, if any).

        A value that says neither yes nor no drops the consent, with a reason; the profile
        still goes to its list. ``false`` is only "no consent", never an unsubscribe.
        """
        name = ".".join(self._consent_path)
        value = get_path(record, self._consent_path)
        if isinstance(value, str):
            value = CONSENT_WORDS.get(value.strip().lower(), value.strip())
        if value is MISSING or value is None or value is False or value == "":
            return None
        if value is True:
            return self._consented_at(record, dropped)
        return _consent_time_or_drop(value, f"consent_property {name!r}", dropped)

    def _consented_at(self, record: Mapping[str, Any], dropped: list[Reject]) -> Consent | None:
        if self._consented_at_path is None:
            return UNDATED
        value = get_path(record, self._consented_at_path)
        if value is MISSING or is_empty(value):
            return UNDATED
        name = ".".join(self._consented_at_path)
        return _consent_time_or_drop(
            value, f"consented_at_property {name!r}", dropped, what="an ISO 8601 date-time"
        )


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
