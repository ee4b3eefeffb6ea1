"""Generated Singer streams of customers, shared by the benchmarks."""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Iterator
from typing import Any

CUSTOMER_SCHEMA: dict[str, Any] = {
    "type": "SCHEMA",
    "stream": "customers",
    "key_properties": ["id"],
    "schema": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "email": {"type": "string"},
            "first_name": {"type": "string"},
            "phone": {"type": "string"},
            "city": {"type": "string"},
            "plan": {"type": "string"},
            "ltv": {"type": "number"},
        },
    },
}


def customer_messages(count: int, *, tag: int = 0, state_every: int = 0) -> Iterator[dict[str, Any]]:
    """The SCHEMA, then ``count`` distinct customers (``tag`` keeps rounds apart), with a STATE
    after every ``state_every`` records when it is not 0."""
    yield CUSTOMER_SCHEMA
    for i in range(count):
        yield {
            "type": "RECORD",
            "stream": "customers",
            "record": {
                "id": i,
                "email": f"r{tag}-person{i}@example.com",
                "first_name": f"Person {i}",
                "phone": f"+1415{tag % 1000:03d}{i % 10_000:04d}",
                "city": "San Francisco",
                "plan": ("free", "pro", "enterprise")[i % 3],
                "ltv": i * 1.5,
            },
        }
        if state_every and (i + 1) % state_every == 0:
            yield {"type": "STATE", "value": {"bookmarks": {"customers": {"position": i + 1}}}}


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


# The shape of sample_data/customers.singer.jsonl: what a tap reading a customers table sends.
SEGMENT_SCHEMA: dict[str, Any] = {
    "type": "SCHEMA",
    "stream": "customers",
    "key_properties": ["CustomerId"],
    "schema": {
        "type": "object",
        "properties": {
            "CustomerId": {"type": "integer"},
            "EmailAddress": _nullable("string"),
            "FirstName": _nullable("string"),
            "LastName": _nullable("string"),
            "Phone": _nullable("string"),
            "Address": _nullable(
                "object",
                properties={
                    name: _nullable("string")
                    for name in ("Street", "City", "Region", "PostalCode", "Country")
                },
            ),
            "Plan": _nullable("string"),
            "LifetimeValue": _nullable("number"),
            "Tags": _nullable("array", items={"type": "string"}),
            "MarketingOptIn": _nullable("boolean"),
            "SignedUpAt": _nullable("string", format="date-time"),
            "UpdatedAt": {"type": "string", "format": "date-time"},
        },
    },
}
# The mapping of sample_data/config.example.json.
SEGMENT_MAPPING = {
    "email_property": "EmailAddress",
    "property_mapping": {
        "first_name": "FirstName",
        "last_name": "LastName",
        "phone_number": "Phone",
        "external_id": "CustomerId",
        "location.address1": "Address.Street",
        "location.city": "Address.City",
        "location.region": "Address.Region",
        "location.zip": "Address.PostalCode",
        "location.country": "Address.Country",
    },
    "custom_properties": "unmapped",
}
FIRST = ("Ada", "Grace", "Alan", "Katherine", "Linus", "Margaret", "Björn", "Zoë", "José", "Mei")
LAST = ("Lovelace", "Hopper", "Turing", "Johnson", "Torvalds", "Hamilton", "Ångström", "Núñez", "Wong")
DOMAINS = ("example.com", "example.org", "mail.example.net", "shop.example.co.uk", "exämple.de", "example.se")
PLACES = (  # a phone number format per place, unique for up to 10 million rows
    ("London", "England", "EC1A 1BB", "United Kingdom", "+44 79{0:02d} {1:06d}"),
    ("Arlington", "VA", "22201", "United States", "+1 703-{0:03d}-{1:04d}"),
    ("San Francisco", "CA", "94103", "United States", "+1415{0:03d}{1:04d}"),
    ("Stockholm", "Stockholms län", "111 22", "Sweden", "+46 70 {0:03d} {1:04d}"),
    ("Paris", "Île-de-France", "75001", "France", "+33 6 {0:02d} {1:06d}"),
    ("Berlin", "Berlin", "10115", "Germany", "+49 151 {0:02d}{1:06d}"),
)
PLANS = ("free", "starter", "pro", "enterprise")
TAGS = ("b2b", "newsletter", "churn-risk", "vip", "beta")


def _name(i: int) -> tuple[str, str]:
    return FIRST[i % len(FIRST)], LAST[i // len(FIRST) % len(LAST)]


def _email(i: int, tag: int) -> str:
    """Mostly ASCII local parts, as most addresses have; one in 200 keeps the name's accents."""
    first, last = _name(i)
    local = f"{first}.{last}".lower()
    if i % 200:
        local = unicodedata.normalize("NFKD", local).encode("ascii", "ignore").decode()
    return f"{local}.{tag}.{i}@{DOMAINS[i % len(DOMAINS)]}"


def segment_messages(
    count: int, *, tag: int = 0, seed: int = 7, state_every: int = 10_000
) -> Iterator[dict[str, Any]]:
    """The SCHEMA, then ``count`` customer records in the shape of ``sample_data``, and a STATE
    after every ``state_every`` records.

    Like a real extract, a few percent of rows are unusable or repeated: about 1% have no
    email, 1% an invalid one, 1% a phone number without its country code, and 3% repeat
    the email of an earlier row (in another letter case). ``tag`` keeps rounds apart.
    """
    rng = random.Random(seed)
    yield SEGMENT_SCHEMA
    for i in range(count):
        first, last = _name(i)
        city, region, zip_code, country, phone = PLACES[i % len(PLACES)]
        roll = rng.random()
        email: str | None = _email(i, tag)
        if roll < 0.01:
            email = None
        elif roll < 0.02:
            email = _email(i, tag).replace("@", "(at)")
        elif roll < 0.05 and i:
            email = _email(rng.randrange(i), tag).upper()
        series, rest = divmod(i // len(PLACES), 10_000)
        number = phone.format(
            200 + series % 700 if "703" in phone or "1415" in phone else 10 + series % 90, rest
        )
        if rng.random() < 0.01:
            number = f"0{rng.randrange(10**9):09d}"
        yield {
            "type": "RECORD",
            "stream": "customers",
            "record": {
                "CustomerId": 1000 + i,
                "EmailAddress": email,
                "FirstName": first,
                "LastName": last,
                "Phone": number,
                "Address": {
                    "Street": f"{rng.randrange(1, 300)} Main Street",
                    "City": city,
                    "Region": region,
                    "PostalCode": zip_code,
                    "Country": country,
                },
                "Plan": rng.choice(PLANS),
                "LifetimeValue": round(rng.random() * 5000, 2),
                "Tags": rng.sample(TAGS, rng.randrange(3)),
                "MarketingOptIn": rng.random() < 0.6,
                "SignedUpAt": f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:15:00+00:00",
                "UpdatedAt": f"2026-11-{1 + i % 28:02d}T09:00:00+00:00",
            },
            "time_extracted": "2026-11-28T06:00:00+00:00",
        }
        if state_every and (i + 1) % state_every == 0:
            yield {"type": "STATE", "value": {"bookmarks": {"customers": {"replication_key_value": i + 1}}}}
