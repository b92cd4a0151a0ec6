"""``serve``: the dashboard over the configured store, until the stop event is set."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import httpx

from storywatch.store.sqlite import SQLiteStore
from storywatch.web import serve
from tests.web.fixtures import populate, settings_for


def test_serve_until_stopped(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    store = SQLiteStore(settings.path(settings.store.path))
    populate(store, settings, tmp_path)
    store.close()
    stop = threading.Event()
    urls: queue.Queue[str] = queue.Queue()
    thread = threading.Thread(target=serve, args=(settings, "127.0.0.1", 0, stop, urls.put), daemon=True)
    thread.start()
    try:
        url = urls.get(timeout=30)
        resp = httpx.get(url + "feeds", timeout=10)
        assert resp.status_code == 200
        assert "The Daily Ledger" in resp.text and "HTTP 503" in resp.text
        assert httpx.get(url + "static/style.css", timeout=10).headers["content-type"].startswith("text/css")
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    try:
        httpx.get(url, timeout=2)
        raise AssertionError("the server still answers after stop")
    except httpx.TransportError:
        pass
