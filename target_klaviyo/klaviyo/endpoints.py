"""Every Klaviyo endpoint the loader calls: method, path, page size and rate, in one table.

The paths are written as Klaviyo's OpenAPI spec writes them (``{id}``, ``{job_id}``),
and ``tests/klaviyo/test_endpoints.py`` checks each entry against the committed spec
subset (``klaviyo_sandbox/klaviyo-openapi-subset.json``): the path exists with that
method, the page size is within the spec's ``page[size]`` maximum, and the steady
and burst rates are the spec's ``x-klaviyo-ratelimit``, the scopes its
``x-klaviyo-scopes``. ``interval`` is how far
apart the loader keeps its own requests to an endpoint it calls many times in a row:
a little under the steady rate, so that a long run is not throttled (a 429 would
still be retried, but each one costs its ``Retry-After``).
"""

from __future__ import annotations

from dataclasses import dataclass

from target_klaviyo.klaviyo.http import Pace


@dataclass(frozen=True)
class Endpoint:
    """One operation of Klaviyo's API as the loader uses it."""

    method: str
    path: str  # the spec's template: fill it with :meth:`at`
    steady_per_minute: int  # x-klaviyo-ratelimit "steady"
    burst_per_second: int  # x-klaviyo-ratelimit "burst"
    page_size: int = 0  # the page[size] asked for where the answer comes in pages (0: it does not)
    interval: float | None = None  # seconds between the loader's requests, where it paces them
    scopes: tuple[str, ...] = ()  # x-klaviyo-scopes: what the API key needs for it
    # What one request may carry, from Klaviyo's API reference (the spec does not record it).
    max_items: int = 0  # profiles, or profile ids, in one request (0: no such limit)
    max_bytes: int = 0  # bytes of one request's body (0: no such limit)

    def at(self, **ids: str) -> str:
        """The path with its ids filled in, as requested and as error sentences name it."""
        return self.path.format(**ids)

    def pace(self) -> Pace:
        """A pace for a run of requests to this endpoint; only for an endpoint the loader paces."""
        if self.interval is None:
            raise ValueError(f"{self.method} {self.path} is not paced")  # a slip in the table's use
        return Pace(self.interval)


LIST = Endpoint("GET", "/api/lists/{id}", 750, 75, scopes=("lists:read",))
# Read a page at a time, 700 a minute: the consent look-up and the mirror's reading of members.
LIST_PROFILES = Endpoint(
    "GET",
    "/api/lists/{id}/profiles",
    750,
    75,
    page_size=100,
    interval=60 / 700,
    scopes=("lists:read", "profiles:read"),
)
LIST_REMOVE = Endpoint(
    "DELETE",
    "/api/lists/{id}/relationships/profiles",
    150,
    10,
    interval=60 / 140,
    scopes=("lists:write", "profiles:write"),
    max_items=1000,
)
# Profiles by id, 100 a request, 700 a minute: mirror_scope synced checks whom it would remove.
PROFILES = Endpoint(
    "GET", "/api/profiles", 750, 75, page_size=100, interval=60 / 700, scopes=("profiles:read",)
)
IMPORT_JOB_CREATE = Endpoint(
    "POST",
    "/api/profile-bulk-import-jobs",
    150,
    10,
    scopes=("lists:write", "profiles:write"),
    max_items=10_000,
    max_bytes=5_000_000,
)
# Jobs are polled well under the steady 150 a minute (the pipeline's settling thread keeps it).
IMPORT_JOB = Endpoint(
    "GET",
    "/api/profile-bulk-import-jobs/{job_id}",
    150,
    10,
    interval=0.45,
    scopes=("lists:read", "profiles:read"),
)
IMPORT_ERRORS = Endpoint(
    "GET",
    "/api/profile-bulk-import-jobs/{id}/import-errors",
    150,
    10,
    page_size=100,
    scopes=("profiles:read",),
)
SUBSCRIBE = Endpoint(
    "POST",
    "/api/profile-subscription-bulk-create-jobs",
    750,
    75,
    interval=60 / 700,
    scopes=("lists:write", "profiles:write", "subscriptions:write"),
    max_items=1000,
)

ENDPOINTS = (
    LIST,
    LIST_PROFILES,
    LIST_REMOVE,
    PROFILES,
    IMPORT_JOB_CREATE,
    IMPORT_JOB,
    IMPORT_ERRORS,
    SUBSCRIBE,
)
