"""Singer lines in: numbered, checked, never echoed, and read inside the run's guard.

The SDK's reader logs a line it cannot parse in full (emails included) and fails
on a blank line or a byte-order mark. This one hands the same messages to the
same SDK callbacks, but:

- a blank line, and a byte-order mark before the first line, are skipped and
  counted (neither is a Singer message);
- a line that is not a Singer message this target can read ends the run with one
  sentence that gives its line number and what is wrong, never its content
  (:class:`InputError`); BATCH messages are refused that way too, since this
  target reads RECORD messages;
- a RECORD whose record cannot be represented (not an object, ``NaN`` or
  ``Infinity``, nesting deeper than ``MAX_NESTING``, text that is not valid
  Unicode) is rejected with a reason through :class:`InputEvents`, and the run
  goes on. Numbers too large for JSON are read (as ``Decimal``) and rejected by
  the mapping, which knows whether the value is sent at all. A line nested too
  deeply for Python's parser to read at all cannot be told apart from a broken
  one, so it ends the run like one.

The SDK has no hook for "the run stopped early" (``Target.listen`` is final), but
every line passes through the message reader, a documented extension point
(``message_reader_class``): so the whole reading runs inside the guard the run
supplies, and waiting for the next line is where a stop signal may interrupt it.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import typing as t
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from decimal import Decimal

import msgspec
from singer_sdk.exceptions import MappingError, MissingKeyPropertiesError, RecordsWithoutSchemaException
from singer_sdk.io_base import SingerMessageType, SingerReader

from target_klaviyo.errors import RunError
from target_klaviyo.records.profile import Reject
from target_klaviyo.run.stop import StopSignal

MAX_NESTING = 64
# msgspec reads a line about three times faster than the json module. It refuses everything
# the json module refuses, and more (NaN, lone surrogates, very deep nesting, huge integers):
# for those, the json module reads the line again, so every answer stays the json module's.
FAST_DECODER = msgspec.json.Decoder(float_hook=Decimal)
BOM = "\ufeff"
REQUIRED = {
    SingerMessageType.RECORD: ("stream", "record"),
    SingerMessageType.SCHEMA: ("stream", "schema"),
    SingerMessageType.STATE: ("value",),
    SingerMessageType.ACTIVATE_VERSION: ("stream", "version"),
}
TYPE_NAME = re.compile(r"^[A-Za-z_]{1,32}$")
JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


# The metadata keys singer-sdk 0.54.9 removes from every record (_remove_sdc_metadata_from_record).
SDC_KEYS = frozenset(
    (
        "_sdc_extracted_at",
        "_sdc_received_at",
        "_sdc_batched_at",
        "_sdc_deleted_at",
        "_sdc_sequence",
        "_sdc_table_version",
        "_sdc_sync_started_at",
    )
)


def _raised_in_stream_map(error: BaseException) -> bool:
    """Whether ``error`` came out of the SDK's stream map evaluation (its mapper or simpleeval)."""
    frame = error.__traceback__
    while frame is not None:
        name = frame.tb_frame.f_code.co_filename.replace("\\", "/")
        if name.endswith(("singer_sdk/mapper.py", "/simpleeval.py")):
            return True
        frame = frame.tb_next
    return False


def record_from_line(line: str) -> dict[str, t.Any]:
    """The record of a RECORD line the reader already accepted, as the sink received it: decoded
    by the reader's own decoding (so huge integers are Decimals again), less the SDK's metadata."""
    record: dict[str, t.Any] = SingerInput()._decode(line, 0)["record"]
    for key in SDC_KEYS.intersection(record):
        del record[key]
    return record


class InputError(RunError):
    """The input is not a Singer stream this target can read."""


class RecordBeforeSchemaError(InputError, RecordsWithoutSchemaException):
    """A RECORD before its stream's SCHEMA: one sentence, and still the SDK's exception type."""


class KeyPropertyMissingError(InputError, MissingKeyPropertiesError):
    """A RECORD without one of its stream's key properties: one sentence, the SDK's type."""


class InputEvents(t.Protocol):
    """What the reader tells the run; the run implements it."""

    stop: StopSignal

    def guard(self) -> AbstractContextManager[None]: ...

    def line_skipped(self, what: str) -> None: ...

    def bad_record(self, stream: str, record: t.Any, reject: Reject) -> None: ...


