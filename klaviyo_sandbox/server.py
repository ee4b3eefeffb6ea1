"""The sandbox's HTTP layer: Klaviyo's request checks, rate limits and faults, around the routes.

Checks run in Klaviyo's order: authentication, the ``revision`` header, the rate
limit, the content type, then the body against the OpenAPI schema; only a request
that passes them all reaches its handler in :mod:`klaviyo_sandbox.responses`, by
its route in :mod:`klaviyo_sandbox.urls`.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgspec

from klaviyo_sandbox import spec
from klaviyo_sandbox.exceptions import (
    ApiError,
    AuthenticationFailed,
    InvalidRevision,
    MissingRevision,
    NotAuthenticated,
    ParseError,
    RequestTooLarge,
    SchemaViolation,
    ServerError,
    Throttled,
    UnimplementedQueryParameter,
    UnknownQueryParameter,
    UnsupportedMediaType,
)
from klaviyo_sandbox.faults import Fault
from klaviyo_sandbox.limits import RateLimiter
from klaviyo_sandbox.models import SandboxStore
from klaviyo_sandbox.responses import Request, Response, SandboxApi
from klaviyo_sandbox.settings import SandboxSettings
from klaviyo_sandbox.urls import Route, resolve
from klaviyo_sandbox.validation import MAX_JOB_BYTES

logger = logging.getLogger("klaviyo_sandbox")
JSON_API = "application/vnd.api+json"
REVISION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z0-9]+)?$")


@dataclass
class RecordedRequest:
    """One request as the sandbox saw it, and its answer; kept for tests to inspect."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int | None
    response: Any
    spec_path: str | None
    received_at: float = 0.0  # time.monotonic() when it was answered: tests check pacing with it


class SandboxServer(ThreadingHTTPServer):
    """A Klaviyo-compatible API on 127.0.0.1; ``port=0`` picks a free port."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, settings: SandboxSettings, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), SandboxHandler)
        self.settings = settings
        self.store = SandboxStore(settings.db)
        self.api = SandboxApi(self.store, settings)
        self.limiter = RateLimiter(settings.rate_scale)
        self.recorded: list[RecordedRequest] = []
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> SandboxServer:
        """Serve from a background thread (for tests and embedding)."""
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name="klaviyo-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.store.close()

    def record(self, entry: RecordedRequest) -> None:
        if self.settings.record_requests:
            self.recorded.append(entry)


def _decode_json(raw: bytes) -> Any:
    """A request body: msgspec reads a 5 MB import job several times faster than the json module;
    what it refuses (NaN, very deep nesting) is left to the json module, which decides."""
    try:
        return msgspec.json.decode(raw)
    except (ValueError, RecursionError):
        return json.loads(raw)


class SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SandboxServer

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_READ_BYTES:
            # Refused unread: no request is that large, and reading it could exhaust memory. Bodies
            # up to this size are read, so that a client sees the 413 for one a little too large.
            self.close_connection = True
            self._send(Response(413, {"errors": RequestTooLarge(MAX_JOB_BYTES).errors}, {}))
            return
        raw_body = self.rfile.read(length)
        request = Request(
            method=method,
            path=url.path,
            params={},
            query=dict(parse_qsl(url.query)),
            headers={key.lower(): value for key, value in self.headers.items()},
            body=None,
            raw_body=raw_body,
            base_url=f"http://{self.headers.get('Host', '127.0.0.1')}",
        )
        route = None
        try:
            route = resolve(request)
            response = self._handle(route, request)
        except ApiError as error:
            response = Response(error.status, {"errors": error.errors}, error.headers)
        except _DropConnection as dropped:
            self._record(request, route, dropped.carried_out)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._record(request, route, response)
        self._send(response)

    def _handle(self, route: Route, request: Request) -> Response:
        settings = self.server.settings
        faults = settings.faults
        if faults.latency:
            time.sleep(faults.latency)
        operation = f"{route.method} {route.spec_path}"
        fault, status = faults.draw(operation)
        if fault is Fault.DROP:
            raise _DropConnection(None)
        if fault is Fault.THROTTLE:
            raise Throttled(1)
        if fault is Fault.SERVER_ERROR:
            raise ServerError(status)
        self._check_auth(request)
        self._check_revision(request)
        self._check_query(route, request)
        if settings.rate_limits:
            rates = spec.rate_limit(route.spec_path, route.method.lower())
            wait = self.server.limiter.acquire(operation, rates)
            if wait is not None:
                raise Throttled(wait)
        if route.has_body:
            request.body = self._parse_body(route, request, validate=settings.validate_requests)
        response = route.handler(self.server.api, request)
        if fault is Fault.LOST_ANSWER:
            raise _DropConnection(response)
        return response

    def _check_query(self, route: Route, request: Request) -> None:
        """A query parameter the operation does not declare is a 400, as Klaviyo answers it; one it
        declares but the sandbox does not implement is a 400 too, never silently ignored."""
        declared = spec.query_parameters(route.spec_path, route.method.lower())
        for name in request.query:
            if name not in declared:
                raise UnknownQueryParameter(name)
            if name not in route.query:
                raise UnimplementedQueryParameter(name)

    def _check_auth(self, request: Request) -> None:
        expected = f"Klaviyo-API-Key {self.server.settings.api_key}"
        given = request.headers.get("authorization")
        if given is None:
            raise NotAuthenticated
        if given != expected:
            raise AuthenticationFailed

    @staticmethod
    def _check_revision(request: Request) -> None:
        revision = request.headers.get("revision")
        if revision is None:
            raise MissingRevision
        if not REVISION.match(revision):
            raise InvalidRevision(revision)

    @staticmethod
    def _parse_body(route: Route, request: Request, *, validate: bool) -> Any:
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != JSON_API:
            raise UnsupportedMediaType(content_type, JSON_API)
        if len(request.raw_body) > MAX_JOB_BYTES:
            raise RequestTooLarge(MAX_JOB_BYTES)
        try:
            body = _decode_json(request.raw_body)
        except (ValueError, RecursionError):
            raise ParseError from None
        if not validate:
            return body
        error = spec.request_validator(route.spec_path, route.method.lower()).first_error(body)
        if error:
            raise SchemaViolation(error.message, error.pointer)
        return body

    def _send(self, response: Response) -> None:
        payload = b"" if response.body is None else json.dumps(response.body).encode()
        self.send_response(response.status)
        if payload:
            self.send_header("Content-Type", JSON_API)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _record(self, request: Request, route: Route | None, response: Response | None) -> None:
        body = request.body
        if body is None and request.raw_body:
            try:
                body = json.loads(request.raw_body)
            except (ValueError, RecursionError):
                body = request.raw_body
        self.server.record(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=request.query,
                headers=request.headers,
                body=body,
                status=None if response is None else response.status,
                response=None if response is None else response.body,
                spec_path=None if route is None else route.spec_path,
                received_at=time.monotonic(),
            )
        )


MAX_READ_BYTES = 16 * MAX_JOB_BYTES


class _DropConnection(Exception):
    """Close the socket without an answer, as a failing load balancer would.

    ``carried_out`` is the answer that was lost, when the request took effect first.
    """

    def __init__(self, carried_out: Response | None) -> None:
        super().__init__("connection dropped")
        self.carried_out = carried_out
