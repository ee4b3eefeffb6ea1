"""The failures that end a run with a sentence instead of a traceback, in one tree.

Every one of them is a :class:`RunError`: ``target.py`` and ``target-klaviyo-mirror``
catch that, log its one sentence and exit with code 1. Each branch says who is to
look: the input, this machine, the run's own limits, or Klaviyo::

    RunError                         ends the run, exit code 1, one sentence
    ├── InputError                   the input is not a Singer stream this target reads (reader.py)
    │   ├── RecordBeforeSchemaError      also the SDK's RecordsWithoutSchemaException
    │   └── KeyPropertyMissingError      also the SDK's MissingKeyPropertiesError
    ├── LocalSetupError              this machine's setup: a proxy variable, a CA bundle
    ├── LedgerError                  the ledger cannot be used: unreadable, another account's, in use
    ├── ProfileLimitReached          max_profiles_per_run with on_limit_exceeded fail (a local limit)
    ├── TooManyRejects               more than max_reject_fraction of the records rejected
    ├── MirrorRefused                mirroring a list could be wrong, so it was left as it is
    ├── WorkerFailed                 a bug in a worker thread, reported on the reading thread
    └── KlaviyoError                 talking to Klaviyo failed
        ├── KlaviyoApiError              Klaviyo answered an error status (``status``, ``errors``)
        ├── ConnectionFailed             no answer from api_url at all (``cause`` says why)
        └── JobCancelled                 Klaviyo cancelled an import job

Outside the tree, on purpose: ``SettingsError`` and ``Unrepresentable`` are
``ValueError``s their callers turn into a sentence or a reject; ``RunInterrupted``
(run/stop.py) is a ``BaseException`` so that no ``except Exception`` swallows a stop
signal. None of these messages quotes a record's content or the API key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

# An email inside Klaviyo's words: hidden before they are logged or raised.
EMAIL_LIKE = re.compile(r"[^\s@'\"<>(),;:]+@[^\s@'\"<>(),;:]+")


class RunError(Exception):
    """Ends the run with exit code 1; the message is one sentence that names the problem.

    It never quotes a record's content or the API key.
    """


class LocalSetupError(RunError):
    """Something on this machine stops the run before Klaviyo is asked anything (a proxy, a CA bundle)."""


class LedgerError(RunError):
    """The ledger (ledger/) cannot be read, written or locked; the run stops rather than send blind."""


class ProfileLimitReached(RunError):
    """``on_limit_exceeded: fail`` and a profile beyond ``max_profiles_per_run`` arrived."""


class TooManyRejects(RunError):
    """More than ``max_reject_fraction`` of the run's records were rejected; the rest were exported."""


class WorkerFailed(RunError):
    """A bug in a worker thread (not an answer of Klaviyo's): its cause is chained for the traceback."""


class MirrorRefused(RunError):
    """A list was left as it was because mirroring it could be wrong; the run fails."""


class KlaviyoError(RunError):
    """A failure talking to Klaviyo that ends the run; its message is one sentence."""


@dataclass(frozen=True)
class ErrorDetail:
    """One entry of a JSON:API ``errors[]`` array."""

    code: str
    detail: str
    pointer: str | None


class KlaviyoApiError(KlaviyoError):
    """Klaviyo answered with an error status."""

    def __init__(
        self, method: str, path: str, status: int, errors: list[ErrorDetail], secret: str = ""
    ) -> None:
        self.method = method
        self.path = path
        self.status = status
        # Klaviyo's words travel on (a refused profile's reject line quotes them): a key Klaviyo
        # echoed is hidden here, once, for every use.
        if secret:
            errors = [
                replace(
                    error,
                    code=error.code.replace(secret, "[api key]"),
                    detail=error.detail.replace(secret, "[api key]"),
                    pointer=error.pointer.replace(secret, "[api key]") if error.pointer else error.pointer,
                )
                for error in errors
            ]
        self.errors = errors
        first = errors[0] if errors else None
        detail = f"{first.code}: {first.detail}" if first else "no error detail"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"Klaviyo answered {status} to {method} {path}: {redact(detail, secret)}{more}")


def redact(text: str, secret: str) -> str:
    """Klaviyo's words as they may be logged: an echoed key and anything like an email hidden."""
    if secret:
        text = text.replace(secret, "[api key]")
    return EMAIL_LIKE.sub("[email]", text)


class ConnectionFailed(KlaviyoError):
    """No answer from ``api_url`` at all (refused, not resolved, timed out, cut off); ``cause`` says which."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


class JobCancelled(KlaviyoError):
    """Klaviyo cancelled a job: its profiles are in an unknown state, so the run must fail."""
