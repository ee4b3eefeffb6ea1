"""A record's values as plain JSON: conversion, the numbers JSON cannot hold, and paths into a record.

What the SDK hands over (datetimes, Decimals, nested mappings) becomes what a JSON
parser that reads numbers as doubles (Klaviyo's) takes back unchanged; a number it
could not hold raises :class:`Unrepresentable`, which rejects the record.
"""

from __future__ import annotations

import datetime
import decimal
import math
from collections.abc import Mapping
from typing import Any

MAX_DOUBLE = (
    1.7976931348623157e308  # beyond it, a JSON parser that reads numbers as doubles (Klaviyo's) fails
)
MAX_DOUBLE_DECIMAL = decimal.Decimal(MAX_DOUBLE)
MAX_DOUBLE_INT = int(MAX_DOUBLE)
MISSING = object()  # what get_path finds where a path leads nowhere; unlike None, never a value


class Unrepresentable(ValueError):
    """A number that JSON (as Klaviyo reads it) cannot represent: not finite, or beyond ±1.8e308."""


def to_json_value(value: Any) -> Any:
    """Turn what the SDK hands us (datetimes, Decimals, nested data) into plain JSON values.

    Raises :class:`Unrepresentable` for a number that cannot be sent. The checks
    come before any conversion, because ``int(Decimal("1e999999999"))`` alone would
    take minutes. Plain JSON types are answered by their exact type first: this runs
    for every value of every record.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if value.bit_length() > 1023 and abs(value) > MAX_DOUBLE_INT:
            raise Unrepresentable
        return value
    if kind is float:
        if not math.isfinite(value):
            raise Unrepresentable
        return value
    if kind is dict:
        return {str(key): to_json_value(item) for key, item in value.items()}
    if kind is list:
        return [to_json_value(item) for item in value]
    return _to_json_value(value)


def _to_json_value(value: Any) -> Any:
    """:func:`to_json_value` for every other type: Decimals, datetimes, subclasses."""
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        # Comparing first is cheap at any exponent; int() of a huge one is not.
        if not value.is_finite() or value.copy_abs() > MAX_DOUBLE_DECIMAL:
            raise Unrepresentable
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise Unrepresentable
    if isinstance(value, int) and value.bit_length() > 1023 and abs(value) > MAX_DOUBLE_INT:
        raise Unrepresentable
    if isinstance(value, Mapping):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(item) for item in value]
    return value


def is_empty(value: Any) -> bool:
    """``null``, ``""``, ``[]`` and ``{}`` are left out, so that they never blank what Klaviyo has."""
    return value is None or (isinstance(value, (str, list, dict)) and not value)


def get_path(record: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at a dotted path, or :data:`MISSING` when any step is absent or not an object."""
    node: Any = record
    for part in path:
        if (type(node) is not dict and not isinstance(node, Mapping)) or part not in node:
            return MISSING
        node = node[part]
    return node


def without_paths(record: Mapping[str, Any], paths: list[tuple[str, ...]]) -> dict[str, Any]:
    """A copy of ``record`` with the values at ``paths`` removed (and objects they empty)."""
    result = dict(record)
    for path in paths:
        head, rest = path[0], path[1:]
        if head not in result:
            continue
        if not rest:
            del result[head]
        elif isinstance(result[head], Mapping):
            trimmed = without_paths(result[head], [rest])
            if trimmed:
                result[head] = trimmed
            else:
                del result[head]
    return result