class _Unattached:
    """Events for a reader no run is attached to: refuse what cannot be counted."""

    stop = StopSignal()

    def guard(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def line_skipped(self, what: str) -> None:
        pass

    def bad_record(self, stream: str, record: t.Any, reject: Reject) -> None:
        raise InputError(reject.detail)


class SingerInput(SingerReader):
    def __init__(self) -> None:
        super().__init__()
        self.events: InputEvents = _Unattached()
        self.line = ""  # the text of the message being handed over
        self._nonfinite = False

    def process_lines(
        self, file_input: t.IO[str] | None, callbacks: dict[str, Callable[[dict[str, t.Any]], None]]
    ) -> t.Counter[str]:
        with self.events.guard():
            return self._process(file_input, callbacks)

    def _process(
        self, file_input: t.IO[str] | None, callbacks: dict[str, Callable[[dict[str, t.Any]], None]]
    ) -> t.Counter[str]:
        counts: t.Counter[str] = Counter()
        for number, (line, valid_utf8) in enumerate(self._lines(file_input), start=1):
            if number == 1 and line.startswith(BOM):
                line = line[1:]
                self.events.line_skipped("byte_order_mark")
            if not line.strip():
                self.events.line_skipped("blank_line")
                continue
            message = self._message(line, number, valid_utf8)
            if message is None:
                counts[SingerMessageType.RECORD] += 1
                continue
            kind = message["type"]
            self.line = line
            self._hand_over(callbacks[kind], message, number)
            counts[kind] += 1
        return counts

    @staticmethod
    def _hand_over(
        callback: Callable[[dict[str, t.Any]], None], message: dict[str, t.Any], number: int
    ) -> None:
        """Give the message to the SDK; what the SDK finds wrong with it becomes one sentence."""
        kind, stream = message["type"], message.get("stream")
        try:
            callback(message)
        except RunError:
            raise
        except RecordsWithoutSchemaException:
            msg = f"Line {number} is a {kind} for stream {stream!r}, which no SCHEMA message announced before it."
            raise RecordBeforeSchemaError(msg) from None
        except MissingKeyPropertiesError:
            msg = f"Line {number}: the record lacks a key property of stream {stream!r} (its SCHEMA's key_properties)."
            raise KeyPropertyMissingError(msg) from None
        except MappingError as error:
            # The SDK's message can quote the record's values: name only the kind of failure.
            msg = f"Line {number}: a stream map failed on this record ({type(error).__name__})."
            raise InputError(msg) from None
        except Exception as error:
            if kind == SingerMessageType.RECORD and _raised_in_stream_map(error):
                # singer-sdk 0.54.9 lets an expression's own error out as it is (int(email) on an
                # address puts the address in the message): name only the kind of failure.
                msg = f"Line {number}: a stream map failed on this record ({type(error).__name__})."
                raise InputError(msg) from None
            if kind == SingerMessageType.RECORD:
                raise
            # A SCHEMA or ACTIVATE_VERSION the SDK cannot use: a bad schema (a pattern that is
            # not a regular expression, a keyword of the wrong type) or an unknown stream.
            msg = f"Line {number}: the {kind} message for stream {stream!r} cannot be used ({type(error).__name__})."
            raise InputError(msg) from None

    def _lines(self, file_input: t.IO[str] | None) -> Iterator[tuple[str, bool]]:
        """Each line as text, and whether it was valid UTF-8; waiting for one may be interrupted."""
        source: Iterable[str | bytes] = file_input if file_input is not None else _stdin()
        iterator = iter(source)
        stop = self.events.stop
        while True:
            stop.enter_wait()
            try:
                raw = next(iterator, None)
            except UnicodeDecodeError:
                # A text file (``--input``) decodes as it reads; standard input is read as bytes.
                raise InputError("The input file is not valid UTF-8 text.") from None
            finally:
                stop.leave_wait()
            if raw is None:
                return
            if isinstance(raw, str):
                yield raw, True
                continue
            try:
                yield raw.decode("utf-8"), True
            except UnicodeDecodeError:
                yield raw.decode("utf-8", "surrogateescape"), False

    def _message(self, line: str, number: int, valid_utf8: bool) -> dict[str, t.Any] | None:
        """The message on this line; None when it was a record rejected here."""
        message = self._decode(line, number)
        if message is None:
            return None
        if not isinstance(message, dict):
            msg = f"Line {number} is {_json_type(message)}, not a Singer message (a JSON object with a type)."
            raise InputError(msg)
        kind = message.get("type")
        if kind == SingerMessageType.BATCH:
            msg = (
                f"Line {number} is a BATCH message; target-klaviyo reads RECORD messages only, "
                "so turn off batch messages in the tap (its batch_config setting)."
            )
            raise InputError(msg)
        if kind not in REQUIRED:
            named = (
                f"the unknown message type {kind!r}"
                if isinstance(kind, str) and TYPE_NAME.match(kind)
                else None
            )
            what = named or ("no message type" if kind is None else "a message type that is not a Singer one")
            raise InputError(f"Line {number} has {what}.")
        missing = [key for key in REQUIRED[kind] if key not in message]
        if missing:
            raise InputError(f"Line {number} is a {kind} message without {' or '.join(missing)}.")
        if "stream" in message and not isinstance(message["stream"], str):
            raise InputError(f"Line {number} is a {kind} message whose stream is not a string.")
        if not valid_utf8 and kind != SingerMessageType.RECORD:
            raise InputError(f"Line {number} is not valid UTF-8 text.")
        if kind == SingerMessageType.SCHEMA:
            schema = message["schema"]
            if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
                raise InputError(f"Line {number} is a SCHEMA message whose schema has no properties object.")
            keys = message.get("key_properties")
            if keys is not None and not (
                isinstance(keys, list) and all(isinstance(key, str) for key in keys)
            ):
                raise InputError(
                    f"Line {number} is a SCHEMA message whose key_properties is not a list of names."
                )
        if kind == SingerMessageType.RECORD:
            problem = self._record_problem(message["record"], line, number, valid_utf8)
            if problem is not None:
                # Not an object: the rejects file keeps no record, but mirror still searches the value.
                self.events.bad_record(message["stream"], message["record"], problem)
                return None
        return message

    def _decode(self, line: str, number: int) -> t.Any:
        self._nonfinite = False
        with contextlib.suppress(ValueError, RecursionError, ArithmeticError):
            return FAST_DECODER.decode(line)
        try:
            return json.loads(line, parse_float=self._float, parse_constant=self._constant)
        except RecursionError:
            msg = f"Line {number} nests objects or arrays too deeply to be read at all."
            raise InputError(msg) from None
        except json.JSONDecodeError as error:
            msg = f"Line {number} is not valid JSON: {error.msg.removesuffix(' at')} (column {error.colno})."
            raise InputError(msg) from None
        except ValueError:
            # An integer with more digits than Python converts to int (sys.get_int_max_str_digits):
            # read every integer as a Decimal instead, for the mapping to reject if it is sent.
            return json.loads(line, parse_float=self._float, parse_int=Decimal, parse_constant=self._constant)

    def _float(self, text: str) -> Decimal:
        """A number with a fraction or exponent, exactly; one beyond what Decimal can hold
        (``1e99999999999999999999``) counts as not finite, for the record to be rejected."""
        try:
            return Decimal(text)
        except ArithmeticError:
            self._nonfinite = True
            return Decimal("Infinity")

    def _constant(self, token: str) -> Decimal:
        """``NaN``, ``Infinity`` and ``-Infinity``: not JSON, but Python's parser accepts them."""
        self._nonfinite = True
        return Decimal(token)

    def _record_problem(self, record: t.Any, line: str, number: int, valid_utf8: bool) -> Reject | None:
        if not isinstance(record, dict):
            detail = f"Line {number}: the record is {_json_type(record)}, not an object."
            return Reject("invalid_record", detail)
        if self._nonfinite:
            detail = (
                f"Line {number}: a value is NaN, Infinity or a number beyond any limit, "
                "which JSON and Klaviyo cannot represent."
            )
            return Reject("unrepresentable_number", detail)
        if (not valid_utf8 or "\\ud" in line or "\\uD" in line) and _has_lone_surrogate(record):
            detail = f"Line {number}: a text value is not valid Unicode (invalid UTF-8 or a lone surrogate)."
            return Reject("invalid_unicode", detail)
        if line.count("{") + line.count("[") > MAX_NESTING and _depth(record) > MAX_NESTING:
            detail = f"Line {number}: the record nests objects or arrays more than {MAX_NESTING} levels deep."
            return Reject("too_deeply_nested", detail)
        return None


def _stdin() -> Iterable[bytes] | Iterable[str]:
    """Standard input as bytes, so that invalid UTF-8 rejects a record instead of ending the run."""
    buffer = getattr(sys.stdin, "buffer", None)
    return buffer if buffer is not None else sys.stdin


def _json_type(value: t.Any) -> str:
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return "a number"
    return JSON_TYPES.get(type(value), "not JSON")


def _depth(value: t.Any) -> int:
    """How deeply objects and arrays nest (without recursion, whatever the depth)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[t.Any] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _has_lone_surrogate(value: t.Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False
