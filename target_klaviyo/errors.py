"""The one kind of failure that ends a run with a sentence instead of a traceback."""

from __future__ import annotations


class RunError(Exception):
    """Ends the run with exit code 1; the message is one sentence that names the problem.

    It never quotes a record's content or the API key.
    """
