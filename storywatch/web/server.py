"""Serving the dashboard: a threaded WSGI server that stops when told to.

:class:`WebServer` runs an app in a background thread (``storywatch run`` starts one
beside the stages); :func:`serve` is ``storywatch web``: open the store, serve until the
stop event is set, close everything.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from storywatch.logs import kv
from storywatch.settings import Settings

log = logging.getLogger("storywatch.web")


class _QuietHandler(WSGIRequestHandler):
    """Requests go to the debug log, not to stderr (a refreshing page would flood it)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("request", extra=kv(path=self.path, status=code))

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format % args)


class WebServer:
    """A WSGI app on ``host:port`` (0 picks a free port) in a daemon thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8080):
        self._httpd: BaseWSGIServer = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="web", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_port)

    @property
    def url(self) -> str:
        host = str(self._httpd.server_address[0])
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    def start(self) -> WebServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def serve(
    settings: Settings,
    host: str,
    port: int,
    stop_event: threading.Event,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the dashboard over the configured store until ``stop_event`` is set;
    ``ready`` is called with the dashboard's URL once it accepts requests."""
    from storywatch.store import make_store
    from storywatch.web.app import create_app

    store = make_store(settings.resolved_store())
    try:
        server = WebServer(create_app(settings, store), host, port).start()
        log.info("serving dashboard", extra=kv(url=server.url))
        if ready is not None:
            ready(server.url)
        try:
            stop_event.wait()
        finally:
            server.stop()
    finally:
        store.close()
    log.info("dashboard stopped")
