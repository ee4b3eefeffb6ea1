"""A batch's profiles on their way to Klaviyo: what is sent, where each came from, and its jobs.

A profile is serialised once, when it is mapped; a batch is cut into as few jobs as
Klaviyo's limits allow (10,000 profiles and 5 MB a job), and each job's body is
assembled from those bytes. Where each profile came from is kept, compressed, for
the rejects file (:class:`Sources`). A dry run describes the jobs it would send.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from target_klaviyo.klaviyo.endpoints import IMPORT_JOB_CREATE
from target_klaviyo.reader import record_from_line
from target_klaviyo.records.consent import Consent
from target_klaviyo.records.profile import Profile

MAX_PROFILES_PER_JOB = IMPORT_JOB_CREATE.max_items
MAX_JOB_BYTES = IMPORT_JOB_CREATE.max_bytes
ENVELOPE_BYTES = 512


@dataclass(slots=True)
class PendingProfile:
    """A profile on its way to Klaviyo: what is sent, and where it came from (for the rejects file).

    ``source`` is the Singer line the record came in on when the reader had it (a line
    is a third of the memory of the record as Python objects, and is read again only
    for a reject), else the record. ``epoch`` is where the record stood among the
    tap's STATE messages (:class:`target_klaviyo.run.state.StateLedger`). ``attributes``
    is kept only in a dry run, which describes what it would send. ``list_id`` is the
    list the profile goes to (its stream's). ``consent`` is the record's email marketing
    consent (see :attr:`Profile.consent`), sent as a subscription once the profile is imported.
    """

    key: str
    encoded: bytes
    stream: str
    source: dict[str, Any] | str
    epoch: int = 0
    attributes: dict[str, Any] | None = None
    list_id: str = ""
    order: int = 0  # when the run took it in: the order of a person's records across lists
    consent: Consent | None = None
    # The address as imported, for the subscription (the key is lower case; Klaviyo keeps the case).
    email: str = ""
    digest: bytes = bytes(16)  # with a ledger, what the ledger records once Klaviyo confirms it
    verdict: str = ""  # with a ledger, what it said of this person when first taken (as counted)
    # With a ledger, the phone number and external id given to the person, as it names them (see
    # Admissions.one_person_per_phone): 32 bytes, 16 zero bytes where there is none.
    identifiers: bytes = b""

    @classmethod
    def of(
        cls,
        profile: Profile,
        stream: str,
        source: dict[str, Any] | str,
        epoch: int = 0,
        *,
        list_id: str = "",
        order: int = 0,
        describe: bool = False,
        digest: bytes = bytes(16),
        verdict: str = "",
        identifiers: bytes = b"",
    ) -> PendingProfile:
        attributes = profile.resource["attributes"] if describe else None
        email = profile.resource["attributes"]["email"] if profile.consent is not None else ""
        return cls(
            profile.key,
            profile.encoded,
            stream,
            source,
            epoch,
            attributes,
            list_id,
            order,
            profile.consent,
            email,
            digest,
            verdict,
            identifiers,
        )

    @property
    def record(self) -> dict[str, Any]:
        return record_of(self.source)


@dataclass(slots=True)
class SentProfile:
    """A profile of a job Klaviyo accepted, as needed to reject it: made from :class:`SubmittedJob`."""

    key: str
    stream: str
    source: dict[str, Any] | str
    epoch: int

    @property
    def record(self) -> dict[str, Any]:
        return record_of(self.source)


def record_of(source: dict[str, Any] | str) -> dict[str, Any]:
    """The record as the sink received it, read again from its line if that is what was kept."""
    return source if isinstance(source, dict) else record_from_line(source)


def split_for_jobs(
    pending: list[PendingProfile], most: int = MAX_PROFILES_PER_JOB
) -> Iterator[list[PendingProfile]]:
    """Group profiles into job-sized chunks of at most ``most`` profiles and Klaviyo's bytes, in order."""
    chunk: list[PendingProfile] = []
    size = ENVELOPE_BYTES
    for item in pending:
        item_size = len(item.encoded) + 1
        if chunk and (len(chunk) >= most or size + item_size > MAX_JOB_BYTES):
            yield chunk
            chunk, size = [], ENVELOPE_BYTES
        chunk.append(item)
        size += item_size
    if chunk:
        yield chunk


def job_body(list_id: str, chunk: list[PendingProfile]) -> bytes:
    """The JSON:API body of a job, assembled from profiles serialised once."""
    profiles = b",".join(item.encoded for item in chunk)
    lists = json.dumps([{"type": "list", "id": list_id}]).encode()
    return (
        b'{"data":{"type":"profile-bulk-import-job","attributes":{"profiles":{"data":['
        + profiles
        + b']}},"relationships":{"lists":{"data":'
        + lists
        + b"}}}}"
    )


class Sources:
    """Where a job's profiles came from, for the rejects file, in a fraction of the memory.

    Lines (from the reader) are kept as one zlib-compressed text, about a sixth of
    their size, and decompressed only if Klaviyo rejects one of them; records (from a
    stream map) are kept as they are.
    """

    def __init__(self, sources: list[dict[str, Any] | str]) -> None:
        self._records: list[dict[str, Any] | str] | None = None
        self._compressed = b""
        if all(isinstance(source, str) for source in sources):
            text = "\n".join(source.rstrip("\n") for source in sources)  # type: ignore[union-attr]
            self._compressed = zlib.compress(text.encode("utf-8", "surrogatepass"), 1)
        else:
            self._records = sources

    def __getitem__(self, position: int) -> dict[str, Any] | str:
        if self._records is None:
            text = zlib.decompress(self._compressed).decode("utf-8", "surrogatepass")
            self._records = list[dict[str, Any] | str](text.split("\n"))
        return self._records[position]
