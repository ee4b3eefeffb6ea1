"""Fixtures: sandboxes that check their own traffic against the spec when a test ends."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from support import API_KEY, LIST_ID, LiveTarget, assert_responses_match_spec

from klaviyo_sandbox import SandboxServer
from klaviyo_sandbox.pytest_plugin import RunningSandbox

# Property-based tests: a bounded run in CI, many more examples with HYPOTHESIS_PROFILE=thorough.
# Never timed: speed is measured in benchmarks, and on a busy 2-core machine generating inputs is
# slow at times (a too_slow health check failed CI once on Python 3.10) without anything being wrong.
settings.register_profile(
    "ci",
    max_examples=40,
    derandomize=True,
    print_blob=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def sandbox_factory(
    klaviyo_sandbox_factory: Callable[..., RunningSandbox],
) -> Iterator[Callable[..., SandboxServer]]:
    """Sandboxes from the project's own pytest plugin, with the test key and list (and ``lists``)."""
    servers: list[SandboxServer] = []

    def factory(*, lists: tuple[str, ...] = (), **kwargs: Any) -> SandboxServer:
        server = klaviyo_sandbox_factory(api_key=API_KEY, lists=(LIST_ID, *lists), **kwargs).server
        servers.append(server)
        return server

    yield factory
    for server in servers:
        assert_responses_match_spec(server)


@pytest.fixture
def sandbox(sandbox_factory: Callable[..., SandboxServer]) -> SandboxServer:
    return sandbox_factory()


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Make retries and job polling instant; returns the sleeps that were asked for."""
    import time

    asked: list[float] = []
    monkeypatch.setattr(time, "sleep", asked.append)
    return asked


@pytest.fixture
def live(tmp_path):
    """Start targets that are killed and closed when the test ends, whatever happened."""
    started: list[LiveTarget] = []

    def start(config: dict) -> LiveTarget:
        target = LiveTarget(config, tmp_path)
        started.append(target)
        return target

    yield start
    for target in started:
        target.close()
