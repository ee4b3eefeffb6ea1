"""Fixtures: sandboxes that check their own traffic against the spec when a test ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import assert_responses_match_spec, make_sandbox

from target_klaviyo.sandbox import SandboxServer


@pytest.fixture
def sandbox_factory() -> Iterator[Callable[..., SandboxServer]]:
    servers: list[SandboxServer] = []

    def factory(**kwargs: Any) -> SandboxServer:
        server = make_sandbox(**kwargs)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()
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
