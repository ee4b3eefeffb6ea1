"""What a tap's STATE bookmark says of its stream's extract: incremental, resumed, or full.

A mirror run removes the people missing from a list's streams, which is right only
when each stream is the whole segment. Taps mark incremental, log-based and resumed
syncs in their bookmarks in many ways (the SDK's, singer-io's and pipelinewise's
keys); anything of no known shape is doubt, and doubt leaves the list as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Bookmark keys of incremental and log-based syncs across Singer taps: the SDK's, singer-io's and
# pipelinewise's (PostgreSQL lsn, MySQL binlog, Oracle scn, MongoDB change streams and oplog, SQL
# Server change tracking). Any of them means the stream's records are changes, not the segment.
INCREMENTAL_KEYS = {
    "replication_key",
    "replication_key_value",
    "replication_key_signpost",
    "bookmark",
    "lsn",
    "log_file",
    "log_pos",
    "gtid",
    "scn",
    "token",
    "current_log_version",
}
INCREMENTAL_PREFIXES = ("oplog_ts",)


# Where an interrupted full-table sync stopped (MySQL, PostgreSQL, Oracle, MongoDB, DynamoDB taps).
RESUMING_KEYS = {"last_pk_fetched", "xmin", "ORA_ROWSCN", "last_id_fetched", "last_evaluated_key"}


def names(key: str, source: str) -> bool:
    """Whether a bookmark key is the stream's (its name, or its tap stream id ``<prefix>-<name>``)."""
    return key == source or key.endswith((f"-{source}", f".{source}", f"_{source}"))


def resuming(bookmark: Any) -> bool:
    return isinstance(bookmark, Mapping) and bool(RESUMING_KEYS & bookmark.keys())


STATE_HEADERS = {"currently_syncing", "current_stream"}  # STATE keys that are not bookmarks

# The keys a full-table bookmark holds (singer-io, pipelinewise, the SDK). Any other key may be an
# incremental bookmark under its field's name (tap-salesforce keeps {"SystemModstamp": ...}): doubt.
FULL_TABLE_KEYS = {
    "version",
    "last_replication_method",
    "initial_full_table_complete",
    "max_pk_values",
    "partitions",
    "context",
    "starting_replication_value",
    "progress_markers",
    *RESUMING_KEYS,
}
OPAQUE_KEYS = {"context", "max_pk_values", "last_pk_fetched", "last_id_fetched", "last_evaluated_key"}  # data


def incremental(bookmark: Any, depth: int = 0) -> bool:
    """Whether a stream's bookmark (or one of its partitions') may be an incremental or log-based one."""
    if depth > 4:
        return True  # deeper than any tap writes: doubt
    if isinstance(bookmark, list):
        # A list of values where bookmarks are objects is of no known shape: doubt.
        return any(not isinstance(item, (list, Mapping)) or incremental(item, depth + 1) for item in bookmark)
    if not isinstance(bookmark, Mapping):
        return depth == 0 and bookmark is not None  # a stream's bookmark of no known shape: doubt
    method = bookmark.get("last_replication_method")
    if INCREMENTAL_KEYS & bookmark.keys() or (isinstance(method, str) and method.upper() != "FULL_TABLE"):
        return True
    if any(not isinstance(key, str) or key.startswith(INCREMENTAL_PREFIXES) for key in bookmark):
        return True
    if bookmark.keys() - FULL_TABLE_KEYS:
        return True
    return any(
        incremental(value, depth + 1)
        for key, value in bookmark.items()
        if key not in OPAQUE_KEYS and isinstance(value, (list, Mapping))
    )
