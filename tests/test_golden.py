"""The record path's output, byte for byte, against what it was before the fast paths.

``tests/golden/mapping.json`` was written by this module (``python tests/test_golden.py``)
at commit b5a6386, before the fast paths for emails and phone numbers and the compiled
mapping existed: per input, the SHA-256 of every record's outcome (the profile's
JSON as sent, the values dropped, or the reject with its reason and sentence), in
chunks of 1,000 records so that a difference points at where it starts.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from streams import SEGMENT_MAPPING, segment_messages

from target_klaviyo.reader import SingerInput
from target_klaviyo.records.mapping import ProfileMapper
from target_klaviyo.records.profile import Profile
from target_klaviyo.settings.settings import Settings
from target_klaviyo.sinks import RecordCheck

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).with_name("golden") / "mapping.json"
SAMPLE = ROOT / "sample_data" / "customers.singer.jsonl"
CONFIG = json.loads((ROOT / "sample_data" / "config.example.json").read_text())
GENERATED_RECORDS = 20_000
CHUNK = 1_000


def sample_lines() -> Iterator[str]:
    yield from SAMPLE.read_text().splitlines()


def generated_lines() -> Iterator[str]:
    for message in segment_messages(GENERATED_RECORDS, seed=11):
        yield json.dumps(message)


INPUTS = {
    "sample_data": (sample_lines, CONFIG),
    "generated": (generated_lines, {**CONFIG, **SEGMENT_MAPPING}),
}


def outcomes(lines: Iterator[str], config: dict[str, Any]) -> Iterator[bytes]:
    """Each record's outcome as bytes, through the target's own decoding, validation and mapping."""
    settings = Settings.from_config({**config, "api_key": "pk_golden", "list_id": "GoLDen"})
    mapper = ProfileMapper(settings)
    reader = SingerInput()
    check: RecordCheck | None = None
    for number, line in enumerate(lines, start=1):
        message = reader._decode(line, number)
        if message["type"] == "SCHEMA":
            check = RecordCheck(message["schema"])
            continue
        if message["type"] != "RECORD":
            continue
        assert check is not None
        record = message["record"]
        check.validate(record)
        if check.problem:
            yield f"reject schema_violation {check.problem}".encode()
            continue
        result = mapper.map(record)
        if isinstance(result, Profile):
            dropped = "".join(f"|{d.reason} {d.detail}" for d in result.dropped)
            yield result.encoded + dropped.encode()
        else:
            yield f"reject {result.reason} {result.detail}".encode()


def digests(lines: Iterator[str], config: dict[str, Any]) -> dict[str, Any]:
    total, chunk, chunks, count = hashlib.sha256(), hashlib.sha256(), [], 0
    for outcome in outcomes(lines, config):
        total.update(outcome + b"\n")
        chunk.update(outcome + b"\n")
        count += 1
        if count % CHUNK == 0:
            chunks.append(chunk.hexdigest())
            chunk = hashlib.sha256()
    if count % CHUNK:
        chunks.append(chunk.hexdigest())
    return {"records": count, "sha256": total.hexdigest(), "chunks": chunks}


@pytest.mark.parametrize("name", list(INPUTS))
def test_record_path_output_is_byte_identical_to_before(name: str) -> None:
    lines, config = INPUTS[name]
    expected = json.loads(GOLDEN.read_text())[name]
    actual = digests(lines(), config)
    assert actual["records"] == expected["records"]
    first_difference = next(
        (
            i * CHUNK
            for i, (a, e) in enumerate(zip(actual["chunks"], expected["chunks"], strict=True))
            if a != e
        ),
        None,
    )
    assert first_difference is None, f"outputs differ from record {first_difference + 1} on"
    assert actual["sha256"] == expected["sha256"]


if __name__ == "__main__":
    GOLDEN.write_text(
        json.dumps({name: digests(lines(), config) for name, (lines, config) in INPUTS.items()}, indent=1)
        + "\n"
    )
    sys.exit(0)
