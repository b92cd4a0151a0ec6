"""Real servers for tests: SMTP (aiosmtpd), a Slack stand-in, and a signed-webhook receiver.

Each is a context manager that starts on a free local port and stops on exit; each
records what it received in ``.messages`` (thread-safe; ``wait_for(n)`` blocks until ``n``
arrived) and can be scripted to fail the next requests::

    with SMTPServer(auth=("alice", "s3cret"), starttls=True, tmp_dir=tmp_path) as smtp:
        ...  # smtp.host, smtp.port, smtp.ca_file (trust this CA), smtp.messages
    with SlackServer() as slack:
        slack.fail_next(429, retry_after=1)   # then 500s, timeouts are not simulated
        ...  # slack.webhook_url, slack.api_url, slack.token, slack.messages, slack.thread(ts)
    with WebhookReceiver(secret=b"k") as hook:
        ...  # hook.url, hook.messages (signature valid), hook.rejected (signature bad)

The TLS certificate (for STARTTLS and implicit TLS) is made by trustme for 127.0.0.1 and
localhost; the client must trust ``ca_file``.

The fixtures at the end (``smtp_server``, ``slack_server``, ``webhook_receiver``) give one
fresh server per test; enable them with ``pytest_plugins = ["tests.servers"]`` in a conftest.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import itertools
import json
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class _Recorder:
    """A list that can be waited on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: list[Any] = []

    def append(self, item: Any) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def snapshot(self) -> list[Any]:
        with self._cond:
            return list(self._items)

    def wait_for(self, n: int, timeout: float) -> list[Any]:
        with self._cond:
            self._cond.wait_for(lambda: len(self._items) >= n, timeout)
            if len(self._items) < n:
                raise AssertionError(f"expected {n} messages within {timeout}s, got {len(self._items)}")
            return list(self._items)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TLSFiles:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost (trustme)."""

    def __init__(self, directory: Path):
        self.ca = trustme.CA()
        self.cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = directory / "test-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx


# -- SMTP -----------------------------------------------------------------------------


@dataclass
class Received:
    """One accepted email: the parsed message and its envelope."""

    message: EmailMessage
    mail_from: str
    rcpt_tos: list[str]
    login: str | None


class SMTPServer:
    """An aiosmtpd server. ``auth=(user, password)`` requires AUTH (over TLS);
    ``starttls=True`` offers and requires STARTTLS; ``implicit_tls=True`` speaks TLS from
    the first byte (SMTPS). ``fail_next(code)`` answers the next DATA with ``code``."""

    def __init__(
        self,
        *,
        auth: tuple[str, str] | None = None,
        starttls: bool = False,
        implicit_tls: bool = False,
        tmp_dir: Path | None = None,
    ):
        self.auth = auth
        self.starttls = starttls
        self.implicit_tls = implicit_tls
        self._tmp = None if tmp_dir else tempfile.TemporaryDirectory()
        self.dir = tmp_dir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.tls = TLSFiles(self.dir) if (starttls or implicit_tls) else None
        self.host = "127.0.0.1"
        self.port = 0
        self._recorder = _Recorder()
        self.auth_failures = 0
        self._failures: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def ca_file(self) -> Path | None:
        return self.tls.ca_file if self.tls else None

    @property
    def messages(self) -> list[Received]:
        return self._recorder.snapshot()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Received]:
        return self._recorder.wait_for(n, timeout)

    def fail_next(self, code: int = 451, message: str = "try again later", times: int = 1) -> None:
        with self._lock:
            self._failures.extend([(code, message)] * times)

    # aiosmtpd handler hooks
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure:
            return f"{failure[0]} {failure[1]}"
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self._recorder.append(Received(msg, envelope.mail_from, list(envelope.rcpt_tos), login))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = (
            self.auth is not None
            and isinstance(data, LoginPassword)
            and (data.login.decode(), data.password.decode()) == self.auth
        )
        if not ok:
            self.auth_failures += 1
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def __enter__(self) -> SMTPServer:
        kwargs: dict[str, Any] = {}
        if self.starttls and self.tls:
            kwargs.update(tls_context=self.tls.server_context(), require_starttls=True)
        if self.auth:
            # aiosmtpd only counts STARTTLS as TLS; with implicit TLS the whole session is.
            kwargs.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=not self.implicit_tls)
        ssl_context = self.tls.server_context() if (self.implicit_tls and self.tls) else None
        for _ in range(5):
            self.port = _free_port()
            self._controller = Controller(
                self,
                hostname=self.host,
                port=self.port,
                ssl_context=ssl_context,
                server_hostname="localhost",
                **kwargs,
            )
            try:
                self._controller.start()
                return self
            except (OSError, RuntimeError):
                time.sleep(0.05)
        raise RuntimeError("could not start the SMTP test server")

    def __exit__(self, *exc: object) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._tmp is not None:
            self._tmp.cleanup()


# -- HTTP -----------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def route(self) -> str:
        """The path without its query string."""
        return urlsplit(self.path).path

    @property
    def params(self) -> dict[str, str]:
        """Query parameters (GET) or form fields (POST)."""
        query = urlsplit(self.path).query
        if not query and "application/x-www-form-urlencoded" in self.headers.get("content-type", ""):
            query = self.body.decode()
        return {k: v[0] for k, v in parse_qs(query).items()}

    def json(self) -> Any:
        ctype = self.headers.get("content-type", "")
        if "application/x-www-form-urlencoded" in ctype:
            return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class _HTTPServer:
    """A threaded local HTTP server that records every request and answers with
    ``handle(request)`` unless a scripted failure is queued (``fail_next``)."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._recorder = _Recorder()
        self._script: list[Reply] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    @property
    def messages(self) -> list[Any]:
        return self._recorder.snapshot()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Any]:
        return self._recorder.wait_for(n, timeout)

    def fail_next(
        self, status: int = 500, *, retry_after: float | None = None, times: int = 1, body: Any = None
    ) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``Retry-After``)."""
        headers = {"Content-Type": "application/json"}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        payload = json.dumps(body if body is not None else self._error_body(status)).encode()
        with self._lock:
            self._script.extend([Reply(status, payload, headers)] * times)

    def reply_next(self, status: int, body: bytes, content_type: str = "text/html", times: int = 1) -> None:
        """Answer the next ``times`` requests with this raw reply (a proxy's page, say)."""
        with self._lock:
            self._script.extend([Reply(status, body, {"Content-Type": content_type})] * times)

    def _error_body(self, status: int) -> Any:
        return {"error": f"HTTP {status}"}

    def handle(self, req: Request) -> Reply:
        raise NotImplementedError

    def _dispatch(self, req: Request) -> Reply:
        with self._lock:
            self.requests.append(req)
            scripted = self._script.pop(0) if self._script else None
        return scripted or self.handle(req)

    def __enter__(self) -> Any:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; without TCP_NODELAY, Nagle and
            # delayed ACKs hold every response back ~40 ms.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                self._serve("POST")

            def do_GET(self) -> None:
                self._serve("GET")

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if len(body) < length:
                    # The client died mid-request (a crash test's SIGKILL): nothing was
                    # delivered, as with a real server, so record nothing and answer nothing.
                    self.close_connection = True
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply = outer._dispatch(Request(method, self.path, headers, body))
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)


