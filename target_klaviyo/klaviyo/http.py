"""HTTP to Klaviyo: authentication, the revision header, retries and JSON:API errors.

Retries follow Klaviyo's guidance: a 429 waits for its ``Retry-After``; a 5xx, a
dropped connection or a timeout backs off exponentially with full jitter. All of
them draw on one budget per request: at most ``MAX_TRIES`` tries, and no retry
that would start more than ``MAX_RETRY_SECONDS`` after the first try. Each try is
abandoned after ``MAX_EXCHANGE_SECONDS`` whatever the server does (a server that
drips a byte at a time never trips the read timeout). Any other error is final and
raised as :class:`KlaviyoApiError`, whose message carries Klaviyo's own ``detail``
but never the API key.

Klaviyo's API never redirects, so redirects are not followed (a 307 must not carry
the key and the profiles to another host); ``.netrc`` is never read (it would
replace the key); a TLS certificate that fails verification is not retried.
For an https ``api_url``, a proxy comes from ``HTTPS_PROXY`` or ``ALL_PROXY`` (and
``NO_PROXY``), and a CA bundle from ``REQUESTS_CA_BUNDLE``, as the README says, and
from nowhere else; an http ``api_url`` (loopback only) never goes through a proxy.
Text Klaviyo sends back is logged with an echoed key and anything like an email
hidden.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any
from urllib.parse import urlsplit

import requests

from target_klaviyo import __version__
from target_klaviyo.errors import (
    ConnectionFailed,
    ErrorDetail,
    KlaviyoApiError,
    KlaviyoError,
    LocalSetupError,
    redact,
)
from target_klaviyo.klaviyo.lane import Exchange, Lane

logger = logging.getLogger(
    "target_klaviyo.client"
)  # the name its lines had before the modules moved into rooms: users' log filters keep working

JSON_API = "application/vnd.api+json"
TIMEOUT = (10.0, 60.0)
TRANSIENT_STATUSES = {500, 502, 503, 504}
MAX_TRIES = 10
MAX_RETRY_SECONDS = 180.0
MAX_RETRY_AFTER = 60.0
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
MAX_EXCHANGE_SECONDS = 90.0


def connection_cause(error: BaseException) -> str:
    """What went wrong underneath a ``requests`` connection error, in a few words.

    ``requests`` wraps urllib3's error, which wraps the socket's: follow the chain
    (``args``, ``reason``, ``__cause__``) to the operating system's own words.
    """
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, socket.gaierror) or type(current).__name__ == "NameResolutionError":
            return "its host name does not resolve"
        if isinstance(current, ConnectionRefusedError):
            return "the connection was refused: nothing listens there"
        if isinstance(current, (TimeoutError, socket.timeout)) or type(current).__name__.endswith(
            "TimeoutError"
        ):
            return "no answer in time"
        if isinstance(current, OSError) and current.strerror:
            return current.strerror[:1].lower() + current.strerror[1:]
        pending += [*current.args, getattr(current, "reason", None), current.__cause__, current.__context__]
    return type(error).__name__


class _Transient(Exception):
    """A failure worth retrying; ``final`` is what to raise when the retries run out."""

    def __init__(self, final: KlaviyoError, retry_after: float | None = None) -> None:
        super().__init__(str(final))
        self.final = final
        self.retry_after = retry_after


def parse_errors(response: requests.Response, secret: str = "") -> list[ErrorDetail]:
    """Klaviyo's ``errors[]``, tolerating bodies of any shape (what does not fit is left out).

    ``secret`` (the API key) is hidden before each text is cut to length: a key cut in two
    would no longer be found, and most of it would be shown.
    """
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError, RecursionError):
        errors = None
    parsed = []
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, dict):
            source = error.get("source")
            pointer = source.get("pointer") if isinstance(source, dict) else None
            parsed.append(
                ErrorDetail(
                    code=redact(str(error.get("code") or "error"), secret)[:100],
                    detail=redact(str(error.get("detail") or error.get("title") or ""), secret)[:1000],
                    pointer=redact(pointer, secret) if isinstance(pointer, str) else None,
                )
            )
    return parsed


def _retry_after(response: requests.Response) -> float:
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(response.headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0


def _proxies(api_url: str) -> dict[str, str]:
    """``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY`` for an https URL; none for http (loopback
    only), where a proxy would see the key in clear text."""
    if not api_url.startswith("https://"):
        return {}
    try:
        return {k: v for k, v in requests.utils.get_environ_proxies(api_url).items() if k in {"https", "all"}}
    except ValueError:
        raise LocalSetupError("HTTPS_PROXY (or ALL_PROXY) is not a valid proxy URL.") from None


def _ca_bundle() -> str | bool:
    bundle = os.environ.get("REQUESTS_CA_BUNDLE")
    if not bundle:
        return True
    if not os.path.isfile(bundle):
        raise LocalSetupError("REQUESTS_CA_BUNDLE names a file that does not exist.")
    return bundle


def backoff_wait(tries: int) -> float:
    """Full-jitter exponential backoff after ``tries`` failed tries: 0.5 s, 1 s, 2 s ... capped at 30 s."""
    return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (tries - 1)))


class Pace:
    """Keeps requests to one endpoint at least ``interval`` seconds apart: within its steady rate limit."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last = -interval

    def wait(self) -> None:
        delay = self._last + self.interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._last = time.monotonic()


