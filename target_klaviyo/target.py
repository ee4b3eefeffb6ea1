"""target-klaviyo: settings and wiring to the SDK's hooks.

Before any record is sent the target checks its settings and that the API key can
see the configured list; a problem with either ends the run with one sentence.
Records flow through :mod:`target_klaviyo.sinks` into bulk import jobs; the run
(:mod:`target_klaviyo.run.run`) owns everything after that: jobs in flight, STATE,
the report. This module only connects the run to the SDK:

- creating the first sink checks the connection;
- each STATE message goes to the run's ledger instead of the SDK's drain;
- ``process_endofpipe`` finishes the run, and the message reader's guard ends it
  on any failure;
- SIGTERM and SIGINT stop it cleanly.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import typing as t
from pathlib import Path
from types import FrameType

import click
from singer_sdk import Target
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.plugin_base import _ConfigInput

from target_klaviyo.command_line import DRAIN_SECONDS, drain_pipe, read_config_file
from target_klaviyo.errors import RunError
from target_klaviyo.mirror.plan_file import PlanFiles
from target_klaviyo.reader import SDC_KEYS, SingerInput
from target_klaviyo.run.run import ExportRun
from target_klaviyo.run.stop import RunInterrupted
from target_klaviyo.settings.environment import parse_environment
from target_klaviyo.settings.schema import (
    CONFIG_SCHEMA,
    DEFAULT_API_URL,
    null_as_schema,
    unknown_setting_error,
)
from target_klaviyo.settings.settings import Settings, SettingsError, check_api_url, default_plan_path
from target_klaviyo.sinks import SOURCE_LINE, KlaviyoSink

# click rewraps each paragraph to the terminal; a paragraph after a "\b" line keeps its lines.
CLI_HELP = """Upsert the profiles of Singer streams into Klaviyo lists.

Reads Singer messages from standard input (or --input FILE), sends each record as a Klaviyo
profile matched on its email, in bulk import jobs, to list_id or to its stream's list in
stream_lists, and writes each STATE to standard output once every record before it is in
Klaviyo. Logs go to standard error.

Settings come from --config, repeatable: JSON files, merged in order, and ENV for the
TARGET_KLAVIYO_* environment variables (TARGET_KLAVIYO_API_KEY...), which win over the files.
api_key is required, with list_id or stream_lists. --about lists every setting and its
variable; --about --format=markdown describes each, with its default.

\b
Examples:
  target-klaviyo --about --format=markdown
  tap-postgres | target-klaviyo --config config.json >state.json
  target-klaviyo --config config.json --config ENV <customers.singer.jsonl

