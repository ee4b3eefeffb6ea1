import datetime

import pytest

from target_klaviyo.records.consent import Consent, consent_time

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-02T03:04:05.123+02:00", "2024-01-02T01:04:05+00:00"),
        ("2024-01-02T03:04:05-05:00", "2024-01-02T08:04:05+00:00"),
        ("1970-01-02T02:00:00+01:00", "1970-01-02T01:00:00+00:00"),  # just after the refused first day
    ],
)
def test_a_consent_time_with_its_zone_is_sent_and_compared_as_it_is(value, expected):
    assert consent_time(value, NOW) == Consent(expected, expected)


@pytest.mark.parametrize(
    ("value", "sent", "compared"),
    [
        # Local time anywhere: sent read as UTC, compared from its earliest meaning, UTC+14.
        ("2024-01-02T03:04:05", "2024-01-02T03:04:05+00:00", "2024-01-01T13:04:05+00:00"),
        ("2024-01-02", "2024-01-02T00:00:00+00:00", "2024-01-01T10:00:00+00:00"),
        (datetime.date(2024, 1, 2), "2024-01-02T00:00:00+00:00", "2024-01-01T10:00:00+00:00"),
        (datetime.datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05+00:00", "2024-01-01T13:04:05+00:00"),
        # A zero offset may be one a tap added to a local time or a date (tap-postgres, tap-mysql).
        ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05+00:00", "2024-01-01T13:04:05+00:00"),
        ("2024-01-02T00:00:00+00:00", "2024-01-02T00:00:00+00:00", "2024-01-01T10:00:00+00:00"),
        (
            datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
            "2024-01-02T03:04:05+00:00",
            "2024-01-01T13:04:05+00:00",
        ),
        # A fast clock: sent as now, and it cannot show that consent came after anything.
        ("2026-01-01T00:04:00Z", "2026-01-01T00:00:00+00:00", None),
        ("2026-01-01T00:04:00", "2026-01-01T00:00:00+00:00", None),
    ],
)
def test_a_consent_time_in_doubt_is_compared_by_the_earliest_moment_it_can_mean(value, sent, compared):
    assert consent_time(value, NOW) == Consent(sent, compared)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("yes", "is not true, false or an ISO 8601 date-time"),
        (1, "is a number, not true, false or an ISO 8601 date-time"),
        ({"a": 1}, "is an object, not true, false or an ISO 8601 date-time"),
        ("0001-01-01", "is before 2 January 1970: a placeholder"),
        ("0001-01-01T00:00:00+05:00", "is a date-time outside the years Klaviyo can take"),
        ("2026-01-01T00:06:00Z", "is a date in the future"),
        # Epoch zero, as UTC, as local time east of Greenwich without a zone, or as a date.
        ("1970-01-01T00:00:00Z", "is before 2 January 1970: a placeholder"),
        ("1970-01-01T01:00:00+01:00", "is before 2 January 1970: a placeholder"),
        ("1970-01-01T14:00:00", "is before 2 January 1970: a placeholder"),
        ("1970-01-01", "is before 2 January 1970: a placeholder"),
    ],
)
def test_consent_values_that_say_neither_yes_nor_no_are_refused(value, words):
    with pytest.raises(ValueError, match=words):
        consent_time(value, NOW)