class KlaviyoClient:
    """Requests bound to one account (API key) and one API revision, each try on the client's
    :class:`~target_klaviyo.klaviyo.lane.Lane` (its one Session and the one thread that uses it).

    ``on_retry`` is told the status (0 for a connection failure or timeout) of each
    answer that is retried, so the run can count throttling. ``waiting`` surrounds
    each exchange and each retry wait: the run lets a stop signal interrupt those.
    """

    def __init__(
        self,
        api_url: str,
        api_key: str,
        revision: str,
        on_retry: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        waiting: Callable[[], AbstractContextManager[None]] = nullcontext,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._on_retry = on_retry
        self._waiting = waiting
        self._clock = clock
        self._secret = api_key
        self._headers = {
            "Authorization": f"Klaviyo-API-Key {api_key}",
            "revision": revision,
            "Accept": JSON_API,
            "User-Agent": f"target-klaviyo/{__version__}",
        }
        self._proxies = _proxies(self.api_url)
        self._verify = _ca_bundle()
        self._lane = Lane(self._new_session())
        self._lanes = threading.Lock()  # the lane is swapped by the thread that gave up a try
        self._closed = False

    @property
    def session(self) -> requests.Session:
        """The session the next try goes out on (only the client's helper thread uses it)."""
        return self._lane.session

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # no .netrc, no implicit settings: see the module's docstring
        session.proxies = dict(self._proxies)
        session.verify = self._verify
        session.headers.update(self._headers)
        return session

    def hide_key(self, text: str) -> str:
        """Klaviyo's words with the API key hidden, should Klaviyo have echoed it (for a file we write)."""
        return text.replace(self._secret, "[api key]") if self._secret else text

    def close(self) -> None:
        with self._lanes:
            self._closed = True
            self._lane.close()

    def _replace_lane(self) -> None:
        """A Session is not thread-safe: a try given up keeps its own, and nothing else uses it."""
        with self._lanes:
            self._lane.close()
            self._lane = Lane(self._new_session())
            if self._closed:  # a try after close still runs, and its Session is closed after it
                self._lane.close()

    def get(
        self, path: str, params: dict[str, Any] | None = None, *, budget: float = MAX_RETRY_SECONDS
    ) -> dict[str, Any]:
        return self.request("GET", path, params=params, budget=budget) or {}

    def post(self, path: str, body: bytes) -> dict[str, Any] | None:
        """POST an already-serialised JSON:API body."""
        return self.request("POST", path, body=body)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: bytes | None = None,
        budget: float = MAX_RETRY_SECONDS,
        before_try: Callable[[], None] | None = None,
    ) -> dict[str, Any] | None:
        """Send one request, retrying transient failures within ``budget`` seconds in all.

        The connection check gives a short budget, so a wrong ``api_url`` is said at once;
        requests in the middle of a run keep the long one, for Klaviyo's passing troubles.
        ``before_try`` runs before each try and may raise to stop the request.
        """
        started = self._clock()
        for tries in range(1, MAX_TRIES + 1):
            if before_try is not None:
                before_try()  # a removal checks, before every try, that its plan still holds
            try:
                return self._send(method, path, params, body, min(MAX_EXCHANGE_SECONDS, budget))
            except _Transient as transient:
                wait = transient.retry_after if transient.retry_after is not None else backoff_wait(tries)
                out_of_time = self._clock() - started + wait > budget
                if tries == MAX_TRIES or out_of_time:
                    raise transient.final from None
                status = transient.final.status if isinstance(transient.final, KlaviyoApiError) else 0
                if self._on_retry is not None:
                    self._on_retry(status)
                logger.warning("%s (retry %d in %.1f s)", transient.final, tries, wait)
                with self._waiting():
                    time.sleep(wait)
        raise AssertionError("unreachable: the last try returns or raises")  # pragma: no cover

    def _send(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        body: bytes | None,
        limit: float = MAX_EXCHANGE_SECONDS,
    ) -> dict[str, Any] | None:
        headers = {"Content-Type": JSON_API} if body is not None else None
        try:
            response = self._exchange(method, path, params, body, headers, limit)
        except requests.exceptions.SSLError:
            host = urlsplit(self.api_url).hostname
            msg = (
                f"{method} {path}: the TLS connection to {host} failed (its certificate or the handshake); "
                "check api_url, and REQUESTS_CA_BUNDLE behind a proxy that inspects TLS."
            )
            raise KlaviyoError(msg) from None
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as error:
            if isinstance(error, requests.Timeout):
                kind = "timed out"
            elif isinstance(
                error, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)
            ):
                kind = "was cut off"
            else:
                kind = "failed to connect"
            where = f"{self.api_url}{path}"
            cause = connection_cause(error)
            raise _Transient(ConnectionFailed(f"{method} {where} {kind}: {cause}", cause)) from None
        except (requests.RequestException, OSError, ValueError) as error:
            raise KlaviyoError(
                f"{method} {self.api_url}{path} could not be sent: {type(error).__name__}."
            ) from None
        if 300 <= response.status_code < 400:
            msg = (
                f"Klaviyo answered {response.status_code} to {method} {path} with a redirect, which its API "
                "never sends; it was not followed, so check api_url."
            )
            raise KlaviyoError(msg)
        if response.status_code == 429:
            raise _Transient(
                KlaviyoApiError(method, path, 429, parse_errors(response, self._secret), self._secret),
                _retry_after(response),
            )
        if response.status_code in TRANSIENT_STATUSES:
            raise _Transient(
                KlaviyoApiError(
                    method, path, response.status_code, parse_errors(response, self._secret), self._secret
                )
            )
        if response.status_code >= 400:
            raise KlaviyoApiError(
                method, path, response.status_code, parse_errors(response, self._secret), self._secret
            )
        if not response.content:
            return None
        try:
            answer = response.json()
        except (ValueError, RecursionError):
            raise KlaviyoError(f"Klaviyo answered {method} {path} with a body that is not JSON.") from None
        if not isinstance(answer, dict):
            raise KlaviyoError(f"Klaviyo answered {method} {path} with JSON that is not an object.")
        return answer

    def _exchange(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        body: bytes | None,
        headers: dict[str, str] | None,
        limit: float = MAX_EXCHANGE_SECONDS,
    ) -> requests.Response:
        """One HTTP exchange, given up after ``limit`` seconds (it runs on the client's helper
        thread: ``requests`` has no deadline for a whole exchange). An exchange given up is left to
        finish on its own with its Session, and the next try goes out on a fresh lane."""
        options = {"params": params, "data": body, "headers": headers, "timeout": TIMEOUT}
        exchange = Exchange(method, self.api_url + path, options)
        with self._lanes:
            lane = self._lane
        lane.send(exchange)
        finished = False
        try:
            with self._waiting():
                finished = exchange.done.wait(limit)
        finally:
            if not finished:  # given up, or the wait was interrupted by a stop: the try keeps its lane
                self._replace_lane()
        if not finished:
            raise requests.Timeout(f"no complete answer within {limit:.0f} s")
        result = exchange.outcome
        if isinstance(result, BaseException):
            raise result
        assert result is not None  # done is set only once the outcome is in
        return result
