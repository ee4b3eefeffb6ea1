"""The compact hash tables behave as a set and a dict of the same keys."""

from __future__ import annotations

import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

from target_klaviyo.run.seen import HashTable, hash64

keys = st.integers(min_value=1, max_value=2**64 - 1)


@given(
    st.lists(st.tuples(st.one_of(keys, st.integers(1, 40)), st.integers(0, 2**64 - 1)), max_size=3000),
    st.integers(0, 5000),
)
def test_the_table_is_a_dict_and_a_set(operations, expected):
    table, values = HashTable(with_values=True, expected=expected), {}
    members = HashTable(with_values=False)
    reference: set[int] = set()
    for key, value in operations:
        assert table.get(key) == values.get(key)
        assert table.setdefault(key, value) == values.setdefault(key, value)
        members.setdefault(key)
        reference.add(key)
        assert len(table) == len(values) == len(members) == len(reference)
    assert all(key in table and key in members for key in values)
    assert not any(key in members for key in range(41, 60) if key not in reference)


@given(st.lists(st.tuples(st.integers(1, 60), st.integers(0, 2**64 - 1)), max_size=500))
def test_put_replaces_like_a_dict(operations):
    table, values = HashTable(with_values=True), {}
    for key, value in operations:
        table.put(key, value)
        values[key] = value
        assert table.get(key) == value
    assert len(table) == len(values)
    assert all(table.get(key) == value for key, value in values.items())


def test_hashes_are_never_the_empty_slot():
    assert all(hash64(f"person{i}@example.com") != 0 for i in range(10_000))
    assert hash64("a@example.com") == hash64("a@example.com")


def test_a_person_costs_at_most_32_bytes_in_each_table():
    tracemalloc.start()
    table = HashTable(with_values=True)
    before = tracemalloc.get_traced_memory()[0]
    for i in range(300_000):
        table.setdefault(hash64(f"person{i}@example.com"), i + 1)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert used / 300_000 <= 64  # 16 bytes a slot, at least half the slots free; at most twice that
