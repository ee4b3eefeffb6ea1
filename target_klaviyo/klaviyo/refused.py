"""What Klaviyo's answers say was refused: the profiles an error points at, the scopes a key lacks.

A bulk request (an import job, a subscription) that Klaviyo refuses with a 400 names
each profile it objects to by a JSON pointer into the request,
``/data/attributes/profiles/data/<n>/...``; the loader drops those and sends the
rest again. An import job's errors point at their profiles the same way. A 401 or
403 means the key lacks a scope: :func:`lacks_scopes` says which, in one sentence.
:func:`dig` is how a value deep inside any answer is read, pointers and ids alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from target_klaviyo.errors import KlaviyoApiError, KlaviyoError

PROFILE_POINTER = re.compile(r"^/data/attributes/profiles/data/(\d+)(?:/|$)")

Item = TypeVar("Item")


def dig(answer: Any, *keys: str) -> Any:
    """``answer[k1][k2]...``, or None where a step is missing or not an object."""
    for key in keys:
        if not isinstance(answer, dict):
            return None
        answer = answer.get(key)
    return answer


def profile_position(pointer: object, size: int) -> int | None:
    """The position of the profile a pointer names among ``size`` sent, or None if it names none."""
    match = PROFILE_POINTER.match(pointer) if isinstance(pointer, str) else None
    if match is None or int(match.group(1)) >= size:
        return None
    return int(match.group(1))


def split_refused(error: KlaviyoApiError, items: Sequence[Item]) -> tuple[dict[int, str], list[Item]]:
    """The positions a 400 refuses, each with Klaviyo's words, and the items left to send again.

    Anything else (another status, an error that points at no profile sent) is raised as it
    is: only a refusal of named profiles can be worked around by leaving them out.
    """
    refused: dict[int, str] = {}
    for detail in error.errors:
        position = profile_position(detail.pointer, len(items))
        if error.status != 400 or position is None:
            raise error
        refused.setdefault(position, f"{detail.code}: {detail.detail} ({detail.pointer})")
    if not refused:
        raise error
    return refused, [item for position, item in enumerate(items) if position not in refused]


def and_list(names: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``: scopes as a sentence names them."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def lacks_scopes(status: int, doing: str, who: str, scopes: Sequence[str], why: str = "") -> KlaviyoError:
    """Klaviyo refused (``status`` 401 or 403) to do ``doing``: ``who`` needs these scopes."""
    noun = "scope" if len(scopes) == 1 else "scopes"
    return KlaviyoError(
        f"Klaviyo refused to {doing} ({status}): {who} needs the {and_list(scopes)} {noun}{why}."
    )


@contextmanager
def scopes_needed(doing: str, who: str, scopes: Sequence[str], why: str = "") -> Iterator[None]:
    """A 401 or 403 inside becomes the sentence of :func:`lacks_scopes`; any other error stays as it is."""
    try:
        yield
    except KlaviyoApiError as error:
        if error.status in {401, 403}:
            raise lacks_scopes(error.status, doing, who, scopes, why) from None
        raise
