"""A local, Klaviyo-compatible API server: see ``klaviyo-sandbox --help``."""

from target_klaviyo.sandbox.api import SandboxOptions
from target_klaviyo.sandbox.faults import FaultPlan
from target_klaviyo.sandbox.server import RecordedRequest, SandboxServer, SandboxSettings

__all__ = ["FaultPlan", "RecordedRequest", "SandboxOptions", "SandboxServer", "SandboxSettings"]
