"""A real, scriptable feed server for tests and benchmarks (threaded ``http.server``).

It listens on 127.0.0.1, port 0 (a free port), and answers each path from a script of
:class:`Reply` objects, served in order, the last one repeating::

    with FeedServer() as srv:
        url = srv.feed("/a.xml", rss_bytes, etag='"v1"')           # 200, then 304 on If-None-Match
        srv.script("/busy.xml", Reply(429, headers={"Retry-After": "120"}), Reply(body=rss_bytes))
        srv.redirect("/old.xml", "/a.xml", status=301)
        srv.script("/slow.xml", Reply(body=rss_bytes, delay_s=2))   # headers after 2 s
        srv.script("/huge.xml", Reply(endless=True))               # never-ending body
        srv.script("/gz.xml", Reply(body=rss_bytes, encoding="gzip"))  # or "br"
        srv.hits("/a.xml"); srv.requests[-1].headers["If-None-Match"]

Run as a program it serves ``N`` synthetic feeds for ``bench/bench_ingest.py``::

    python tests/feedserver.py --bench 2000      # prints the port, then serves until killed

In bench mode ``GET /_bump`` gives ``--fraction`` of the feeds a new item.
"""

from __future__ import annotations

import argparse
import gzip
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

import brotli

from storywatch.observe import QuietHTTPServer


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``etag``/``last_modified`` make the server answer 304 to a
    matching conditional request; ``endless`` streams zeros until the client gives up."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/rss+xml; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    delay_s: float = 0.0
    encoding: Literal["gzip", "br"] | None = None
    endless: bool = False
    chunk_delay_s: float = 0.0


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    at: float


class FeedServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Reply]] = {}
        self._stop = threading.Event()
        self.requests: list[Request] = []
        self.dynamic: Any = None  # callable(path, headers) -> Reply | None, used by bench mode
        self._httpd = QuietHTTPServer((host, port), _handler(self))
        self._httpd.block_on_close = False  # idle keep-alive connections must not delay stop()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="feedserver"
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def start(self) -> FeedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- scripting -------------------------------------------------------------------

    def script(self, path: str, *replies: Reply) -> str:
        """Serve ``replies`` to successive requests of ``path`` (the last repeats); return its URL."""
        with self._lock:
            self._scripts[path] = list(replies)
        return self.url(path)

    def feed(self, path: str, body: bytes, **kw: Any) -> str:
        return self.script(path, Reply(body=body, **kw))

    def redirect(self, path: str, to: str, status: int = 301) -> str:
        return self.script(path, Reply(status, headers={"Location": to}))

    def hits(self, path: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.path == path)

    def _next(self, path: str, headers: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append(Request(path, headers, time.monotonic()))
            script = self._scripts.get(path)
            if script:
                return script.pop(0) if len(script) > 1 else script[0]
        if self.dynamic is not None:
            reply = self.dynamic(path, headers)
            if reply is not None:
                return reply
        return Reply(404, b"not found", content_type="text/plain")

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the server stops first; False if it stopped."""
        return not self._stop.wait(seconds)


def _handler(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            headers = {k: v for k, v in self.headers.items()}
            reply = server._next(urlsplit(self.path).path, headers)
            if reply.delay_s and not server._sleep(reply.delay_s):
                return
            if _not_modified(reply, headers):
                self.send_response(304)
                if reply.etag:
                    self.send_header("ETag", reply.etag)
                self.send_header("Content-Length", "0")
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                return
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            if reply.etag:
                self.send_header("ETag", reply.etag)
            if reply.last_modified:
                self.send_header("Last-Modified", reply.last_modified)
            for k, v in reply.headers.items():
                self.send_header(k, v)
            if reply.endless:
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                chunk = b"<!-- " + b"x" * 65536 + b" -->"
                try:
                    while server._sleep(reply.chunk_delay_s):
                        self.wfile.write(chunk)
                except OSError:
                    pass
                return
            body = reply.body
            if reply.encoding == "gzip":
                body = gzip.compress(body)
                self.send_header("Content-Encoding", "gzip")
            elif reply.encoding == "br":
                body = brotli.compress(body)
                self.send_header("Content-Encoding", "br")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                if reply.chunk_delay_s:
                    for i in range(0, len(body), 256):
                        if not server._sleep(reply.chunk_delay_s):
                            return
                        self.wfile.write(body[i : i + 256])
                        self.wfile.flush()
                else:
                    self.wfile.write(body)
            except OSError:
                pass

    return Handler


def _not_modified(reply: Reply, headers: dict[str, str]) -> bool:
    if reply.status != 200:
        return False
    inm = headers.get("If-None-Match")
    if reply.etag and inm:
        return reply.etag in [t.strip() for t in inm.split(",")]
    ims = headers.get("If-Modified-Since")
    return bool(reply.last_modified and ims and ims == reply.last_modified)


def rss(title: str, items: list[dict[str, str]], *, link: str = "https://example.com/", extra: str = "") -> bytes:
    """A small RSS 2.0 document: ``items`` are dicts of title, link, guid, pubDate, description."""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>',
        f"<title>{title}</title><link>{link}</link>{extra}",
    ]
    for it in items:
        parts.append("<item>" + "".join(f"<{k}>{v}</{k}>" for k, v in it.items()) + "</item>")
    parts.append("</channel></rss>")
    return "".join(parts).encode()


class BenchFeeds:
    """``n`` synthetic feeds at ``/feed/<i>.xml`` of 20 items each; ``bump`` adds an item
    to a random share of them."""

    def __init__(self, n: int, seed: int = 7):
        self.n = n
        self.versions = [19] * n
        self.rng = random.Random(seed)
        self._lock = threading.Lock()
        self._t0 = datetime(2026, 3, 1, tzinfo=UTC)

    def bump(self, fraction: float) -> int:
        with self._lock:
            chosen = self.rng.sample(range(self.n), int(self.n * fraction))
            for i in chosen:
                self.versions[i] += 1
            return len(chosen)

    def body(self, i: int, v: int) -> bytes:
        items = []
        for k in range(v, max(v - 20, -1), -1):
            when = self._t0 + timedelta(minutes=10 * k + i % 7)
            items.append(
                {
                    "title": f"Report {k} from desk {i}: council approves budget for district {k % 13}",
                    "link": f"https://news{i % 50}.example.com/desk{i}/story-{k}?utm_source=rss",
                    "guid": f"desk{i}-{k}",
                    "pubDate": format_datetime(when),
                    "description": f"&lt;p&gt;Desk {i} reports item {k} with &lt;b&gt;details&lt;/b&gt;.&lt;/p&gt;",
                }
            )
        return rss(f"Desk {i}", items, link=f"https://news{i % 50}.example.com/")

    def __call__(self, path: str, headers: dict[str, str]) -> Reply | None:
        if path.startswith("/_bump"):
            return None
        if not (path.startswith("/feed/") and path.endswith(".xml")):
            return None
        try:
            i = int(path[len("/feed/") : -len(".xml")])
        except ValueError:
            return None
        if not 0 <= i < self.n:
            return None
        v = self.versions[i]
        etag = f'"{i}-{v}"'
        if headers.get("If-None-Match") == etag:
            return Reply(etag=etag)
        return Reply(body=self.body(i, v), etag=etag)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve synthetic feeds for the ingest benchmark.")
    parser.add_argument("--bench", type=int, required=True, help="number of synthetic feeds")
    parser.add_argument("--fraction", type=float, default=0.1, help="share of feeds each /_bump changes")
    args = parser.parse_args(argv)
    feeds = BenchFeeds(args.bench)
    srv = FeedServer()
    srv.requests = _Discard()

    def dynamic(path: str, headers: dict[str, str]) -> Reply | None:
        if path == "/_bump":
            return Reply(body=str(feeds.bump(args.fraction)).encode(), content_type="text/plain")
        return feeds(path, headers)

    srv.dynamic = dynamic
    srv.start()
    print(srv.port, flush=True)
    try:
        sys.stdin.read()  # serve until the parent closes our stdin
    finally:
        srv.stop()


class _Discard(list):  # type: ignore[type-arg]
    """A request log that keeps nothing (the bench makes thousands of requests)."""

    def append(self, item: Any) -> None:
        pass


if __name__ == "__main__":
    main()
