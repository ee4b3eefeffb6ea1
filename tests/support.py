"""Test helpers: an in-process Klaviyo sandbox, Singer message builders, target runners.

Every sandbox a test starts checks, when the test ends, that each response it gave
matches Klaviyo's OpenAPI spec; tests of the target also check every request body
it sent (``assert_requests_match_spec``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from klaviyo_sandbox import SandboxServer, spec
from klaviyo_sandbox.pytest_plugin import start_sandbox

API_KEY = "pk_test_5ecret_never_printed_0123456789"
LIST_ID = "TeStLs"
TARGET_BIN = Path(sys.executable).with_name("target-klaviyo")
SANDBOX_BIN = Path(sys.executable).with_name("klaviyo-sandbox")


def make_sandbox(*, lists: tuple[str, ...] = (), **options: Any) -> SandboxServer:
    """A sandbox with the test list (and ``lists``), started by the project's own pytest plugin."""
    return start_sandbox(api_key=API_KEY, lists=(LIST_ID, *lists), **options).server


def assert_responses_match_spec(server: SandboxServer) -> None:
    for request in server.recorded:
        if request.spec_path is None or request.status is None:
            continue
        validator = spec.response_validator(request.spec_path, request.method.lower(), request.status)
        if validator is None:
            assert request.response is None, request
            continue
        error = validator.first_error(request.response)
        assert error is None, (request.method, request.path, request.status, error)


def assert_requests_match_spec(server: SandboxServer) -> None:
    """Every body the target sent validates against the spec, with no field it does not name."""
    checked = 0
    for request in server.recorded:
        if request.spec_path is None or request.body is None:
            continue
        error = spec.request_validator(request.spec_path, request.method.lower()).first_error(request.body)
        assert error is None, (request.method, request.path, error)
        checked += 1
    assert checked, "the target sent no request body to check"


def members(server: SandboxServer, list_id: str = LIST_ID) -> dict[str, dict[str, Any]]:
    """The list's members by lower-case email, read straight from the sandbox's store."""
    return {
        row["attributes"]["email"].lower(): row["attributes"]
        for row in server.store.members(list_id, 0, 10**6)
    }


def bulk_jobs(server: SandboxServer) -> list[Any]:
    return [
        r for r in server.recorded if r.method == "POST" and r.spec_path == "/api/profile-bulk-import-jobs"
    ]


# Singer messages


CUSTOMER_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "email": {"type": ["string", "null"]},
        "first_name": {"type": ["string", "null"]},
        "phone": {"type": ["string", "null"]},
        "plan": {"type": ["string", "null"]},
        "signed_up_at": {"type": ["string", "null"], "format": "date-time"},
    },
}


def schema(stream: str = "customers", properties: dict | None = None, key: list[str] | None = None) -> dict:
    body = CUSTOMER_SCHEMA if properties is None else {"type": "object", "properties": properties}
    return {"type": "SCHEMA", "stream": stream, "schema": body, "key_properties": key or []}


def record(stream: str = "customers", **fields: Any) -> dict:
    return {"type": "RECORD", "stream": stream, "record": fields}


def state(value: Any) -> dict:
    return {"type": "STATE", "value": {"bookmarks": {"customers": {"position": value}}}}


def customers(count: int, start: int = 0, domain: str = "example.com") -> list[dict]:
    return [
        record(id=i, email=f"person{i}@{domain}", first_name=f"Person {i}")
        for i in range(start, start + count)
    ]


def singer_text(messages: list[dict]) -> str:
    return "".join(json.dumps(message) + "\n" for message in messages)


# Each sandbox is a new Klaviyo account: its own ledger, in a folder of this test session's.
LEDGERS = Path(tempfile.mkdtemp(prefix="target-klaviyo-test-ledgers-"))


def ledger_path(server: SandboxServer) -> str:
    """The ledger of the runs against ``server``: shared by them, no one else's."""
    return str(LEDGERS / f"{server.url.rsplit(':', 1)[-1]}-{id(server):x}.sqlite")


