"""Singer records -> batches of Klaviyo profiles.

Each record is validated against its stream's schema, mapped to a profile and
handed to the run, which counts it towards the limit and holds it until a drain.
Draining submits what the run holds as import jobs and returns as soon as Klaviyo
has accepted them; the run settles them in the background and passes each STATE
on once the records before it are final.
"""

from __future__ import annotations

from typing import Any

import fastjsonschema
from singer_sdk.exceptions import InvalidJSONSchema
from singer_sdk.sinks import BatchSink
from singer_sdk.sinks.core import BaseJSONSchemaValidator

from target_klaviyo.delivery.batch import MAX_PROFILES_PER_JOB
from target_klaviyo.records.profile import Reject
from target_klaviyo.records.schema_paths import check_stream
from target_klaviyo.run.run import ExportRun

SOURCE_LINE = "target_klaviyo.line"  # the record's Singer line, in the context the target passes
NAMED_SUBSCHEMAS = {"properties", "patternProperties", "definitions", "$defs", "dependentSchemas"}


def _without_formats(schema: Any) -> Any:
    """Drop ``format`` keywords: like the SDK's default, string formats are not enforced.

    Keys under ``properties`` (and the like) are names, not keywords: a property called
    ``format`` stays.
    """
    if isinstance(schema, list):
        return [_without_formats(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {}
    for key, value in schema.items():
        if key == "format":
            continue
        if key in NAMED_SUBSCHEMAS and isinstance(value, dict):
            result[key] = {name: _without_formats(sub) for name, sub in value.items()}
        else:
            result[key] = _without_formats(value)
    return result


def _no_remote_reference(uri: str) -> Any:
    """A ``$ref`` outside the schema: never fetched (a tap must not make the target open URLs)."""
    msg = "the schema refers to another document ($ref), which target-klaviyo does not fetch"
    raise fastjsonschema.JsonSchemaDefinitionException(msg)


class RecordCheck(BaseJSONSchemaValidator):
    """Validates records against their stream schema without stopping the run.

    The SDK raises on the first invalid record; here the problem is kept so the sink
    can reject that one record with its reason. The message names the property and
    the rule, never the value, which may be personal data.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        super().__init__(schema)
        try:
            handlers = dict.fromkeys(("http", "https", "file", "ftp", "data"), _no_remote_reference)
            self._check = fastjsonschema.compile(_without_formats(schema), handlers=handlers)
        except fastjsonschema.JsonSchemaDefinitionException as error:
            msg = f"Schema Validation Error: {error}"
            raise InvalidJSONSchema(msg) from error
        self.problem: str | None = None

    def validate(self, record: dict[str, Any]) -> None:
        try:
            self._check(record)
        except fastjsonschema.JsonSchemaValueException as error:
            self.problem = "The record does not match its stream schema: " + error.message.replace(
                "data", "record", 1
            )
        else:
            self.problem = None


class KlaviyoSink(BatchSink):
    """One stream's records, batched into Klaviyo bulk import jobs."""

    MAX_SIZE_DEFAULT = MAX_PROFILES_PER_JOB

    def __init__(self, target: Any, stream_name: str, schema: dict[str, Any], key_properties: Any) -> None:
        super().__init__(target, stream_name, schema, key_properties)
        self.run: ExportRun = target.run
        self.list_id = self.run.list_for(stream_name)  # before any record: a stream without a list fails here
        for warning in check_stream(self.run.settings, stream_name, schema):
            self.logger.warning("%s", warning)
        # The first sink is the moment to check the key and the list, before any record. Not in
        # setup(): singer-sdk 0.54.9's add_sink logs "Error initializing target sink" before
        # re-raising anything setup() raises, which would precede our one-sentence error.
        self.run.start()
        self.run.use_list(self.list_id)

    def _parse_timestamps_in_record(
        self, record: dict[str, Any], schema: dict[str, Any], treatment: Any
    ) -> None:
        """Leave date-time strings as the tap wrote them: Klaviyo takes them as text.

        singer-sdk 0.54.9 parses each into ``datetime`` and, on a value it cannot parse
        (``""``, ``0000-00-00``), raises an error that quotes the value and ends the run
        (meltano/sdk#2711); the mapping would only turn the ``datetime`` back into text.
        """

    def get_validator(self) -> BaseJSONSchemaValidator | None:
        return RecordCheck(self.schema) if self.validate_schema else None

    def process_record(self, record: dict[str, Any], context: dict[str, Any]) -> None:
        run = self.run
        run.record_read()
        run.keep(self.list_id, record)
        # ``_validator`` is singer-sdk 0.54.9's private name for what get_validator() returned
        # (no upstream issue found); it has just checked this record.
        problem = self._validator.problem if isinstance(self._validator, RecordCheck) else None
        if problem:
            run.reject(self.stream_name, record, Reject("schema_violation", problem), self.list_id)
            return
        profile = run.mapper.map(record)
        if isinstance(profile, Reject):
            run.reject(self.stream_name, record, profile, self.list_id)
            return
        run.add(profile, self.stream_name, record, context.get(SOURCE_LINE, record), self.list_id)

    def process_batch(self, context: dict[str, Any]) -> None:
        # A full batch makes full jobs; a drain for another reason (end of input, the SDK's
        # age limit for records) sends everything it may.
        self.run.send_pending(self.max_size if self.is_full else None)
