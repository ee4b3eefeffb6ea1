"""Retries, timeouts and error parsing, against a server that answers from a script."""

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from target_klaviyo.errors import KlaviyoApiError, KlaviyoError
from target_klaviyo.klaviyo import http as client_module
from target_klaviyo.klaviyo.http import KlaviyoClient

KEY = "pk_scripted_secret_key_123"


class ScriptedServer(ThreadingHTTPServer):
    """Answers each request with the next (status, headers, body) of its script."""

    def __init__(self, script: list[tuple[int, dict, dict | None]]) -> None:
        super().__init__(("127.0.0.1", 0), ScriptedHandler)
        self.script = list(script)
        self.seen: list[dict] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ScriptedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ScriptedServer

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": dict(self.headers),
                "body": self.rfile.read(length),
            }
        )
        status, headers, body = self.server.script.pop(0)
        payload = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer  # noqa: N815 - BaseHTTPRequestHandler dispatches on these names

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator:
    servers = []

    def start(*script):
        server = ScriptedServer(list(script))
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return server, KlaviyoClient(server.url, KEY, "2026-07-15")

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def error_body(status: int, code: str, detail: str, pointer: str | None = None) -> dict:
    source = {"pointer": pointer} if pointer else {}
    return {
        "errors": [
            {"id": "1", "status": status, "code": code, "title": "t", "detail": detail, "source": source}
        ]
    }


OK = (200, {}, {"data": {"id": "x"}})


def test_headers_and_auth(scripted):
    server, client = scripted(OK)
    assert client.get("/api/lists/L1") == {"data": {"id": "x"}}
    headers = server.seen[0]["headers"]
    assert headers["Authorization"] == f"Klaviyo-API-Key {KEY}"
    assert headers["revision"] == "2026-07-15"
    assert headers["Accept"] == "application/vnd.api+json"


def test_post_sends_json_api_content_type(scripted):
    server, client = scripted((202, {}, {"data": {"id": "job"}}))
    client.post("/api/profile-bulk-import-jobs", b'{"data":{}}')
    assert server.seen[0]["headers"]["Content-Type"] == "application/vnd.api+json"
    assert server.seen[0]["body"] == b'{"data":{}}'


def test_429_waits_for_retry_after(scripted, no_sleep):
    server, client = scripted((429, {"Retry-After": "7"}, error_body(429, "throttled", "slow down")), OK)
    assert client.get("/api/lists/L1") == {"data": {"id": "x"}}
    assert no_sleep == [7.0]
    assert len(server.seen) == 2


def test_429_without_retry_after_waits_a_second(scripted, no_sleep):
    _, client = scripted((429, {}, None), OK)
    client.get("/x")
    assert no_sleep == [1.0]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_back_off_and_recover(scripted, no_sleep, status):
    server, client = scripted((status, {}, None), (status, {}, None), OK)
    assert client.get("/x") == {"data": {"id": "x"}}
    assert len(server.seen) == 3
    assert len(no_sleep) == 2
    assert all(0 <= wait <= 30 for wait in no_sleep)


def test_server_errors_are_bounded(scripted, no_sleep):
    script = [(503, {}, error_body(503, "unavailable", "down"))] * client_module.MAX_TRIES
    server, client = scripted(*script)
    with pytest.raises(KlaviyoApiError, match="Klaviyo answered 503 to GET /x: unavailable: down") as caught:
        client.get("/x")
    assert caught.value.status == 503
    assert len(server.seen) == client_module.MAX_TRIES


def test_throttling_is_bounded(scripted, no_sleep):
    script = [(429, {"Retry-After": "1"}, None)] * client_module.MAX_TRIES
    server, client = scripted(*script)
    with pytest.raises(KlaviyoApiError, match="429"):
        client.get("/x")
    assert len(server.seen) == client_module.MAX_TRIES


def test_throttling_and_server_errors_share_one_budget(scripted, no_sleep):
    mixed = [(503, {}, None), (429, {"Retry-After": "1"}, None)] * client_module.MAX_TRIES
    server, client = scripted(*mixed)
    retried = []
    client._on_retry = retried.append
    with pytest.raises(KlaviyoApiError):
        client.get("/x")
    assert len(server.seen) == client_module.MAX_TRIES
    assert len(retried) == client_module.MAX_TRIES - 1
    assert retried.count(429) == (client_module.MAX_TRIES - 1) // 2


