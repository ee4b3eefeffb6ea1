"""The sandbox's state and its rules, independent of HTTP: the account and its import jobs."""

from klaviyo_sandbox.models.jobs import ImportJobs, Job
from klaviyo_sandbox.models.store import SandboxStore

__all__ = ["ImportJobs", "Job", "SandboxStore"]
