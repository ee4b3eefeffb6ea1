"""The profile being built and what becomes of a record: a :class:`Profile` to send, or a :class:`Reject`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # consent.py builds on Reject; a Profile only carries what it reads
    from target_klaviyo.records.consent import Consent


@dataclass(frozen=True)
class Reject:
    """Why a record was not exported (``reason`` is a stable code, ``detail`` a sentence)."""

    reason: str
    detail: str


@dataclass
class Profile:
    """A Klaviyo profile ready to send: its dedupe key, its JSON:API resource, that resource as JSON."""

    key: str
    resource: dict[str, Any]
    encoded: bytes
    dropped: list[Reject] = field(default_factory=list)
    consent: Consent | None = None  # email marketing consent: None when the record gives none

    def without(self, attribute: str, reason: Reject) -> Profile:
        """This profile less one attribute, which is reported as dropped."""
        attributes = {name: value for name, value in self.resource["attributes"].items() if name != attribute}
        resource = {**self.resource, "attributes": attributes}
        return replace(self, resource=resource, encoded=encode(resource), dropped=[*self.dropped, reason])


_ENCODER = json.JSONEncoder(separators=(",", ":"))


def encode(resource: dict[str, Any]) -> bytes:
    """A resource as the compact JSON it is sent as; its length is the profile's size."""
    return _ENCODER.encode(resource).encode()
