"""STATE is written as soon as every record before it is final, in order, and never earlier."""

import io
import json

import pytest

from target_klaviyo.run.state import StateLedger


def written(out: io.StringIO) -> list:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_state_with_nothing_open_before_it_is_written_at_once():
    out = io.StringIO()
    ledger = StateLedger(out)
    ledger.add_state({"n": 0})
    assert written(out) == [{"n": 0}]


def test_a_state_waits_for_every_record_before_it():
    out = io.StringIO()
    ledger = StateLedger(out)
    first, second = ledger.open_record(), ledger.open_record()
    ledger.add_state({"n": 2})
    ledger.close([first])
    assert written(out) == []
    ledger.close([second])
    assert written(out) == [{"n": 2}]


def test_a_later_epoch_finishing_first_waits_for_the_earlier_one():
    out = io.StringIO()
    ledger = StateLedger(out)
    early = ledger.open_record()
    ledger.add_state({"n": 1})
    late = ledger.open_record()
    ledger.add_state({"n": 2})
    ledger.close([late])
    assert written(out) == []
    ledger.close([early])
    assert written(out) == [{"n": 2}]


def test_states_are_written_in_order_as_their_records_finish():
    out = io.StringIO()
    ledger = StateLedger(out)
    records = []
    for n in range(1, 4):
        records.append(ledger.open_record())
        ledger.add_state({"n": n})
    for record in records:
        ledger.close([record])
    assert written(out) == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_records_after_the_last_state_do_not_hold_it_back():
    out = io.StringIO()
    ledger = StateLedger(out)
    ledger.add_state({"n": 0})
    ledger.open_record()
    assert written(out) == [{"n": 0}]


def test_repeated_and_back_to_back_states_are_merged():
    out = io.StringIO()
    ledger = StateLedger(out)
    record = ledger.open_record()
    for n in (1, 1, 2, 3):
        ledger.add_state({"n": n})
    assert ledger.current == 1, "states with no record between them share one epoch"
    ledger.close([record])
    assert written(out) == [{"n": 3}]


def test_nothing_is_written_after_stop_or_without_emit():
    out = io.StringIO()
    ledger = StateLedger(out)
    record = ledger.open_record()
    ledger.add_state({"n": 1})
    ledger.stop()
    ledger.close([record])
    assert written(out) == []
    quiet = StateLedger(out, emit=False)
    quiet.add_state({"n": 2})
    assert written(out) == []


def test_closing_more_than_was_opened_is_a_bug_not_a_silent_state():
    ledger = StateLedger(io.StringIO())
    record = ledger.open_record()
    ledger.close([record])
    ledger.add_state({"n": 1})
    ledger.open_record()
    with pytest.raises(RuntimeError, match="closed more records than it opened"):
        ledger.close([ledger.current, ledger.current])


def test_a_null_state_is_a_state():
    out = io.StringIO()
    StateLedger(out).add_state(None)
    assert out.getvalue() == "null\n"
