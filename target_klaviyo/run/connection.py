"""The connection check: before any profile is sent, the key works and every list of the run exists.

A wrong ``api_url``, a rejected key or a missing list ends the run with one sentence
naming the setting to fix. In mirror mode the check also reads each list's size,
the removal guard's measure.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from target_klaviyo.errors import ConnectionFailed, KlaviyoApiError, KlaviyoError
from target_klaviyo.klaviyo.endpoints import LIST
from target_klaviyo.klaviyo.http import KlaviyoClient
from target_klaviyo.klaviyo.refused import and_list
from target_klaviyo.settings.settings import Settings

logger = logging.getLogger(
    "target_klaviyo.run"
)  # the name its lines had before the modules moved into rooms: users' log filters keep working
# The connection check retries for at most this long: a wrong api_url is said within 15 s, while
# requests later in the run keep the client's long budget for Klaviyo's passing troubles.
CHECK_BUDGET = 8.0


class ListsFound(NamedTuple):
    """What the check learnt of each list: its profile count (when asked) and when it was created."""

    counts: dict[str, int]
    created: dict[str, str | None]


def check_lists(client: KlaviyoClient, settings: Settings, *, counts: bool) -> ListsFound:
    """Check every list of the run; with ``counts``, also read the profile count Klaviyo gives for each.

    The creation time tells the ledger whether a list is still the one it knows.
    """
    found = ListsFound({}, {})
    for list_id in settings.lists:
        attributes = _check_list(client, settings, list_id, counts=counts)
        count = attributes.get("profile_count")
        if counts and isinstance(count, int) and not isinstance(count, bool):
            found.counts[list_id] = count
        created = attributes.get("created")
        found.created[list_id] = created if isinstance(created, str) and created else None
    return found


def _check_list(
    client: KlaviyoClient, settings: Settings, list_id: str, *, counts: bool
) -> dict[str, object]:
    setting = "list_id" if list_id == settings.list_id else "stream_lists"
    try:
        params = {"additional-fields[list]": "profile_count"} if counts else None
        answer = client.get(LIST.at(id=list_id), params, budget=CHECK_BUDGET)
    except ConnectionFailed as failed:
        msg = (
            f"Cannot reach Klaviyo at api_url {settings.api_url}: {failed.cause}; check the "
            "api_url setting, and that this machine can reach it."
        )
        raise KlaviyoError(msg) from None
    except KlaviyoApiError as error:
        if error.status in {401, 403}:
            msg = (
                f"Klaviyo rejected the API key ({error.status}): check the api_key setting "
                f"and that the key has the {_scopes(settings)} scopes."
            )
            raise KlaviyoError(msg) from None
        if error.status == 404:
            msg = f"Klaviyo has no list with id {list_id!r} for this API key: check the {setting} setting."
            raise KlaviyoError(msg) from None
        raise
    logger.info("Connected to Klaviyo at %s; list %s found.", settings.api_url, list_id)
    data = answer.get("data") if isinstance(answer, dict) else None
    attributes = data.get("attributes") if isinstance(data, dict) else None
    return attributes if isinstance(attributes, dict) else {}


def _scopes(settings: Settings) -> str:
    """The scopes this run's settings need, for the sentence that says a key lacks them."""
    scopes = ["lists:write", "profiles:write"]
    if settings.mirror or settings.consent_path is not None:
        scopes += ["lists:read", "profiles:read"]
    if settings.consent_path is not None:
        scopes.append("subscriptions:write")
    return and_list(scopes)
