"""Fixtures: sandboxes that check their own traffic against the spec when a test ends."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, settings
from support import API_KEY, LIST_ID, LiveTarget, assert_responses_match_spec

from klaviyo_sandbox import SandboxServer
from klaviyo_sandbox.pytest_plugin import RunningSandbox

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

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


@pytest.fixture(autouse=True)
def _in_a_folder_of_its_own(
    request: pytest.FixtureRequest, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test runs in its own working folder, as a Meltano project is one: what a run keeps
    there by default (the ledger, mirror plans in .target-klaviyo/) is that test's alone.

    Except the docs' example test (docs/sandbox.md), which is a user's test as written: it runs
    from the project's root, and the sandbox plugin gives its runs a ledger of their own."""
    if request.module.__name__.endswith("test_readme_example"):
        return
    monkeypatch.chdir(tmp_path)


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
        # The first keeps the name tests that read the config back expect.
        name = f"config-{len(started)}.json" if started else "config.json"
        target = LiveTarget(config, tmp_path / name)
        started.append(target)
        return target

    yield start
    for target in started:
        target.close()


# The ledger on PostgreSQL: LEDGER_TEST_POSTGRES_URL names a server where this role may create
# databases (scripts/postgres.sh starts one and prints it). Without it those tests are skipped, in
# one line; CI sets LEDGER_TEST_REQUIRE_POSTGRES=1, and then they fail instead.
POSTGRES_URL = os.environ.get("LEDGER_TEST_POSTGRES_URL", "")
POSTGRES_SKIP = (
    "PostgreSQL ledger tests: no server (set LEDGER_TEST_POSTGRES_URL; scripts/postgres.sh starts one)"
)


def pytest_report_header() -> str:
    return f"ledger backends: sqlite{', postgresql' if POSTGRES_URL else ' (' + POSTGRES_SKIP + ')'}"


@pytest.fixture
def postgres_database() -> Iterator[Callable[[], str]]:
    """Makes new, empty PostgreSQL databases for a test (dropped when it ends); returns their URLs."""
    if not POSTGRES_URL:
        if os.environ.get("LEDGER_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail("LEDGER_TEST_REQUIRE_POSTGRES=1 but LEDGER_TEST_POSTGRES_URL is not set.")
        pytest.skip(POSTGRES_SKIP)
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def make() -> str:
        name = f"tk_ledger_{uuid.uuid4().hex[:12]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)

    try:
        yield make
        for name in made:
            drop(admin, name)
    finally:
        admin.dispose()


def drop(admin: Engine, name: str) -> None:
    """Drops a test database. Not WITH (FORCE): on PostgreSQL 15 that refuses when an autovacuum
    worker is in the database (it has no role this one may signal; seen in CI), while a plain DROP
    stops autovacuum itself and waits 5 s for other sessions, which a test must have closed."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    for attempt in range(3):
        try:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            return
        except OperationalError:
            if attempt == 2:
                raise


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_place(request: pytest.FixtureRequest, tmp_path) -> Callable[[], dict[str, str]]:
    """Settings for a new ledger on each backend: the same tests run on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        count = iter(range(1000))
        return lambda: {"ledger_path": str(tmp_path / f"ledger-{next(count)}.sqlite")}
    make = request.getfixturevalue("postgres_database")
    return lambda: {"ledger_url": make()}
