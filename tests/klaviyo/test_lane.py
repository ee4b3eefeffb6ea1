"""A lane's Session is only ever used by one thread at a time, closing included."""

from __future__ import annotations

import threading
from typing import Any

from target_klaviyo.klaviyo.lane import Exchange, Lane

WAIT = 5.0  # a bound on every wait, so that a broken lane fails the test instead of hanging it


class WatchedSession:
    """Records any call that starts while another is under way; each call waits to be released."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active: list[str] = []
        self.overlaps: list[tuple[str, list[str]]] = []
        self.requests = 0
        self.first_request_running = threading.Event()
        self.release_first_request = threading.Event()
        self.closing = threading.Event()
        self.release_close = threading.Event()
        self.second_request_started = threading.Event()

    def _enter(self, what: str) -> None:
        with self.lock:
            if self.active:
                self.overlaps.append((what, list(self.active)))
            self.active.append(what)

    def _leave(self, what: str) -> None:
        with self.lock:
            self.active.remove(what)

    def request(self, *args: Any, **kwargs: Any) -> str:
        self._enter("request")
        self.requests += 1
        if self.requests == 1:
            self.first_request_running.set()
            self.release_first_request.wait(WAIT)
        else:
            self.second_request_started.set()
        self._leave("request")
        return "answer"

    def close(self) -> None:
        self._enter("close")
        self.closing.set()
        self.release_close.wait(WAIT)
        self._leave("close")


def test_a_try_sent_while_a_closed_lane_closes_its_session_waits_for_the_close():
    # The run ends (client.close()) while the submitting thread's try is under way; that thread
    # then sends again at once (a 400's resend). The second try must not run while the first
    # thread is still closing the Session.
    session = WatchedSession()
    lane = Lane(session)  # duck-typed: the two methods of a Session a lane calls, watched
    first = Exchange("POST", "/api/profile-bulk-import-jobs", {})
    lane.send(first)
    assert session.first_request_running.wait(WAIT)
    lane.close()
    session.release_first_request.set()
    assert first.done.wait(WAIT)
    assert session.closing.wait(WAIT)  # the lane's thread is closing the Session now
    second = Exchange("POST", "/api/profile-bulk-import-jobs", {})
    sender = threading.Thread(target=lane.send, args=(second,))
    sender.start()
    # The second try may start only once the Session is closed: give it every chance to start early.
    assert not session.second_request_started.wait(0.5)
    session.release_close.set()
    assert second.done.wait(WAIT)
    sender.join(WAIT)
    assert second.outcome == "answer"
    assert session.overlaps == []