@dataclass
class SlackMessage:
    """One message the Slack stand-in accepted (``kind`` is ``webhook`` or ``api``)."""

    kind: str
    payload: dict[str, Any]
    ts: str | None = None
    channel: str | None = None

    @property
    def thread_ts(self) -> str | None:
        return self.payload.get("thread_ts")

    @property
    def text(self) -> str:
        return str(self.payload.get("text", ""))

    @property
    def blocks(self) -> list[dict[str, Any]]:
        return list(self.payload.get("blocks") or [])

    @property
    def key(self) -> str | None:
        meta = self.payload.get("metadata") or {}
        return (meta.get("event_payload") or {}).get("key")


class SlackServer(_HTTPServer):
    """A Slack stand-in: an incoming webhook at ``webhook_url`` and the Web API at
    ``api_url`` (``chat.postMessage`` with ``thread_ts``, bearer ``token``)."""

    def __init__(self, token: str = "xoxb-test-token", channel_id: str = "C0STORYW"):
        super().__init__()
        self.token = token
        self.channel_id = channel_id
        self._ts = itertools.count(1)

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/services/T000/B000/secretpart"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def _error_body(self, status: int) -> Any:
        return {"ok": False, "error": "ratelimited" if status == 429 else "fatal_error"}

    def thread(self, ts: str) -> list[SlackMessage]:
        """The replies posted in the thread of message ``ts``."""
        return [m for m in self.messages if m.thread_ts == ts]

    def handle(self, req: Request) -> Reply:
        if req.path.startswith("/services/"):
            self._recorder.append(SlackMessage("webhook", req.json()))
            return Reply(200, b"ok", {"Content-Type": "text/plain"})
        if req.path == "/api/chat.postMessage":
            if req.headers.get("authorization") != f"Bearer {self.token}":
                return self._json({"ok": False, "error": "invalid_auth"})
            payload = req.json()
            if not payload.get("channel"):
                return self._json({"ok": False, "error": "channel_not_found"})
            ts = f"1700000000.{next(self._ts):06d}"
            self._recorder.append(SlackMessage("api", payload, ts, self.channel_id))
            return self._json({"ok": True, "channel": self.channel_id, "ts": ts, "message": {"ts": ts}})
        if req.route in ("/api/conversations.history", "/api/conversations.replies"):
            return self._history(req)
        return Reply(404, b"not found")

    def _history(self, req: Request) -> Reply:
        """conversations.history (top-level messages) and .replies (a thread), newest first."""
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return self._json({"ok": False, "error": "invalid_auth"})
        params = req.params
        if params.get("channel") != self.channel_id:
            return self._json({"ok": False, "error": "channel_not_found"})
        posted = [m for m in self.messages if m.kind == "api"]
        if req.route.endswith(".replies"):
            root = params.get("ts")
            chosen = [m for m in posted if m.ts == root or m.thread_ts == root]
        else:
            chosen = [m for m in posted if m.thread_ts is None]
        with_meta = params.get("include_all_metadata") in ("1", "true")
        out = []
        for m in reversed(chosen[-int(params.get("limit") or 100) :]):
            item: dict[str, Any] = {"type": "message", "ts": m.ts, "text": m.text}
            if m.thread_ts:
                item["thread_ts"] = m.thread_ts
            if with_meta and m.payload.get("metadata"):
                item["metadata"] = m.payload["metadata"]
            out.append(item)
        return self._json({"ok": True, "messages": out, "has_more": False})

    @staticmethod
    def _json(obj: Any) -> Reply:
        return Reply(200, json.dumps(obj).encode(), {"Content-Type": "application/json"})


