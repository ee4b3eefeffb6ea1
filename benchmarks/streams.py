"""Generated Singer streams of customers, shared by the benchmarks."""

from __future__ import annotations

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