With sync_mode mirror, run target-klaviyo-mirror --config config.json once the tap and the
target have both succeeded: it removes the members the run planned to remove.
"""


class TargetKlaviyo(Target):
    """Upserts the profiles of any Singer stream into a Klaviyo list."""

    name = "target-klaviyo"
    # ACTIVATE_VERSION marks a full extract, which sync_mode mirror needs (see mirror/planner.py).
    capabilities: t.ClassVar[list[CapabilitiesEnum]] = [
        *Target.capabilities,
        PluginCapabilities.ACTIVATE_VERSION,
    ]
    config_jsonschema = CONFIG_SCHEMA
    default_sink_class = KlaviyoSink
    message_reader_class = SingerInput

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self._raw_config = kwargs.get("config")  # the files' settings, for _void_plan_of
        try:
            super().__init__(*args, **kwargs)
        except ConfigValidationError as error:
            # singer-sdk 0.54.9 keeps the merged config (files, then TARGET_KLAVIYO_* with ENV) in its
            # private ``_config`` before it validates, and offers no public way to it when validation
            # fails (no upstream issue found).
            _void_plan_of(getattr(self, "_config", None) or kwargs.get("config"))
            errors = [_hide_secret_value(message) for message in error.errors]
            raise ConfigValidationError(str(error), errors=errors, schema=error.schema) from None
        known = list(self.config_jsonschema["properties"])
        unknown = sorted(name for name in self.config if name not in known)
        try:
            if unknown:
                raise SettingsError(unknown_setting_error(unknown[0], known))
            self.settings = Settings.from_config(self.config)
        except SettingsError as error:
            _void_plan_of(self.config)
            raise ConfigValidationError(str(error), errors=[str(error)]) from None
        except BaseException:
            _void_plan_of(self.config)  # however the settings fail, an older plan must not outlive this run
            raise
        self.run = ExportRun(self.settings, self._aliases)
        self._input = self.message_reader if isinstance(self.message_reader, SingerInput) else None
        if self._input is not None:
            self._input.events = self.run
        self._plain_streams: dict[str, KlaviyoSink] = {}
        # Every sink drains the run's one set of held profiles: one drain at a time keeps jobs in input order.
        self.max_parallelism = 1

    @property
    def _env_var_config(self) -> dict[str, t.Any]:
        """Settings from ``TARGET_KLAVIYO_*`` variables, parsed as strictly as a config file.

        Replaces singer-sdk 0.54.9's parsing, under which a boolean that is not a known
        true word is silently false (``ture`` exports for real) and a plain string for
        a text-or-list setting becomes a one-item list (``unmapped`` becomes
        ``["unmapped"]``; meltano/sdk#2724).
        """
        schema = self.config_jsonschema
        self.append_builtin_config(schema)
        try:
            return parse_environment(schema, self._env_var_prefix, os.environ)
        except SettingsError as error:
            # The run cannot start, but it is still this loader's latest: read the settings that
            # locate its plan as leniently as they can be read, and void it. ``_env_var_prefix`` is
            # singer-sdk 0.54.9's private name for ``TARGET_KLAVIYO_`` (no upstream issue found).
            routing = {}
            for name in ("api_url", "list_id", "mirror_plan_path", "stream_lists"):
                value = os.environ.get(self._env_var_prefix + name.upper())
                if value is not None:
                    with contextlib.suppress(ValueError, RecursionError):
                        routing[name] = json.loads(value) if name == "stream_lists" else value
            raw = self._raw_config if isinstance(self._raw_config, t.Mapping) else {}
            _void_plan_of({**raw, **routing})
            raise ConfigValidationError(str(error), errors=[str(error)]) from None

    @classmethod
    def append_builtin_config(cls, config_jsonschema: dict[str, t.Any]) -> None:
        """The SDK's built-in settings, less those that cannot apply to a Klaviyo list.

        ``load_method`` (every run upserts) and ``add_record_metadata`` (``_sdc_*``
        properties are never sent to Klaviyo) would be settings that do nothing.
        """
        super().append_builtin_config(config_jsonschema)
        for name in ("load_method", "add_record_metadata"):
            config_jsonschema["properties"].pop(name, None)
        # The SDK's own settings (stream_maps) carry the bare "null" that null_as_schema replaces.
        config_jsonschema["properties"] = null_as_schema(config_jsonschema["properties"])

    def _process_state_message(self, message_dict: dict[str, t.Any]) -> None:
        """Hand each STATE to the run, which writes it once the records before it are final.

        Goes around singer-sdk 0.54.9, which keeps only the latest STATE and writes it
        at the next full drain (end of input, or records older than five minutes), so a
        long run saves no bookmark until it ends (meltano/sdk#1064). Not calling the
        SDK's version leaves its ``_latest_state`` empty, so its drains write nothing.
        """
        self._assert_line_requires(message_dict, requires={"value"})
        self.run.add_state(message_dict["value"])

    def _process_activate_version_message(self, message_dict: dict[str, t.Any]) -> None:
        """ACTIVATE_VERSION: the tap says this stream's records are a full extract (see mirror/planner.py).

        Replaces singer-sdk 0.54.9's handling, which asks each sink to activate a table
        version and warns that ``_sdc_deleted_at`` columns will be added: a Klaviyo list
        has no versions, and mirror mode is how this target replaces one. The public hook
        (``Sink.activate_version``) does not fit: it is called per stream map alias, after
        those warnings, while mirror mode needs the tap's stream. No upstream issue found;
        ``_assert_line_requires`` is the SDK's own check of a message's keys (private in 0.54.9).
        """
        self._assert_line_requires(message_dict, requires={"stream", "version"})
        stream = message_dict["stream"]
        if stream not in self.mapper.stream_maps:
            raise KeyError(stream)  # before its SCHEMA: the reader reports the line in one sentence
        if self.config.get("process_activate_version_messages", True):
            self.run.activated(stream)  # the tap's stream, whatever the stream maps call it

    def _aliases(self, stream: str) -> list[str]:
        """The names a tap's stream has after the stream maps (``__alias__``), its records' stream names."""
        return [stream_map.stream_alias for stream_map in self.mapper.stream_maps.get(stream, [])] or [stream]

    def _process_schema_message(self, message_dict: dict[str, t.Any]) -> None:
        """The SDK's handling, then what mirror mode learns from the SCHEMA.

        singer-sdk 0.54.9 has no public hook for "a SCHEMA arrived" (the sink is created
        only for a new or changed schema); no upstream issue found.
        """
        super()._process_schema_message(message_dict)
        self._plain_streams.clear()  # a SCHEMA may bring new maps and sinks
        stream = message_dict["stream"]
        self.run.schema_read(stream, self._aliases(stream), bool(message_dict.get("bookmark_properties")))

    def _process_record_message(self, message_dict: dict[str, t.Any]) -> None:
        """A RECORD of a stream with no stream map: the SDK's steps, without their per-record costs.

        singer-sdk 0.54.9 spends more per record than the whole mapping to a profile
        (copying the record for its map, looking up the sink, removing seven
        metadata keys one by one, logging the empty context; meltano/sdk#1181). For a
        stream that has only the SDK's identity map (no ``stream_maps`` entry, no
        flattening) this does the steps that have an effect, in the SDK's order:
        metadata removed, record checked (``_validate_and_parse``), key properties
        checked, tallied, processed, counted, drained when the batch is full, and
        every sink drained when records are older than the SDK's limit. Any other
        stream goes through the SDK unchanged.

        The SDK's private names it calls, all of singer-sdk 0.54.9 (meltano/sdk#1181):
        ``_remove_sdc_metadata_from_record``, ``_validate_and_parse``,
        ``_singer_validate_message``, ``_handle_max_record_age`` and ``_sinks_active``
        (see :meth:`_plain_sink`). The parity test (``tests/test_target.py``) runs a
        segment both ways and compares the outcomes.
        """
        stream = message_dict["stream"]
        self.run.record_from(stream)
        sink = self._plain_streams.get(stream) or self._plain_sink(stream)
        if sink is None:
            super()._process_record_message(message_dict)
            return
        record = message_dict["record"]
        if not SDC_KEYS.isdisjoint(record):
            sink._remove_sdc_metadata_from_record(record)
        sink._validate_and_parse(record)
        sink._singer_validate_message(record)
        sink.tally_record_read()
        # The line goes along so that held profiles keep it rather than the record (see PendingProfile).
        sink.process_record(record, {SOURCE_LINE: self._input.line} if self._input is not None else {})
        sink.record_counter_metric.increment()
        if sink.is_full:
            self.logger.info("Target sink for '%s' is full. Draining...", stream)
            self.drain_one(sink)
        self._handle_max_record_age()

    def _plain_sink(self, stream: str) -> KlaviyoSink | None:
        """The stream's sink if its records pass through the SDK's identity map, else None."""
        maps = self.mapper.stream_maps.get(stream)
        if not maps or len(maps) != 1:
            return None
        stream_map = maps[0]
        if type(stream_map) is not SameRecordTransform or stream_map.stream_alias != stream:
            return None
        if stream_map.flattening_options and stream_map.flattening_enabled:
            return None
        sink = self._sinks_active.get(stream)
        if not isinstance(sink, KlaviyoSink) or sink.include_sdc_metadata_properties:
            return None
        self._plain_streams[stream] = sink
        return sink

    def process_endofpipe(self) -> None:
        # The connection check ran with the first sink, or runs in finish() for an input with no stream.
        with self.run.guard():
            super().process_endofpipe()
            self.run.finish()

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM/SIGINT: stop reading and end the run as interrupted; a second signal exits at once.

        Replaces singer-sdk 0.54.9's handler, which drains every sink from inside the
        signal handler (re-entering a drain that may be in progress, so the process can
        hang) and then exits with code 0 as if the run had completed (meltano/sdk#3775,
        fix proposed in meltano/sdk#3778). Here the handler records the signal and, if
        the main thread is waiting, raises :class:`RunInterrupted` there
        (:mod:`target_klaviyo.run.stop`); the run's guard lets the jobs in flight settle for
        ``stop_grace_seconds`` and writes the report.
        """
        run: ExportRun | None = getattr(self, "run", None)
        if run is None:
            raise RunInterrupted(signum)
        if run.stop.requested:
            self.logger.warning("Second termination signal: exiting at once.")
            sys.stdout.flush()
            os._exit(128 + signum)
        run.stop.request(signum)

    @classmethod
    def cb_config(cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]) -> _ConfigInput:
        """``--config``: the SDK's merge of the files and ``ENV``, each file read by :func:`read_config_file`.

        singer-sdk 0.54.9 reads them in this click callback with ``read_json_file``, which
        ends a missing file or a JSON error in a 40-line traceback (no upstream issue found
        for it). This overrides the SDK's own ``cb_config`` classmethod and builds its
        private ``_ConfigInput``, the type ``invoke`` takes; the sentence and exit 1 happen
        before the target exists.
        """
        config: dict[str, t.Any] = {}
        parse_env = False
        try:
            for path in value:
                if path == "ENV":
                    parse_env = True
                else:
                    config |= read_config_file(path)
        except RunError as error:
            cls.logger.error("%s", error)
            sys.exit(1)
        return _ConfigInput(config=config, parse_env=parse_env)

    @classmethod
    def get_singer_command(cls) -> click.Command:
        """The SDK's command and options, with help that describes this target instead of any target.

        ``get_singer_command`` is the SDK's hook for the command line: singer-sdk 0.54.9's
        ``Target`` overrides it the same way to set its generic "Execute the Singer target.".
        """
        command = super().get_singer_command()
        command.help = CLI_HELP
        return command

    @classmethod
    def invoke(cls, **kwargs: t.Any) -> None:
        """Run the target; a known failure ends it with one logged sentence and a non-zero exit code."""
        try:
            super().invoke(**kwargs)
        except RunError as error:
            cls.logger.error("%s", error)
            if kwargs.get("file_input") is None:
                drain_pipe(sys.stdin, DRAIN_SECONDS)
            sys.exit(1)
        except RunInterrupted as interrupted:
            sys.exit(128 + interrupted.signum)


def _void_plan_of(config: object) -> None:
    """A run whose config fails its checks still supersedes its loader's plan, where that can be
    told: an apply by hand after it must not carry out the plan of the run before it."""
    if not isinstance(config, t.Mapping):
        return
    try:
        raw_url = config.get("api_url") or DEFAULT_API_URL
        if not isinstance(raw_url, str):
            return
        api_url = check_api_url(raw_url)
        list_id = config.get("list_id")
        stream_lists = config.get("stream_lists") or {}
        if not (list_id is None or isinstance(list_id, str)) or not isinstance(stream_lists, t.Mapping):
            return
        # As the settings read them (list ids stripped), so that the path is the one the runs use.
        routing = {str(stream): str(value).strip() for stream, value in stream_lists.items()}
        path = config.get("mirror_plan_path")
        plan = Path(path).expanduser() if isinstance(path, str) and path else None
        PlanFiles(plan or default_plan_path(api_url, list_id.strip() if list_id else None, routing)).void()
    except (SettingsError, OSError, ValueError, TypeError, AttributeError, RuntimeError):
        return  # nothing can be told: the run fails anyway, and with it the pipeline


def _hide_secret_value(message: str) -> str:
    """The SDK's schema errors quote the bad value; for the API key, say what is wrong instead."""
    if "config['api_key']" in message:
        return "api_key must be a string; its value is not shown because it is secret."
    return message


def main() -> None:
    TargetKlaviyo.cli()


if __name__ == "__main__":
    main()
