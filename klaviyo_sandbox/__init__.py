"""A local, Klaviyo-compatible API server: see ``klaviyo-sandbox --help``."""

from klaviyo_sandbox.api import SandboxOptions
from klaviyo_sandbox.faults import FaultPlan
from klaviyo_sandbox.server import RecordedRequest, SandboxServer, SandboxSettings

__all__ = ["FaultPlan", "RecordedRequest", "SandboxOptions", "SandboxServer", "SandboxSettings"]
