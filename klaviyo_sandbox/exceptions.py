"""The errors the sandbox answers with, one type per kind of Klaviyo error response.

Each type knows its HTTP status, Klaviyo's ``code`` and the sentence Klaviyo says;
the server turns any of them into a JSON:API ``errors[]`` body (:func:`error_object`
draws one entry). The tree, by status::

    ApiError
    ├── InvalidRequest (400 invalid): SchemaViolation, TooManyProfiles, InvalidProfiles,
    │     UnknownQueryParameter, UnimplementedQueryParameter, MissingRevision, InvalidRevision,
    │     InvalidPageSize, InvalidCursor, InvalidFilter, InvalidSort
    ├── ParseError (400 parse_error)
    ├── NotAuthenticated, AuthenticationFailed (401)
    ├── NotFound (404): ListNotFound, JobNotFound, ProfileNotFound, NoSuchEndpoint
    ├── MethodNotAllowed (405)
    ├── RequestTooLarge (413)
    ├── UnsupportedMediaType (415)
    ├── Throttled (429, with Retry-After)
    └── ServerError (5xx, only as an injected fault)
"""

from __future__ import annotations

import uuid
from typing import Any

TITLES = {
    400: "Invalid input.",
    401: "Authentication credentials were not provided.",
    403: "You do not have permission to perform this action.",
    404: "Not found.",
    405: "Method not allowed.",
    413: "Request entity too large.",
    415: "Unsupported media type.",
    429: "Request was throttled.",
}


def error_object(
    status: int, code: str, detail: str, *, pointer: str | None = None, parameter: str | None = None
) -> dict[str, Any]:
    """One entry of a JSON:API ``errors[]``, with what in the request it is about (``source``)."""
    source: dict[str, str] = {}
    if pointer is not None:
        source["pointer"] = pointer
    if parameter is not None:
        source["parameter"] = parameter
    return {
        "id": str(uuid.uuid4()),
        "status": status,
        "code": code,
        "title": TITLES.get(status, "A server error occurred."),
        "detail": detail,
        "source": source,
        "links": {},
        "meta": {},
    }


class ApiError(Exception):
    """A Klaviyo error response: its status, headers and error objects (the first says why)."""

    status = 500
    code = "error"

    def __init__(
        self,
        detail: str,
        *,
        pointer: str | None = None,
        parameter: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.headers = headers or {}
        self.errors = [error_object(self.status, self.code, detail, pointer=pointer, parameter=parameter)]


class InvalidRequest(ApiError):
    """400 ``invalid``: the request is well-formed JSON but Klaviyo refuses what it asks."""

    status = 400
    code = "invalid"


class SchemaViolation(InvalidRequest):
    """The body breaks Klaviyo's OpenAPI schema; the validator's sentence says where and how."""

    def __init__(self, message: str, pointer: str) -> None:
        super().__init__(message, pointer=pointer)


class TooManyProfiles(InvalidRequest):
    """More profiles in one request than the endpoint takes (``verb``: what it does with them)."""

    def __init__(self, limit: int, verb: str, *, pointer: str, given: int | None = None) -> None:
        ending = "." if given is None else f"; {given} were given."
        super().__init__(f"A maximum of {limit} profiles can be {verb} per request{ending}", pointer=pointer)


class InvalidProfiles(InvalidRequest):
    """Some profiles of a bulk request are refused: the whole request fails, naming each of them."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["detail"])
        self.errors = errors


class UnknownQueryParameter(InvalidRequest):
    """A query parameter the operation does not declare."""

    def __init__(self, name: str) -> None:
        super().__init__(f"'{name}' is not a valid query parameter.", parameter=name)


class UnimplementedQueryParameter(InvalidRequest):
    """A query parameter Klaviyo declares that the sandbox does not implement: refused, never ignored."""

    def __init__(self, name: str) -> None:
        super().__init__(f"The Klaviyo sandbox does not implement '{name}' on this endpoint.", parameter=name)


class MissingRevision(InvalidRequest):
    def __init__(self) -> None:
        super().__init__("Missing required header: revision.", parameter="revision")


class InvalidRevision(InvalidRequest):
    def __init__(self, revision: str) -> None:
        super().__init__(f"Invalid revision header: {revision!r}.", parameter="revision")


class InvalidPageSize(InvalidRequest):
    def __init__(self, maximum: int) -> None:
        super().__init__(f"page[size] must be an integer between 1 and {maximum}.", parameter="page[size]")


class InvalidCursor(InvalidRequest):
    def __init__(self) -> None:
        super().__init__("page[cursor] is not a cursor this API returned.", parameter="page[cursor]")


class InvalidFilter(InvalidRequest):
    """A ``filter`` the endpoint cannot read; ``detail`` says which forms it reads."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, parameter="filter")


class InvalidSort(InvalidRequest):
    def __init__(self, allowed: tuple[str, ...]) -> None:
        super().__init__(f"sort must be {' or '.join(allowed)}.", parameter="sort")


class ParseError(ApiError):
    status = 400
    code = "parse_error"

    def __init__(self) -> None:
        super().__init__("The request body is not valid JSON.", pointer="/")


class NotAuthenticated(ApiError):
    """No ``Authorization`` header."""

    status = 401
    code = "not_authenticated"

    def __init__(self) -> None:
        super().__init__("Authentication credentials were not provided.")


class AuthenticationFailed(ApiError):
    """An ``Authorization`` header with another key."""

    status = 401
    code = "authentication_failed"

    def __init__(self) -> None:
        super().__init__("Incorrect authentication credentials.")


class NotFound(ApiError):
    status = 404
    code = "not_found"


class ListNotFound(NotFound):
    """No list of that id; ``pointer`` or ``parameter`` says where the request named it."""

    def __init__(self, list_id: str, *, pointer: str | None = None, parameter: str | None = None) -> None:
        super().__init__(f"A list with id {list_id} does not exist.", pointer=pointer, parameter=parameter)


class JobNotFound(NotFound):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"A profile bulk import job with id {job_id} does not exist.", parameter="id")


class ProfileNotFound(NotFound):
    def __init__(self, profile_id: str, *, pointer: str) -> None:
        super().__init__(f"A profile with id {profile_id} does not exist.", pointer=pointer)


class NoSuchEndpoint(NotFound):
    def __init__(self, path: str) -> None:
        super().__init__(f"No API endpoint matches {path}.")


class MethodNotAllowed(ApiError):
    """The path exists, but not with this method."""

    status = 405
    code = "method_not_allowed"

    def __init__(self, method: str) -> None:
        super().__init__(f'Method "{method}" not allowed.')


class RequestTooLarge(ApiError):
    status = 413
    code = "request_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body may be at most {limit} bytes.")


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"

    def __init__(self, given: str, expected: str) -> None:
        super().__init__(f'Unsupported media type "{given}" in request; use "{expected}".')


class Throttled(ApiError):
    """A rate limit is full: ``Retry-After`` says in how many seconds a request can pass again."""

    status = 429
    code = "throttled"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Request was throttled. Expected available in {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
        )


class ServerError(ApiError):
    """A 5xx the sandbox was told to inject (:class:`~klaviyo_sandbox.faults.FaultPlan`)."""

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__("A server error occurred (injected by the sandbox).")
