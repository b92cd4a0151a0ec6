from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from storywatch.clock import FakeClock
from storywatch.settings import Settings
from storywatch.store.sqlite import SQLiteStore
from storywatch.web import WebServer, create_app
from tests.web.fixtures import NOW, populate, settings_for


@dataclass
class Dashboard:
    url: str
    settings: Settings
    store: SQLiteStore
    data: dict[str, Any]
    client: Any


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """The dashboard over a populated store, served on a free loopback port."""
    tmp = tmp_path_factory.mktemp("dashboard")
    settings = settings_for(tmp)
    store = SQLiteStore(tmp / "state.db")
    data = populate(store, settings, tmp)
    app = create_app(settings, store, clock=FakeClock(NOW))
    server = WebServer(app, "127.0.0.1", 0).start()
    try:
        yield Dashboard(server.url, settings, store, data, app.test_client())
    finally:
        server.stop()
        store.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shots")
