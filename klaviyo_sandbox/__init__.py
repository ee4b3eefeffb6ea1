"""A local, Klaviyo-compatible API server: see ``klaviyo-sandbox --help``."""

from klaviyo_sandbox.faults import FaultPlan
from klaviyo_sandbox.server import RecordedRequest, SandboxServer
from klaviyo_sandbox.settings import SandboxSettings

__all__ = ["FaultPlan", "RecordedRequest", "SandboxServer", "SandboxSettings"]
