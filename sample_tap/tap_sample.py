"""tap-sample: JSON Lines files as Singer streams, for target-klaviyo's Meltano demo and tests.

Each entry of the ``streams`` setting names a stream and its file (one JSON object a
line). A stream with a ``replication_key`` is incremental: it sends only the rows whose
key is past the bookmark in its STATE, so a second run sends nothing new. A stream
without one is a full-table extract, announced with ``ACTIVATE_VERSION`` when
``emit_activate_version_messages`` is true, which is what target-klaviyo's
``sync_mode: mirror`` needs. Schemas are read from the rows themselves.
"""

from __future__ import annotations

import datetime
import json
import typing as t
from pathlib import Path

from singer_sdk import Stream, Tap
from singer_sdk import typing as th

JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object", list: "array"}


def _is_date_time(value: t.Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def infer_schema(rows: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    """Each property's JSON types across the rows (always nullable); date-time if every value is one."""
    types: dict[str, set[str]] = {}
    date_times: dict[str, bool] = {}
    for row in rows:
        for name, value in row.items():
            kinds = types.setdefault(name, {"null"})
            if value is not None:
                kinds.add(JSON_TYPES.get(type(value), "string"))
                date_times[name] = date_times.get(name, True) and _is_date_time(value)
    properties: dict[str, t.Any] = {}
    for name, kinds in types.items():
        if kinds == {"integer", "number", "null"}:
            kinds = {"number", "null"}
        prop: dict[str, t.Any] = {"type": sorted(kinds)}
        if date_times.get(name):
            prop["format"] = "date-time"
        properties[name] = prop
    return {"type": "object", "properties": properties}


class FileStream(Stream):
    def __init__(self, tap: Tap, entry: dict[str, t.Any]) -> None:
        self.path = Path(entry["path"]).expanduser()
        self.lines = [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        rows = [row for row in map(_parsed, self.lines) if row is not None]
        super().__init__(tap, schema=infer_schema(rows), name=entry["name"])
        self.primary_keys = entry.get("primary_keys") or []
        if entry.get("replication_key"):
            self.replication_key = entry["replication_key"]

    @property
    def is_sorted(self) -> bool:
        return False  # the bookmark becomes the largest key once the whole file is read

    def get_records(self, context: dict | None) -> t.Iterable[dict[str, t.Any]]:
        start = self.get_starting_replication_key_value(context) if self.replication_key else None
        for line in self.lines:
            row = json.loads(line)  # a line that is not JSON fails the sync here, part way, as a source can
            if start is not None and not _after(row.get(self.replication_key), start):
                continue
            yield row


def _parsed(line: str) -> dict[str, t.Any] | None:
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) else None


def _after(value: t.Any, bookmark: t.Any) -> bool:
    """Whether a row's replication key is past the bookmark (date-times compared as instants)."""
    if value is None:
        return False
    if _is_date_time(value) and _is_date_time(bookmark):
        return datetime.datetime.fromisoformat(
            value.replace("Z", "+00:00")
        ) > datetime.datetime.fromisoformat(bookmark.replace("Z", "+00:00"))
    return value > bookmark


class TapSample(Tap):
    name = "tap-sample"
    config_jsonschema = th.PropertiesList(
        th.Property(
            "streams",
            th.ArrayType(
                th.ObjectType(
                    th.Property("name", th.StringType, required=True),
                    th.Property("path", th.StringType, required=True),
                    th.Property("replication_key", th.StringType),
                    th.Property("primary_keys", th.ArrayType(th.StringType)),
                )
            ),
            required=True,
            description="The streams: name, JSON Lines file, and optionally a replication key and primary keys.",
        ),
    ).to_dict()

    def discover_streams(self) -> list[Stream]:
        return [FileStream(self, entry) for entry in self.config["streams"]]


def main() -> None:
    TapSample.cli()


if __name__ == "__main__":
    main()
