"""The read side over the real stages: the seed feeds through ingest, enrich and alerts,
then the dashboard in a browser, ``status``, and a backtest of the same history.

One embedding model and one pipeline run serve the whole module (the model takes seconds).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from storywatch import views
from storywatch.backtest import backtest
from storywatch.bus import Bus
from storywatch.bus.embedded import EmbeddedBus
from storywatch.clock import Clock, SystemClock
from storywatch.runtime import Service
from storywatch.settings import Settings, load_settings
from storywatch.store import Store
from storywatch.store.sqlite import SQLiteStore
from storywatch.web import WebServer, create_app
from tests.web.browser import dump_dom

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Pipeline:
    settings: Settings
    bus: EmbeddedBus
    store: SQLiteStore
    embedder: Any
    url: str


def pipeline_settings(tmp: Path) -> Settings:
    """The demo's feeds and watched topics, with state and alerts under ``tmp``."""
    demo = load_settings(ROOT / "config" / "storywatch.yaml", environ={})
    return Settings.model_validate(
        {
            "base_dir": str(tmp),
            "feeds": [{**f.model_dump(), "url": str(ROOT / "config" / f.url)} for f in demo.feeds],
            "topics": [{**t.model_dump(), "channels": ["file"]} for t in demo.topics],
            "alerts": {"channels": {"file": {"kind": "file", "path": "alerts.jsonl"}}, "default_channels": ["file"]},
        }
    )


def services(embedder: Any) -> Any:
    def make(settings: Settings, bus: Bus, store: Store, clock: Clock) -> Sequence[Service]:
        from alerts.service import AlertsService
        from enrich.service import EnrichService

        return [
            EnrichService(settings, bus, store, clock, embedder=embedder),
            AlertsService(settings, bus, store, clock, stdout=io.StringIO()),
        ]

    return make


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    from enrich.embed import make_embedder
    from enrich.service import embed_config
    from ingest.service import IngestService

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tmp = tmp_path_factory.mktemp("pipeline")
    settings = pipeline_settings(tmp)
    embedder = make_embedder(embed_config(settings))
    bus, store, clock = EmbeddedBus(tmp / "bus.db"), SQLiteStore(tmp / "state.db"), SystemClock()
    stages: list[Any] = [IngestService(settings, bus, store, clock), *services(embedder)(settings, bus, store, clock)]
    for svc in stages:
        svc.drain()
    for svc in reversed(stages):
        svc.close()
    server = WebServer(create_app(settings, store), "127.0.0.1", 0).start()
    if os.environ.get("STORYWATCH_PIPELINE_SHOT"):
        from tests.web.browser import screenshot

        screenshot(server.url, Path(os.environ["STORYWATCH_PIPELINE_SHOT"]))
    try:
        yield Pipeline(settings, bus, store, embedder, server.url)
    finally:
        server.stop()
        bus.close()
        store.close()


def test_dashboard_shows_the_real_stories(pipeline: Pipeline) -> None:
    stories = views.stories_view(pipeline.store, limit=100)
    missile = [s for s in stories if any(m.topic == "missile launches" for m in s.matches)]
    assert missile, [s.headline for s in stories]
    story = missile[0]
    assert story.source_count >= 2 and story.articles and story.growth
    dom = dump_dom(pipeline.url)
    assert story.headline.replace("&", "&amp;") in dom
    assert "missile launches" in dom
    # The other pages over plain HTTP (the browser's view of them is tested on fixtures).
    detail = httpx.get(pipeline.url + f"stories/{story.story_id}", timeout=30).text
    assert "<svg" in detail and "independent sources" in detail
    feeds = httpx.get(pipeline.url + "feeds", timeout=30).text
    assert feeds.count("badge-ok") == len(pipeline.settings.feeds)
    alerts = httpx.get(pipeline.url + "alerts", timeout=30).text
    assert "missile launches" in alerts and "badge-sent" in alerts


def test_status_over_the_real_pipeline(pipeline: Pipeline) -> None:
    out = io.StringIO()
    rc = views.status(pipeline.settings, pipeline.store, pipeline.bus, True, out)
    doc = json.loads(out.getvalue())
    assert rc == 0 and doc["ok"]
    assert doc["bus_lag"] == {"enrich": 0, "alerts": 0}
    assert doc["alerts"]["counts"].get("sent", 0) >= 1
    assert any("missile launches" in [m["topic"] for m in s["matches"]] for s in doc["stories"])


def test_backtest_of_the_same_history(pipeline: Pipeline, tmp_path: Path) -> None:
    """Replaying what ingest published, with the same rules, fires the same topics, and
    the live store and bus are left as they were."""
    live = {m.topic for s in views.stories_view(pipeline.store, 500) for m in s.matches}
    deliveries_before = pipeline.store.count(views.NS_DELIVERIES)
    out = io.StringIO()
    rc = backtest(
        pipeline.settings, None, None, out, make_services=services(pipeline.embedder), history_bus=pipeline.bus
    )
    text = out.getvalue()
    assert rc == 0, text
    assert "replayed 29 articles" in text
    for topic in live:
        assert f"{topic}  " in text or f"{topic} " in text
    assert pipeline.store.count(views.NS_DELIVERIES) == deliveries_before
    assert views.bus_lag(pipeline.bus, views.stage_groups(pipeline.settings)) == {"enrich": 0, "alerts": 0}
