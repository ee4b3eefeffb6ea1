"""target-klaviyo: settings and wiring.

Before any input is read the target checks its settings and that the API key can
see the configured list; a problem with either ends the run with one sentence.
Records flow through :mod:`target_klaviyo.sinks` into bulk import jobs
(:mod:`target_klaviyo.jobs`); :mod:`target_klaviyo.report` accounts for each one.
"""

from __future__ import annotations

import sys
import typing as t

from singer_sdk import Target
from singer_sdk.exceptions import ConfigValidationError

from target_klaviyo.client import KlaviyoApiError, KlaviyoClient, KlaviyoError
from target_klaviyo.run import ExportRun, ProfileLimitReached
from target_klaviyo.settings import CONFIG_SCHEMA, Settings, SettingsError
from target_klaviyo.sinks import KlaviyoSink


class TargetKlaviyo(Target):
    """Upserts the profiles of any Singer stream into a Klaviyo list."""

    name = "target-klaviyo"
    config_jsonschema = CONFIG_SCHEMA
    default_sink_class = KlaviyoSink

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except ConfigValidationError as error:
            errors = [_hide_secret_value(message) for message in error.errors]
            raise ConfigValidationError(str(error), errors=errors, schema=error.schema) from None
        try:
            self.settings = Settings.from_config(self.config)
        except SettingsError as error:
            raise ConfigValidationError(str(error), errors=[str(error)]) from None
        self.client = (
            None
            if self.settings.dry_run
            else KlaviyoClient(self.settings.api_url, self.settings.api_key, self.settings.api_revision)
        )
        self.run = ExportRun(self.settings, self.client)
        # Every sink drains the run's one pending batch: one drain at a time keeps jobs in input order.
        self.max_parallelism = 1

    @classmethod
    def append_builtin_config(cls, config_jsonschema: dict) -> None:
        """The SDK's built-in settings, less those that cannot apply to a Klaviyo list.

        ``load_method`` (every run upserts) and ``add_record_metadata`` (``_sdc_*``
        properties are never sent to Klaviyo) would be settings that do nothing.
        """
        super().append_builtin_config(config_jsonschema)
        for name in ("load_method", "add_record_metadata"):
            config_jsonschema["properties"].pop(name, None)

    def check_connection(self) -> None:
        """Fail fast, before reading input, on a rejected key or a missing list."""
        list_id = self.settings.list_id
        assert self.client is not None
        try:
            self.client.get(f"/api/lists/{list_id}")
        except KlaviyoApiError as error:
            if error.status in {401, 403}:
                msg = (
                    f"Klaviyo rejected the API key ({error.status}): check the api_key setting "
                    "and that the key has the lists:write and profiles:write scopes."
                )
                raise KlaviyoError(msg) from None
            if error.status == 404:
                msg = f"Klaviyo has no list with id {list_id!r} for this API key: check the list_id setting."
                raise KlaviyoError(msg) from None
            raise
        self.logger.info("Connected to Klaviyo at %s; list %s found.", self.settings.api_url, list_id)

    def listen(self, file_input: t.IO[str] | None = None) -> None:
        report = self.run.report
        try:
            if self.client is not None:
                self.check_connection()
            super().listen(file_input)
        except ProfileLimitReached:
            self.run.send_pending()
            report.outcome = "stopped at the profile limit"
            raise
        except BaseException:
            report.outcome = "failed"
            raise
        else:
            report.outcome = "complete"
        finally:
            self._finish()

    def _finish(self) -> None:
        report = self.run.report
        report.close()
        if self.settings.report_path is not None:
            report.write(self.settings.report_path)
        if report.skipped_over_limit:
            self.logger.warning(
                "%d new profiles were skipped because the run reached max_profiles_per_run (%d).",
                report.skipped_over_limit,
                self.settings.max_profiles,
            )
        self.logger.info("%s", report.summary())
        if self.client is not None:
            self.client.close()

    @classmethod
    def invoke(cls, **kwargs: t.Any) -> None:  # type: ignore[override]
        """Run the target; a known failure ends it with one logged sentence and exit code 1."""
        try:
            super().invoke(**kwargs)
        except KlaviyoError as error:
            cls.logger.error("%s", error)
            sys.exit(1)


def _hide_secret_value(message: str) -> str:
    """The SDK's schema errors quote the bad value; for the API key, say what is wrong instead."""
    if "config['api_key']" in message:
        return "api_key must be a string; its value is not shown because it is secret."
    return message


def main() -> None:
    TargetKlaviyo.cli()


if __name__ == "__main__":
    main()
