"""The routes: which handler of :class:`~klaviyo_sandbox.responses.SandboxApi` answers which
method and path, with the query parameters it implements."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from klaviyo_sandbox.exceptions import MethodNotAllowed, NoSuchEndpoint
from klaviyo_sandbox.responses import Request, Response, SandboxApi


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    spec_path: str
    handler: Callable[[SandboxApi, Request], Response]
    has_body: bool
    query: frozenset[str]  # the query parameters the handler implements (of those the spec declares)


def _route(
    method: str, spec_path: str, handler: Callable[[SandboxApi, Request], Response], *query: str
) -> Route:
    pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", spec_path) + "/?$")
    return Route(method, pattern, spec_path, handler, method in {"POST", "PATCH", "DELETE"}, frozenset(query))


PAGES = ("page[size]", "page[cursor]")


ROUTES = (
    _route("GET", "/api/lists/{id}", SandboxApi.get_list, "additional-fields[list]"),
    _route(
        "GET",
        "/api/lists/{id}/profiles",
        SandboxApi.list_profiles,
        *PAGES,
        "fields[profile]",
        "additional-fields[profile]",
        "filter",
        "sort",
    ),
    _route("POST", "/api/lists/{id}/relationships/profiles", SandboxApi.add_list_members),
    _route("DELETE", "/api/lists/{id}/relationships/profiles", SandboxApi.remove_list_members),
    _route("GET", "/api/profiles", SandboxApi.get_profiles, *PAGES, "fields[profile]", "filter"),
    _route("GET", "/api/profile-bulk-import-jobs", SandboxApi.list_import_jobs, *PAGES, "filter", "sort"),
    _route("POST", "/api/profile-bulk-import-jobs", SandboxApi.create_import_job),
    _route("GET", "/api/profile-bulk-import-jobs/{job_id}", SandboxApi.get_import_job),
    _route("GET", "/api/profile-bulk-import-jobs/{id}/import-errors", SandboxApi.list_import_errors, *PAGES),
    _route("POST", "/api/profile-import", SandboxApi.import_profile),
    _route("POST", "/api/profile-subscription-bulk-create-jobs", SandboxApi.subscribe_profiles),
)


def resolve(request: Request) -> Route:
    """The route for the request's method and path, its path parameters put in ``request.params``."""
    allowed = []
    for route in ROUTES:
        match = route.pattern.match(request.path)
        if match:
            allowed.append(route.method)
            if route.method == request.method:
                request.params = match.groupdict()
                return route
    if allowed:
        raise MethodNotAllowed(request.method)
    raise NoSuchEndpoint(request.path)
