"""What a sandbox instance allows and how it behaves, in one object; see ``klaviyo-sandbox serve --help``."""

from __future__ import annotations

from dataclasses import dataclass, field

from klaviyo_sandbox.faults import FaultPlan


@dataclass
class SandboxSettings:
    """The account (key, lists), how its import jobs go, and what the HTTP layer checks and injects.

    ``faults`` may be replaced while the sandbox runs: the server reads it at every request.
    """

    api_key: str
    lists: dict[str, str] = field(default_factory=dict)
    db: str = ":memory:"
    job_delay: float = 0.2
    fail_domains: frozenset[str] = frozenset()
    refuse_domains: frozenset[str] = frozenset()
    cancel_domains: frozenset[str] = frozenset()
    # At most this many list members a page, whatever page[size] asks: a client must follow
    # links.next rather than count on full pages (Klaviyo promises only "at most page[size]").
    page_limit: int | None = None
    rate_limits: bool = True
    rate_scale: float = 1.0
    validate_requests: bool = True
    faults: FaultPlan = field(default_factory=FaultPlan)
    record_requests: bool = False
