"""Each kind of error the sandbox answers: Klaviyo's status, code and sentence, and where it points."""

from __future__ import annotations

import pytest

from klaviyo_sandbox.exceptions import (
    ApiError,
    AuthenticationFailed,
    InvalidCursor,
    InvalidFilter,
    InvalidPageSize,
    InvalidProfiles,
    InvalidRevision,
    InvalidSort,
    JobNotFound,
    ListNotFound,
    MethodNotAllowed,
    MissingRevision,
    NoSuchEndpoint,
    NotAuthenticated,
    ParseError,
    ProfileNotFound,
    RequestTooLarge,
    SchemaViolation,
    ServerError,
    Throttled,
    TooManyProfiles,
    UnimplementedQueryParameter,
    UnknownQueryParameter,
    UnsupportedMediaType,
    error_object,
)

CASES = [
    (
        SchemaViolation("'x' is not allowed.", "/data/x"),
        400,
        "invalid",
        "'x' is not allowed.",
        {"pointer": "/data/x"},
    ),
    (
        TooManyProfiles(1000, "given", pointer="/data"),
        400,
        "invalid",
        "A maximum of 1000 profiles can be given per request.",
        {"pointer": "/data"},
    ),
    (
        TooManyProfiles(10_000, "imported", pointer="/data/attributes/profiles/data", given=10_001),
        400,
        "invalid",
        "A maximum of 10000 profiles can be imported per request; 10001 were given.",
        {"pointer": "/data/attributes/profiles/data"},
    ),
    (UnknownQueryParameter("x"), 400, "invalid", "'x' is not a valid query parameter.", {"parameter": "x"}),
    (
        UnimplementedQueryParameter("sort"),
        400,
        "invalid",
        "The Klaviyo sandbox does not implement 'sort' on this endpoint.",
        {"parameter": "sort"},
    ),
    (MissingRevision(), 400, "invalid", "Missing required header: revision.", {"parameter": "revision"}),
    (InvalidRevision("soon"), 400, "invalid", "Invalid revision header: 'soon'.", {"parameter": "revision"}),
    (
        InvalidPageSize(100),
        400,
        "invalid",
        "page[size] must be an integer between 1 and 100.",
        {"parameter": "page[size]"},
    ),
    (
        InvalidCursor(),
        400,
        "invalid",
        "page[cursor] is not a cursor this API returned.",
        {"parameter": "page[cursor]"},
    ),
    (InvalidFilter("filter must be..."), 400, "invalid", "filter must be...", {"parameter": "filter"}),
    (
        InvalidSort(("created_at", "-created_at")),
        400,
        "invalid",
        "sort must be created_at or -created_at.",
        {"parameter": "sort"},
    ),
    (ParseError(), 400, "parse_error", "The request body is not valid JSON.", {"pointer": "/"}),
    (NotAuthenticated(), 401, "not_authenticated", "Authentication credentials were not provided.", {}),
    (AuthenticationFailed(), 401, "authentication_failed", "Incorrect authentication credentials.", {}),
    (
        ListNotFound("L1", parameter="id"),
        404,
        "not_found",
        "A list with id L1 does not exist.",
        {"parameter": "id"},
    ),
    (
        JobNotFound("J1"),
        404,
        "not_found",
        "A profile bulk import job with id J1 does not exist.",
        {"parameter": "id"},
    ),
    (
        ProfileNotFound("P1", pointer="/data/0/id"),
        404,
        "not_found",
        "A profile with id P1 does not exist.",
        {"pointer": "/data/0/id"},
    ),
    (NoSuchEndpoint("/api/x"), 404, "not_found", "No API endpoint matches /api/x.", {}),
    (MethodNotAllowed("PUT"), 405, "method_not_allowed", 'Method "PUT" not allowed.', {}),
    (
        RequestTooLarge(5_000_000),
        413,
        "request_too_large",
        "The request body may be at most 5000000 bytes.",
        {},
    ),
    (
        UnsupportedMediaType("text/plain", "application/vnd.api+json"),
        415,
        "unsupported_media_type",
        'Unsupported media type "text/plain" in request; use "application/vnd.api+json".',
        {},
    ),
    (Throttled(3), 429, "throttled", "Request was throttled. Expected available in 3 seconds.", {}),
    (ServerError(503), 503, "error", "A server error occurred (injected by the sandbox).", {}),
]


@pytest.mark.parametrize(("error", "status", "code", "detail", "source"), CASES)
def test_each_error_answers_as_klaviyo_does(error: ApiError, status, code, detail, source):
    assert error.status == status
    [entry] = error.errors
    assert (entry["status"], entry["code"], entry["detail"], entry["source"]) == (
        status,
        code,
        detail,
        source,
    )
    assert str(error) == detail


def test_a_throttle_says_when_to_retry_and_other_errors_add_no_header():
    assert Throttled(7).headers == {"Retry-After": "7"}
    assert ParseError().headers == {}


def test_refused_profiles_are_all_named_and_the_first_says_why():
    entries = [error_object(400, "invalid", f"bad {i}", pointer=f"/data/{i}") for i in range(3)]
    error = InvalidProfiles(entries)
    assert (error.status, error.errors, str(error)) == (400, entries, "bad 0")


def test_titles_follow_the_status_and_a_server_error_has_the_generic_one():
    assert ListNotFound("L", parameter="id").errors[0]["title"] == "Not found."
    assert ServerError(502).errors[0]["title"] == "A server error occurred."
