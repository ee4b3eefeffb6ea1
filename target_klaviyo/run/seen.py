"""The people a run has seen and who owns each phone number, in 16 to 32 bytes a person.

A run keeps, for its whole length, every email it exported (for the limit and the
dedupe) and the owner of every phone number (so that one number never merges two
people in Klaviyo). As Python sets and dicts of strings that is about 250 bytes a
person; here each is a 64-bit hash in an open-addressing table backed by an
``array``, kept at most half full. Two different people colliding needs two 64-bit
hashes to be equal: about 1 in 37 million for a run of a million people (n² / 2⁶⁵).
The hashes are Python's own string hashes, which differ between processes; a run
only compares its own.
"""

from __future__ import annotations

from array import array

EMPTY = 0  # a slot no key uses; a hash that happens to be 0 is stored as 1


UNSIGNED = (1 << 64) - 1


def hash64(text: str) -> int:
    """The text's hash as an unsigned 64-bit number, never 0 (the empty slot)."""
    return (hash(text) & UNSIGNED) or 1


class HashTable:
    """64-bit keys, each with a 64-bit value (``with_values``) or none: a set or a dict of ints."""

    def __init__(self, *, with_values: bool, expected: int = 0) -> None:
        """``expected``: how many keys are coming, so that they go in without growing the table."""
        self._with_values = with_values
        self._size = 0
        self._allocate(max(1 << 10, 1 << (2 * expected).bit_length()))

    def _allocate(self, capacity: int) -> None:
        self._mask = capacity - 1
        self._keys = array("Q", bytes(8 * capacity))
        self._values = array("Q", bytes(8 * capacity)) if self._with_values else None

    def __len__(self) -> int:
        return self._size

    def _slot(self, key: int) -> int:
        """The slot that holds ``key``, or the empty slot where it would go (linear probing)."""
        keys, mask = self._keys, self._mask
        slot = key & mask
        while True:
            found = keys[slot]
            if found in (key, EMPTY):
                return slot
            slot = (slot + 1) & mask

    def __contains__(self, key: int) -> bool:
        return self._keys[self._slot(key)] == key

    def get(self, key: int) -> int | None:
        """The value stored for ``key`` (a table ``with_values``), or None: one probe."""
        slot = self._slot(key)
        if self._keys[slot] != key or self._values is None:
            return None
        return self._values[slot]

    def setdefault(self, key: int, value: int = 0) -> int:
        """The value stored for ``key``; if there is none, store ``value`` and return it."""
        slot = self._slot(key)
        if self._keys[slot] == key:
            return self._values[slot] if self._values is not None else value
        self._keys[slot] = key
        if self._values is not None:
            self._values[slot] = value
        self._size += 1
        if 2 * self._size > self._mask:
            self._grow()
        return value

    def put(self, key: int, value: int) -> None:
        """Store ``value`` for ``key``, replacing any (a table ``with_values``)."""
        self.setdefault(key, value)
        slot = self._slot(key)
        assert self._values is not None
        self._values[slot] = value

    def _grow(self) -> None:
        old_keys, old_values = self._keys, self._values
        self._allocate(2 * (self._mask + 1))
        self._size = 0
        for slot, key in enumerate(old_keys):
            if key != EMPTY:
                self.setdefault(key, old_values[slot] if old_values is not None else 0)