def base_config(server: SandboxServer, **overrides: Any) -> dict[str, Any]:
    """A config for the sandbox. Tests of rejects send mostly bad records, so ``max_reject_fraction``
    is off here; the tests of that setting (test_first_use.py) give it themselves."""
    return {
        "api_key": API_KEY,
        "list_id": LIST_ID,
        "api_url": server.url,
        "max_reject_fraction": 1,
        "ledger_path": ledger_path(server),
        **overrides,
    }


@dataclass
class TargetRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def states(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def environment_without_settings() -> dict[str, str]:
    """This process's environment less ``TARGET_KLAVIYO_*``, which would override a test's config."""
    return {key: value for key, value in os.environ.items() if not key.startswith("TARGET_KLAVIYO_")}


def run_cli(
    config: dict[str, Any],
    messages: list[dict],
    tmp_path: Path,
    *,
    extra_env: dict[str, str] | None = None,
    config_arg: str | None = None,
    cwd: Path | None = None,
) -> TargetRun:
    """Run the installed ``target-klaviyo`` command on a Singer stream, as a tap would feed it."""
    return run_cli_text(
        config, singer_text(messages), tmp_path, extra_env=extra_env, config_arg=config_arg, cwd=cwd
    )


def run_in_process(config: dict[str, Any], messages: list[dict]) -> Any:
    """Run the target in this process (so tests can patch sleeps); returns the target."""
    from target_klaviyo.target import TargetKlaviyo

    target = TargetKlaviyo(config=config, parse_env_config=False)
    target.listen(io.StringIO(singer_text(messages)))
    return target


def run_cli_text(
    config: dict[str, Any],
    text: str | bytes,
    tmp_path: Path,
    *,
    extra_env: dict[str, str] | None = None,
    config_arg: str | None = None,
    cwd: Path | None = None,
) -> TargetRun:
    """Like :func:`run_cli`, with the input given as raw text or bytes (to send malformed lines)."""
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    env = {**environment_without_settings(), **(extra_env or {})}
    process = subprocess.run(
        [str(TARGET_BIN), "--config", config_arg or str(config_path)],
        input=text.encode() if isinstance(text, str) else text,
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )
    return TargetRun(
        process.returncode,
        process.stdout.decode("utf-8", "replace"),
        process.stderr.decode("utf-8", "replace"),
    )


class LiveTarget:
    """``target-klaviyo`` fed by the test like a tap that is still running: stdin stays open."""

    def __init__(self, config: dict, config_path: Path) -> None:
        config_path.write_text(json.dumps(config))
        env = environment_without_settings()
        self.process = subprocess.Popen(
            [str(TARGET_BIN), "--config", str(config_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.states: list[dict] = []
        self._stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_states, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_states(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.states.append(json.loads(line))

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self._stderr.extend(self.process.stderr)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def send(self, messages: list[dict]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(singer_text(messages))
        self.process.stdin.flush()

    def close_input(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()

    def wait_for(self, condition, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process.poll() is None, f"the target exited early: {self.stderr}"
            assert time.monotonic() < deadline, "timed out waiting"
            time.sleep(0.02)

    def wait(self, timeout: float = 60.0) -> int:
        code = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        self.close()
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None and not pipe.closed:
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()


# Mirror mode (tests/integration/test_mirror.py, test_mirror_synced.py)

MIRROR_BIN = TARGET_BIN.with_name("target-klaviyo-mirror")


def activate(stream: str) -> dict:
    return {"type": "ACTIVATE_VERSION", "stream": stream, "version": 1700000000}


def seed(server: SandboxServer, list_id: str, *emails: str) -> dict[str, str]:
    """Members the list had before the run (added by earlier runs, or by hand); their ids by email."""
    ids = {email: server.store.upsert_profile({"email": email})[0] for email in emails}
    server.store.add_members(list_id, list(ids.values()))
    return ids


def apply_plan(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """target-klaviyo-mirror with the config the last run_cli wrote, as the pipeline's next step."""
    return subprocess.run(
        [str(MIRROR_BIN), "--config", str(tmp_path / "config.json")],
        capture_output=True,
        text=True,
        env=environment_without_settings(),
        timeout=120,
        check=False,
    )
