"""The ledger's hashes: who a person is, everything the target sends for them, and their identifiers.

Both are BLAKE2b, 16 bytes, stable across processes and machines (Python's own
``hash`` is not). The ledger stores them whole; in memory (:mod:`.known`) a person
is its first 8 bytes and a digest its first 6, next to the day it was confirmed.

What a collision costs (n people in a list, docs/ledger.md has the arithmetic):

- Two people with the same 8-byte person hash in memory: about n² / 2⁶⁵, one in 37
  million lists of a million people. Each then finds the other's digest, which differs,
  so both are sent: an extra send, never a skipped one.
- A changed profile whose 6-byte digest equals the old one is skipped: 1 in 2⁴⁸
  (2.8e14) per changed profile, once in about 770,000 years at a million changes a
  day; :mod:`.known` also sends everyone again within ``resync_after_days``.

The person is the normalised email (the run's key, lower case), never stored as text:
the ledger holds no address. The digest covers the profile exactly as encoded for the
import job (every attribute and custom property, after mapping, so a change of value,
of ``property_mapping`` or of ``custom_properties`` changes it) and the consent sent
with it.

An identifier is a phone number or external id the target gave a person, as
``identifier_of(attribute, value)``: Klaviyo finds a profile by either, so one given to
another email would merge the two people (see :mod:`target_klaviyo.run.admission`).
Two identifiers sharing a hash can only make the target leave one out: a value not
sent, never a merge.
"""

from __future__ import annotations

import hashlib

from target_klaviyo.records.consent import Consent
from target_klaviyo.records.emails import normalize_email

HASH_BYTES = 16
IDENTIFIERS = ("phone_number", "external_id")  # what Klaviyo finds a profile by, besides the email
NO_IDENTIFIER = bytes(HASH_BYTES)  # in a profile's identifiers: none sent


def person_of(key: str) -> bytes:
    """The ledger's name for the person with this normalised email."""
    return hashlib.blake2b(
        key.encode("utf-8", "surrogatepass"), digest_size=HASH_BYTES, person=b"tk-person"
    ).digest()


def person_of_address(email: str) -> bytes | None:
    """The ledger's name for a list member, from their email as Klaviyo holds it; None for an address
    that does not normalise, which was never a key of this target's, so is in no ledger."""
    key = normalize_email(email)
    return person_of(key.lower()) if isinstance(key, str) else None


def digest_of(encoded: bytes, consent: Consent | None) -> bytes:
    """What the target sends for a person to a list: the encoded profile and its consent."""
    digest = hashlib.blake2b(encoded, digest_size=HASH_BYTES, person=b"tk-profile")
    if consent is not None:
        digest.update(b"\0consent\0" + consent.at.encode() + b"\0" + (consent.since or "").encode())
    return digest.digest()


def identifier_of(attribute: str, value: str) -> bytes:
    """The ledger's name for a phone number or an external id (``attribute``) with this value."""
    text = f"{attribute}\n{value}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(text, digest_size=HASH_BYTES, person=b"tk-identifier").digest()
