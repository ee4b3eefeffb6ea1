"""Removing the members a mirror plan names from their list, as Klaviyo takes them.

``DELETE /api/lists/{id}/relationships/profiles`` takes at most 1,000 profile ids a
request; requests are paced within the endpoint's steady rate, and each one is
numbered (its index in :func:`removal_requests`) so that an interrupted apply can
tell which were confirmed (:mod:`target_klaviyo.mirror.apply`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from target_klaviyo.klaviyo.endpoints import LIST_REMOVE
from target_klaviyo.klaviyo.http import KlaviyoClient
from target_klaviyo.klaviyo.refused import scopes_needed
from target_klaviyo.mirror.plan_format import ListPlan

MAX_IDS_PER_REMOVAL = LIST_REMOVE.max_items


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def removal_requests(plan: ListPlan) -> list[list[str]]:
    """The plan's members in removal requests of at most 1,000; a request's index names it in the progress."""
    return [
        plan.remove[start : start + MAX_IDS_PER_REMOVAL]
        for start in range(0, len(plan.remove), MAX_IDS_PER_REMOVAL)
    ]


class Remover:
    """Removes members from a list, one request of at most 1,000 at a time, paced within its rate."""

    def __init__(self, client: KlaviyoClient) -> None:
        self.client = client
        self._pace = LIST_REMOVE.pace()

    def remove(self, list_id: str, ids: list[str], before_try: Callable[[], None] | None = None) -> None:
        """One request; ``before_try`` runs before each try (the first and every retry) and may stop it."""
        body = {"data": [{"type": "profile", "id": profile_id} for profile_id in ids]}
        self._pace.wait()
        with scopes_needed(f"remove members from list {list_id}", "sync_mode mirror", ["lists:write"]):
            self.client.request(
                LIST_REMOVE.method, LIST_REMOVE.at(id=list_id), body=_encode(body), before_try=before_try
            )
