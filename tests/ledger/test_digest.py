"""The ledger's hashes: stable across processes, and changed by anything that is sent."""

from __future__ import annotations

import subprocess
import sys

from target_klaviyo.ledger.digest import digest_of, person_of
from target_klaviyo.records.consent import UNDATED, Consent


def test_a_person_is_the_same_in_every_process() -> None:
    # Python's own hash() differs between processes; the ledger's must not.
    code = "from target_klaviyo.ledger.digest import person_of; print(person_of('ada@example.com').hex())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == person_of("ada@example.com").hex()
    assert len(person_of("ada@example.com")) == 16


def test_the_digest_covers_the_profile_and_its_consent() -> None:
    base = digest_of(b'{"email":"ada@example.com"}', None)
    assert digest_of(b'{"email":"ada@example.com"}', None) == base
    assert digest_of(b'{"email":"ada@example.com","x":1}', None) != base
    undated = digest_of(b'{"email":"ada@example.com"}', UNDATED)
    assert undated != base
    dated = digest_of(b'{"email":"ada@example.com"}', Consent("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"))
    assert dated not in {base, undated}
    ahead = digest_of(b'{"email":"ada@example.com"}', Consent("2026-01-01T00:00:00Z", None))
    assert ahead != dated  # a date ahead of the clock is sent again once it is not