@dataclass
class WebhookCall:
    """One signed webhook request the receiver accepted."""

    payload: Any
    key: str | None
    timestamp: str | None
    headers: dict[str, str]


class WebhookReceiver(_HTTPServer):
    """Accepts POSTs whose HMAC-SHA256 signature (over ``<timestamp>.<body>``) checks out;
    records them in ``messages`` and the rest, answered 401, in ``rejected``."""

    def __init__(
        self,
        secret: bytes | None = b"test-signing-secret",
        *,
        signature_header: str = "X-Storywatch-Signature",
        timestamp_header: str = "X-Storywatch-Timestamp",
    ):
        super().__init__()
        self.secret = secret
        self.signature_header = signature_header.lower()
        self.timestamp_header = timestamp_header.lower()
        self.rejected: list[Request] = []

    @property
    def hook_url(self) -> str:
        return f"{self.url}/hook"

    def signature_ok(self, req: Request) -> bool:
        if self.secret is None:
            return True
        ts = req.headers.get(self.timestamp_header, "")
        expected = "sha256=" + hmac.new(self.secret, ts.encode() + b"." + req.body, hashlib.sha256).hexdigest()
        return bool(ts) and hmac.compare_digest(expected, req.headers.get(self.signature_header, ""))

    def handle(self, req: Request) -> Reply:
        if not self.signature_ok(req):
            self.rejected.append(req)
            return Reply(401, b'{"error":"bad signature"}', {"Content-Type": "application/json"})
        self._recorder.append(
            WebhookCall(
                req.json(),
                req.headers.get("idempotency-key"),
                req.headers.get(self.timestamp_header),
                req.headers,
            )
        )
        return Reply(202, b'{"ok":true}', {"Content-Type": "application/json"})


# -- pytest fixtures ------------------------------------------------------------------


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[SMTPServer]:
    """A plain SMTP server (no TLS, no AUTH); build an SMTPServer yourself for those."""
    with SMTPServer(tmp_dir=tmp_path) as server:
        yield server


@pytest.fixture
def slack_server() -> Iterator[SlackServer]:
    with SlackServer() as server:
        yield server


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A receiver checking signatures made with ``b"test-signing-secret"``."""
    with WebhookReceiver() as server:
        yield server
