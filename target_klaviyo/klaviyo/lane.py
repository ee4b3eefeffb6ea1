"""One Session and the one thread that uses it: how a try gets a deadline without sharing a Session.

``requests`` has no deadline for a whole exchange (a server that drips a byte at a
time never trips the read timeout), so each try runs on a helper thread while the
caller waits for it at most its budget. A ``requests.Session`` is not thread-safe:
a try the caller gives up on must not share its Session with the retry. So a
:class:`Lane` owns one Session, only its thread ever uses it, and a lane whose try
was given up is closed and replaced (:meth:`KlaviyoClient._exchange
<target_klaviyo.klaviyo.http.KlaviyoClient._exchange>`): the abandoned try finishes
on its own and its thread closes the Session behind it.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import requests

LANE_IDLE_SECONDS = 10.0  # a helper thread with no try for this long ends (its Session stays)


class Exchange:
    """One try handed to the helper thread, and what came of it once ``done`` is set."""

    def __init__(self, method: str, url: str, options: dict[str, Any]) -> None:
        self.method = method
        self.url = url
        self.options = options
        self.outcome: requests.Response | BaseException | None = None
        self.done = threading.Event()

    def run(self, session: requests.Session) -> None:
        try:
            self.outcome = session.request(self.method, self.url, allow_redirects=False, **self.options)
        except BaseException as error:  # handed to the waiting thread as it is
            self.outcome = error
        finally:
            self.done.set()


class Lane:
    """One Session and the one thread that uses it, so no Session is ever used by two threads.

    The thread (``klaviyo-request``) is started for the first try, serves every try
    after it in turn, and ends after ``LANE_IDLE_SECONDS`` without one (the Session and
    its connections stay for the next thread). :meth:`close` ends the lane: its
    Session is closed at once if no try is under way, or else by its thread when the
    try ends, which is how an abandoned try takes its Session with it.
    """

    def __init__(self, session: requests.Session) -> None:
        self.session = session
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: deque[Exchange] = deque()
        self._serving = False
        self._closed = False

    def send(self, exchange: Exchange) -> None:
        with self._lock:
            self._pending.append(exchange)
            if self._serving:
                self._wake.notify()
                return
            self._serving = True
        threading.Thread(target=self._serve, name="klaviyo-request", daemon=True).start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._serving:
                self._wake.notify()
                return
            # Under the lock: no thread can start a try on the Session while it closes.
            self.session.close()

    def _serve(self) -> None:
        while True:
            with self._lock:
                if not self._pending and not self._closed:
                    self._wake.wait(LANE_IDLE_SECONDS)
                if not self._pending:  # idle for a while, or closed: a try sent after close still runs
                    if self._closed:
                        # Closed by this thread, the Session's only user, before another may start.
                        self.session.close()
                    self._serving = False
                    return
                exchange = self._pending.popleft()
            exchange.run(self.session)
