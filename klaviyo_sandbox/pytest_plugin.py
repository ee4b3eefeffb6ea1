"""The sandbox as pytest fixtures, for testing your own pipelines against a Klaviyo-compatible API.

Installed with target-klaviyo and registered as a pytest plugin (entry point
``pytest11``), so any test can ask for:

- ``klaviyo_sandbox``: a sandbox running on 127.0.0.1 for the test, with one list
  (``klaviyo_sandbox.list_id``), stopped when the test ends;
- ``klaviyo_sandbox_factory``: a function that starts more, with their own lists and
  behaviour (``job_delay``, ``fail_domains``, ``rate_limits``, ``faults``, ``page_limit``, ...).

Each is a :class:`RunningSandbox`: its ``url`` and ``api_key`` go into the pipeline's
configuration (``config()`` gives target-klaviyo's), and ``members()``, ``profiles()``,
``jobs()`` and ``requests`` read back what the pipeline did. Each sandbox is a new
Klaviyo account, so ``config()`` gives it a ledger of its own (``ledger_path``, in a
temporary folder removed with the sandbox): runs against one sandbox share it.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from klaviyo_sandbox.faults import FaultPlan
from klaviyo_sandbox.server import RecordedRequest, SandboxServer
from klaviyo_sandbox.settings import SandboxSettings

DEFAULT_API_KEY = "pk_sandbox_test_key"
DEFAULT_LIST_ID = "SaNDBX"


@dataclass
class RunningSandbox:
    """A sandbox started for a test: where it is, its key and list, and what it holds."""

    server: SandboxServer
    api_key: str
    list_id: str
    ledger_path: str  # target-klaviyo's ledger for this sandbox (see config())

    @property
    def url(self) -> str:
        return self.server.url

    def config(self, **overrides: Any) -> dict[str, Any]:
        """target-klaviyo's settings for this sandbox (``api_key``, ``api_url``, ``list_id``), and more."""
        return {
            "api_key": self.api_key,
            "api_url": self.url,
            "list_id": self.list_id,
            "ledger_path": self.ledger_path,
            **overrides,
        }

    def env(self) -> dict[str, str]:
        """The same as ``TARGET_KLAVIYO_*`` variables, for ``meltano run`` or ``--config=ENV``."""
        return {
            "TARGET_KLAVIYO_API_KEY": self.api_key,
            "TARGET_KLAVIYO_API_URL": self.url,
            "TARGET_KLAVIYO_LIST_ID": self.list_id,
            "TARGET_KLAVIYO_LEDGER_PATH": self.ledger_path,
        }

    def add_list(self, list_id: str, name: str | None = None) -> None:
        self.server.store.ensure_list(list_id, name)

    def add_members(self, list_id: str, *emails: str) -> list[str]:
        """Put people in a list before the pipeline runs (as earlier runs or a signup form would)."""
        ids = [self.server.store.upsert_profile({"email": email})[0] for email in emails]
        self.server.store.add_members(list_id, ids)
        return ids

    def unsubscribe(self, email: str, at: datetime | None = None) -> None:
        """The person unsubscribes from email marketing, as through an unsubscribe link, ``at`` then (now)."""
        self.server.store.unsubscribe(email, at)

    def suppress(
        self,
        email: str,
        reason: str = "USER_SUPPRESSED",
        at: datetime | None = None,
        list_id: str | None = None,
    ) -> None:
        """The person's email marketing is suppressed (``SPAM_COMPLAINT``, ``USER_SUPPRESSED``,
        ``HARD_BOUNCE``...) ``at`` then (now), everywhere or only from ``list_id``; consent stays as it is."""
        self.server.store.suppress(email, reason, at, list_id)

    def members(self, list_id: str | None = None) -> dict[str, dict[str, Any]]:
        """The list's members by lower-case email: their attributes, and ``email_marketing`` consent."""
        rows = self.server.store.members(list_id or self.list_id, 0, 10**9)
        return {
            str(row["attributes"].get("email", row["id"])).lower(): {
                **row["attributes"],
                "email_marketing": row["email_marketing"],
            }
            for row in rows
        }

    def profiles(self) -> list[dict[str, Any]]:
        """Every profile in the account: ``id``, ``attributes``, ``created``, ``updated``."""
        return self.server.store.profiles()

    def jobs(self) -> list[dict[str, Any]]:
        """Every bulk import job: id, status, profiles in it, how many failed, its lists."""
        now = time.time()
        return [
            {
                "id": job.id,
                "status": job.status(now),
                "total_count": job.total_count,
                "failed_count": job.failed_count,
                "lists": list(job.list_ids),
            }
            for _, job in self.server.store.import_jobs.page(0, 10**9)
        ]

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request the sandbox answered: method, path, status, body and response."""
        return list(self.server.recorded)


def start_sandbox(
    *,
    api_key: str = DEFAULT_API_KEY,
    lists: tuple[str, ...] = (DEFAULT_LIST_ID,),
    job_delay: float = 0.05,
    fail_domains: tuple[str, ...] = (),
    refuse_domains: tuple[str, ...] = (),
    cancel_domains: tuple[str, ...] = (),
    rate_limits: bool = True,
    rate_scale: float = 1.0,
    faults: FaultPlan | None = None,
    db: str = ":memory:",
    page_limit: int | None = None,
) -> RunningSandbox:
    """Start a sandbox on a free port of 127.0.0.1; the first of ``lists`` is its ``list_id``."""
    settings = SandboxSettings(
        api_key=api_key,
        lists={list_id: f"Sandbox list {list_id}" for list_id in lists},
        job_delay=job_delay,
        fail_domains=frozenset(fail_domains),
        refuse_domains=frozenset(refuse_domains),
        cancel_domains=frozenset(cancel_domains),
        page_limit=page_limit,
        db=db,
        rate_limits=rate_limits,
        rate_scale=rate_scale,
        faults=faults or FaultPlan(),
        record_requests=True,
    )
    ledger = f"{tempfile.mkdtemp(prefix='klaviyo-sandbox-ledger-')}/ledger.sqlite"
    return RunningSandbox(SandboxServer(settings).start(), api_key, lists[0] if lists else "", ledger)


@pytest.fixture
def klaviyo_sandbox_factory() -> Iterator[Callable[..., RunningSandbox]]:
    """Starts sandboxes (see :func:`start_sandbox` for the options); all stop when the test ends."""
    started: list[RunningSandbox] = []

    def factory(**options: Any) -> RunningSandbox:
        sandbox = start_sandbox(**options)
        started.append(sandbox)
        return sandbox

    yield factory
    for sandbox in started:
        sandbox.server.stop()
        shutil.rmtree(Path(sandbox.ledger_path).parent, ignore_errors=True)


@pytest.fixture
def klaviyo_sandbox(klaviyo_sandbox_factory: Callable[..., RunningSandbox]) -> RunningSandbox:
    """A running sandbox with one list, for one test."""
    return klaviyo_sandbox_factory()
