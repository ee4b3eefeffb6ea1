"""The query parameters the handlers read: ``page[size]``, ``page[cursor]`` and ``filter``."""

from __future__ import annotations

import base64
import re
from datetime import datetime, timezone
from urllib.parse import quote

from klaviyo_sandbox.exceptions import InvalidCursor, InvalidFilter, InvalidPageSize

MAX_PAGE_SIZE = 100
QUOTED = re.compile(r"""\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')\s*(?:,|$)""")
JOB_STATUSES = {"queued", "processing", "complete", "cancelled"}


def page_size(query: dict[str, str]) -> int:
    raw = query.get("page[size]", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise InvalidPageSize(MAX_PAGE_SIZE)
    return int(raw)


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(str(position).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, default: int = 0) -> int:
    if not cursor:
        return default
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        raise InvalidCursor from None


def filter_values(text: str | None, field: str) -> list[str] | None:
    """The values of ``equals(field,"a")`` or ``any(field,["a","b"])``, the one field an endpoint filters on."""
    if text is None:
        return None
    match = re.match(rf"^(equals|any)\({field},\s*(.*)\)$", text.strip(), re.DOTALL)
    values = match.group(2).strip() if match else ""
    if match and match.group(1) == "any":
        values = values[1:-1] if values.startswith("[") and values.endswith("]") else "\x00"
    found = []
    position = 0
    while match and position < len(values):
        item = QUOTED.match(values, position)
        if item is None:
            break
        found.append(item.group(1) if item.group(1) is not None else item.group(2))
        position = item.end()
    if not match or position < len(values) or not found or (match.group(1) == "equals" and len(found) > 1):
        raise InvalidFilter(
            f'filter must be equals({field},"...") or any({field},["...", ...]) on this endpoint.'
        )
    return found


def email_filter(text: str | None) -> list[str] | None:
    """The emails a list-members filter names, in lower case (emails compare case-blind)."""
    emails = filter_values(text, "email")
    return None if emails is None else [email.lower() for email in emails]


JOINED = re.compile(r"^(greater-or-equal|greater-than)\(joined_group_at,\s*([^,()]+?)\s*\)$")


def member_filter(text: str | None) -> tuple[list[str] | None, tuple[str, datetime] | None]:
    """What a list-members filter asks for: only some emails, or only the members who joined from a
    moment on (``greater-or-equal(joined_group_at,2026-01-01T00:00:00+00:00)``, or ``greater-than``)."""
    match = JOINED.match(text.strip()) if text is not None else None
    if match is None:
        return email_filter(text), None
    try:
        moment = datetime.fromisoformat(match.group(2).strip("\"'"))
    except ValueError:
        raise InvalidFilter("joined_group_at must be compared with an ISO 8601 date-time.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return None, (match.group(1), moment)


def status_filter(text: str | None) -> set[str] | None:
    """The job statuses a job-listing filter names."""
    statuses = filter_values(text, "status")
    if statuses is not None and not set(statuses) <= JOB_STATUSES:
        raise InvalidFilter('filter must be equals(status,"...") or any(status,[...]) with job statuses.')
    return None if statuses is None else set(statuses)


def page_links(
    url: str, size: int, next_position: int | None, query: dict[str, str] | None = None
) -> dict[str, str]:
    """A page's ``links``: ``self``, and ``next`` (a cursor at ``next_position``) when more follow,
    keeping the request's other ``query`` parameters (``filter``, ``fields``, ``sort``), as Klaviyo's do."""
    links = {"self": url}
    if next_position is not None:
        kept = {name: value for name, value in (query or {}).items() if not name.startswith("page[")}
        extra = "".join(f"&{name}={quote(value)}" for name, value in kept.items())
        links["next"] = f"{url}?page[size]={size}&page[cursor]={encode_cursor(next_position)}{extra}"
    return links