def test_retrying_is_bounded_in_time_too(scripted, monkeypatch):
    now = [0.0]
    monkeypatch.setattr("time.sleep", lambda seconds: now.__setitem__(0, now[0] + seconds))
    server, client = scripted(*[(429, {"Retry-After": "60"}, None)] * client_module.MAX_TRIES)
    client._clock = lambda: now[0]
    with pytest.raises(KlaviyoApiError, match="429"):
        client.get("/x")
    assert now[0] <= client_module.MAX_RETRY_SECONDS
    assert len(server.seen) == int(client_module.MAX_RETRY_SECONDS // 60) + 1


def test_retry_after_is_capped(scripted, no_sleep):
    scripted((429, {"Retry-After": "86400"}, None), OK)[1].get("/x")
    assert no_sleep == [client_module.MAX_RETRY_AFTER]


def test_other_client_errors_fail_at_once_with_klaviyos_detail(scripted, no_sleep):
    body = error_body(400, "invalid", "'foo' is not a valid field", "/data/attributes/foo")
    server, client = scripted((400, {}, body))
    with pytest.raises(KlaviyoApiError) as caught:
        client.post("/api/profile-bulk-import-jobs", b"{}")
    assert len(server.seen) == 1
    assert caught.value.errors[0].pointer == "/data/attributes/foo"
    assert caught.value.errors[0].code == "invalid"
    assert "'foo' is not a valid field" in str(caught.value)
    assert no_sleep == []


def test_error_body_that_is_not_json_api(scripted):
    _, client = scripted((404, {}, {"message": "nope"}))
    with pytest.raises(KlaviyoApiError, match="404 to GET /x: no error detail"):
        client.get("/x")


def test_connection_errors_are_retried_then_reported_without_the_key(no_sleep):
    unused = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = unused.server_address[1]
    unused.server_close()
    client = KlaviyoClient(f"http://127.0.0.1:{port}", KEY, "2026-07-15")
    with pytest.raises(KlaviyoError) as caught:
        client.get("/api/lists/L1")
    assert "failed to connect" in str(caught.value)
    assert KEY not in str(caught.value)
    assert len(no_sleep) == client_module.MAX_TRIES - 1


def test_every_request_has_a_timeout_and_timeouts_are_retried(monkeypatch, no_sleep):
    timeouts = []

    def fake_request(self, method, url, **kwargs):
        timeouts.append(kwargs["timeout"])
        raise requests.Timeout("slow")

    monkeypatch.setattr(requests.Session, "request", fake_request)
    client = KlaviyoClient("http://127.0.0.1:9", KEY, "2026-07-15")
    with pytest.raises(KlaviyoError, match=r"GET http://127\.0\.0\.1:9/x timed out"):
        client.get("/x")
    assert timeouts == [client_module.TIMEOUT] * client_module.MAX_TRIES


# Answers a careful client must not trust


def test_a_redirect_is_not_followed(scripted, no_sleep):
    elsewhere, _ = scripted(OK)
    server, client = scripted((307, {"Location": elsewhere.url + "/api/profile-bulk-import-jobs"}, None))
    with pytest.raises(
        KlaviyoError, match="answered 307 to POST /api/profile-bulk-import-jobs with a redirect"
    ):
        client.post("/api/profile-bulk-import-jobs", b'{"data":{}}')
    assert elsewhere.seen == []
    assert len(server.seen) == 1


def test_netrc_never_replaces_the_key(scripted, tmp_path, monkeypatch):
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login someone password netrc_password\n")
    (tmp_path / ".netrc").chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    server, client = scripted(OK)
    client.get("/api/lists/L1")
    assert server.seen[0]["headers"]["Authorization"] == f"Klaviyo-API-Key {KEY}"


def test_a_tls_failure_is_not_retried(scripted, no_sleep):
    server, _ = scripted((200, {}, {}))
    client = KlaviyoClient(server.url.replace("http://", "https://"), KEY, "2026-07-15")
    with pytest.raises(KlaviyoError, match=r"the TLS connection to 127\.0\.0\.1 failed"):
        client.get("/x")
    assert no_sleep == []


def test_a_server_that_drips_is_abandoned_at_the_deadline(monkeypatch, no_sleep):
    monkeypatch.setattr(client_module, "MAX_EXCHANGE_SECONDS", 0.5)
    monkeypatch.setattr(client_module, "MAX_TRIES", 2)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                while not stop.wait(0.1):
                    try:
                        connection.sendall(b" ")
                    except OSError:
                        break

    threading.Thread(target=drip, daemon=True).start()
    client = KlaviyoClient(f"http://127.0.0.1:{listener.getsockname()[1]}", KEY, "2026-07-15")
    started = time.monotonic()
    try:
        with pytest.raises(KlaviyoError, match=r"GET http://127\.0\.0\.1:\d+/x timed out"):
            client.get("/x")
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        listener.close()


def test_json_that_is_not_an_object_is_one_sentence(scripted):
    _, client = scripted((200, {}, [1, 2]))
    with pytest.raises(KlaviyoError, match="answered GET /x with JSON that is not an object"):
        client.get("/x")


def test_an_answer_cut_off_mid_body_is_retried(scripted, no_sleep):
    import socket as socket_module

    listener = socket_module.create_server(("127.0.0.1", 0))
    answers = [b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{"data"', None]

    def serve() -> None:
        for answer in answers:
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                body = b'{"data": {"id": "x"}}'
                connection.sendall(
                    answer or b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                )

    threading.Thread(target=serve, daemon=True).start()
    client = KlaviyoClient(f"http://127.0.0.1:{listener.getsockname()[1]}", KEY, "2026-07-15")
    try:
        assert client.get("/x") == {"data": {"id": "x"}}
        assert len(no_sleep) == 1
    finally:
        listener.close()


@pytest.mark.parametrize(
    "body",
    [
        {"errors": 5},
        {"errors": [{"status": "bad", "code": 1, "detail": None, "source": {"pointer": 5}}]},
        {"errors": [{"status": [1]}, "text"]},
        [1, 2],
    ],
)
def test_error_bodies_of_any_shape_are_one_sentence(scripted, body):
    _, client = scripted((400, {}, body))
    with pytest.raises(KlaviyoApiError, match="Klaviyo answered 400 to GET /x"):
        client.get("/x")


def test_the_key_and_emails_echoed_in_an_error_are_hidden(scripted):
    body = error_body(400, "invalid", f"Bad header Klaviyo-API-Key {KEY} for someone@example.com")
    _, client = scripted((400, {}, body))
    with pytest.raises(KlaviyoApiError) as caught:
        client.get("/x")
    assert KEY not in str(caught.value)
    assert "someone@example.com" not in str(caught.value)
    assert "[api key]" in str(caught.value)


@pytest.mark.parametrize("field", ["code", "detail", "pointer"])
def test_a_key_echoed_where_an_error_is_cut_to_length_is_hidden_whole(scripted, field):
    """Found by the second hostile review of issue 16: the key cut in two was no longer found."""
    limit = {"code": 100, "detail": 1000, "pointer": 1000}[field]
    echo = "x" * (limit - len(KEY) + 2) + KEY  # cut to length, all but the key's last 2 characters remain
    body = error_body(400, "invalid", "bad", "/data/0")
    body["errors"][0]["source" if field == "pointer" else field] = (
        {"pointer": echo} if field == "pointer" else echo
    )
    _, client = scripted((400, {}, body))
    with pytest.raises(KlaviyoApiError) as caught:
        client.get("/x")
    shown = " ".join([str(caught.value)] + [f"{e.code} {e.detail} {e.pointer}" for e in caught.value.errors])
    assert KEY[:8] not in shown


def test_an_http_url_never_goes_through_a_proxy(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.2:3128")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.2:3128")
    assert KlaviyoClient("http://127.0.0.1:1", KEY, "2026-07-15").session.proxies == {}
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    proxies = KlaviyoClient("https://a.klaviyo.com", KEY, "2026-07-15").session.proxies
    assert proxies["https"] == "http://proxy.internal:3128"


# No Session shared between threads


class SessionUse:
    """Wraps ``Session.request`` to see which thread uses which Session, and whether two tries
    were ever under way on one Session at once; the first try hangs until ``release`` is set."""

    def __init__(self, monkeypatch, *, hang_first: bool) -> None:
        self.lock = threading.Lock()
        self.busy: dict[int, int] = {}
        self.shared = False
        self.threads: list[threading.Thread] = []
        self.sessions: list[int] = []
        self.release = threading.Event()
        self.closed: list[int] = []
        self.first_closed = threading.Event()
        self.hang_first = hang_first
        original_request, original_close = requests.Session.request, requests.Session.close

        def request(session, *args, **kwargs):
            with self.lock:
                self.shared = self.shared or self.busy.get(id(session), 0) > 0
                self.busy[id(session)] = self.busy.get(id(session), 0) + 1
                self.threads.append(threading.current_thread())
                self.sessions.append(id(session))
                first = len(self.threads) == 1
            try:
                if first and self.hang_first:
                    self.release.wait(10)
                return original_request(session, *args, **kwargs)
            finally:
                with self.lock:
                    self.busy[id(session)] -= 1

        def close(session) -> None:
            self.closed.append(id(session))
            if self.sessions and id(session) == self.sessions[0]:
                self.first_closed.set()
            original_close(session)

        monkeypatch.setattr(requests.Session, "request", request)
        monkeypatch.setattr(requests.Session, "close", close)


def test_a_try_given_up_takes_its_session_with_it(scripted, monkeypatch, no_sleep):
    monkeypatch.setattr(client_module, "MAX_EXCHANGE_SECONDS", 0.3)
    use = SessionUse(monkeypatch, hang_first=True)
    server, client = scripted(OK, OK)
    try:
        assert client.get("/x") == {"data": {"id": "x"}}
        assert len(no_sleep) == 1  # the try given up was retried, as any timeout is
        assert not use.shared, "the retry ran on the Session the abandoned try was still using"
        assert use.sessions[0] != use.sessions[1]
    finally:
        use.release.set()
    assert use.first_closed.wait(10), "the abandoned try's Session was never closed"
    client.close()
    assert len(server.seen) == 2


def test_tries_share_one_helper_thread(scripted, monkeypatch, no_sleep):
    use = SessionUse(monkeypatch, hang_first=False)
    _, client = scripted((503, {}, None), (503, {}, None), OK, OK)
    assert client.get("/x") == {"data": {"id": "x"}}
    assert client.get("/y") == {"data": {"id": "x"}}
    assert len(use.threads) == 4
    assert len(set(use.threads)) == 1, "each try ran on a thread of its own"
    assert use.threads[0].name == "klaviyo-request"
    assert len(set(use.sessions)) == 1
    assert not use.shared
    client.close()
