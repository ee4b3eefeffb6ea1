"""Following Klaviyo's cursor pages: ``links.next`` and its ``page[cursor]``, to the last page.

Each reader of pages says what an odd answer means for it (:class:`Paging`): the
mirror's reading of members takes any paging it cannot follow as the last page (a
short read only keeps members), while the consent look-up stops the run on any of
them (it must never subscribe someone it could not check). All of them stop on a
cursor given twice, and on more pages than the answer can hold when that is known.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from target_klaviyo.errors import KlaviyoError


@dataclass(frozen=True)
class Paging:
    """What each oddity of an answer's paging means to one reader.

    ``fault`` makes the run-stopping error from one of the phrases below; a phrase
    that is None takes that oddity as the last page instead.
    """

    fault: Callable[[str], KlaviyoError]
    repeated: str  # links.next gives a cursor it had already given
    endless: str = ""  # more pages than ``most_pages``
    links_not_object: str | None = None
    next_not_text: str | None = None
    no_cursor: str | None = None  # a links.next without a page[cursor]
    most_pages: int | None = None  # None: as many as Klaviyo gives, each cursor once


def next_cursor(page: object, paging: Paging) -> str | None:
    """The ``page[cursor]`` of the answer's ``links.next``, or None on the last page."""
    links = page.get("links") if isinstance(page, dict) else None
    if links is None:
        return None
    if not isinstance(links, dict):
        _odd(paging, paging.links_not_object)
        return None
    next_link = links.get("next")
    if next_link is None:
        return None
    if not isinstance(next_link, str):
        _odd(paging, paging.next_not_text)
        return None
    try:
        query = urlsplit(next_link).query
    except ValueError:  # not a URL at all (an unclosed "[" in its host, say): no cursor in it
        query = ""
    cursor = parse_qs(query).get("page[cursor]")
    if not cursor:
        _odd(paging, paging.no_cursor)
        return None
    return cursor[0]


def _odd(paging: Paging, phrase: str | None) -> None:
    if phrase is not None:
        raise paging.fault(phrase)


def pages(
    fetch: Callable[[dict[str, Any]], object], params: dict[str, Any], paging: Paging
) -> Iterator[object]:
    """Each page ``fetch`` reads, the first with ``params`` and each next with its cursor added.

    The caller checks a page's data as it receives it, before the next page's cursor is read.
    """
    cursors: set[str] = set()
    for _ in itertools.count() if paging.most_pages is None else range(paging.most_pages):
        page = fetch(params)
        yield page
        cursor = next_cursor(page, paging)
        if cursor is None:
            return
        if cursor in cursors:
            raise paging.fault(paging.repeated)
        cursors.add(cursor)
        params = {**params, "page[cursor]": cursor}
    raise paging.fault(paging.endless)
