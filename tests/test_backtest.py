"""``storywatch backtest``: replay through the real alerts stage, send nothing, count alerts.

Until a test runs the real enrich stage here, a small stand-in enricher turns articles
into story events (one story per ``story`` word of the title, a match when the title
names a watched topic); the alerts stage, the bus and the store are the real ones.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from storywatch.backtest import backtest, isolated_settings, parse_duration, read_jsonl
from storywatch.bus import Bus
from storywatch.bus.embedded import EmbeddedBus
from storywatch.clock import Clock
from storywatch.runtime import Service
from storywatch.schema import Article, ArticleRef, StoryEvent, StorySnapshot, TopicMatch
from storywatch.settings import Settings
from storywatch.store import Store

T0 = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)


class StandInEnricher:
    """Articles -> story events: the story is the title's first word; a title that names
    a watched topic matches it (with that topic's channels)."""

    name = "enrich"

    def __init__(self, settings: Settings, bus: Bus, store: Store, clock: Clock):
        self.settings, self.bus, self.clock = settings, bus, clock
        self.consumer = bus.consumer("stand-in-enrich", [settings.bus.topics.raw_articles])
        self.producer = bus.producer()
        self.stories: dict[str, list[Article]] = {}

    def start(self) -> None: ...

    def step(self, timeout: float) -> int:
        return self.drain()

    def drain(self) -> int:
        n = 0
        while records := self.consumer.poll(100, 0.0):
            for rec in records:
                self._one(Article.model_validate_json(rec.value))
                n += 1
            self.producer.flush()
            self.consumer.commit()
        return n

    def _one(self, a: Article) -> None:
        sid = "s-" + a.title.split()[0].lower()
        arts = self.stories.setdefault(sid, [])
        arts.append(a)
        snap = StorySnapshot(
            story_id=sid, revision=len(arts), headline=arts[0].title, first_seen=arts[0].published,
            last_seen=a.published, article_count=len(arts), source_count=len({x.source for x in arts}),
            sources=sorted({x.source for x in arts}),
            top_articles=[ArticleRef(id=x.id, title=x.title, source=x.source, published=x.published) for x in arts[:5]],
        )  # fmt: skip
        kind = "created" if len(arts) == 1 else "updated"
        events = [StoryEvent(type=kind, story_id=sid, revision=len(arts), at=a.published, story=snap)]
        for t in self.settings.topics:
            if t.name.lower() in a.title.lower():
                m = TopicMatch(topic=t.name, score=0.9, threshold=0.5, channels=t.channels, explanation="named")
                events.append(
                    StoryEvent(type="matched", story_id=sid, revision=len(arts), at=a.published, story=snap, match=m)
                )
        for ev in events:
            self.producer.publish(self.settings.bus.topics.story_events, sid, ev.to_bytes())

    def close(self) -> None:
        self.consumer.close()


def make_services(settings: Settings, bus: Bus, store: Store, clock: Clock) -> Sequence[Service]:
    from alerts.service import AlertsService

    return [StandInEnricher(settings, bus, store, clock), AlertsService(settings, bus, store, clock)]


def new_config(tmp: Path, webhook_hits: list[Any]) -> Settings:
    """A config whose channels would reach the outside (a webhook, Slack, SMTP) if used."""
    import os

    os.environ["BACKTEST_TEST_SECRET"] = "http://127.0.0.1:9/never"
    return Settings.model_validate(
        {
            "base_dir": str(tmp),
            "bus": {"path": "live-bus.db"},
            "store": {"path": "live-state.db"},
            "topics": [
                {"name": "earthquake", "channels": ["hook"], "min_sources": 2},
                {"name": "wildfire", "channels": ["hook", "ops"], "severity": "high"},
            ],
            "alerts": {
                "channels": {
                    "hook": {"kind": "webhook", "url": {"env": "BACKTEST_TEST_SECRET"},
                             "digest": {"window_s": 600}},
                    "ops": {"kind": "email", "host": "127.0.0.1", "port": 9, "from_addr": "a@b.invalid",
                            "to": ["c@d.invalid"], "quiet_hours": {"start": "00:00", "end": "23:59"}},
                },
                "default_channels": ["ops"],
                "rules": {"emerging": {"enabled": False}},
            },
        }
    )  # fmt: skip


def articles() -> list[dict[str, Any]]:
    rows = []
    for i, (title, source) in enumerate(
        [
            ("Earthquake shakes coastal city", "Wire A"),
            ("Earthquake aftershocks continue", "Wire A"),
            ("Earthquake damage assessed by engineers", "Wire B"),
            ("Wildfire spreads across the hills", "Wire C"),
            ("Budget vote delayed", "Wire B"),
            ("Wildfire forces evacuations", "Wire A"),
        ]
    ):
        rows.append(
            {
                "id": f"a{i}",
                "title": title,
                "text": f"{title}. More details.",
                "published": (T0 + timedelta(minutes=25 * i)).isoformat(),
                "source": source,
                "url": f"https://{source.lower().replace(' ', '')}.example/{i}",
            }
        )
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_replay_file_counts_alerts_per_topic_and_channel(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = new_config(tmp_path, [])
    out = io.StringIO()
    caplog.set_level("INFO")
    rc = backtest(settings, None, write_jsonl(tmp_path / "a.jsonl", articles()), out, make_services=make_services)
    text = out.getvalue()
    assert rc == 0, text
    assert "replayed 6 articles" in text
    assert "nothing was sent" in text
    assert "alert sent" not in caplog.text, "the log must not contradict it"
    lines = {tuple(line.split()) for line in text.splitlines()}
    # earthquake fires once it has two sources (third article); wildfire at once, to two channels.
    assert ("earthquake", "hook", "1") in lines
    assert ("wildfire", "hook", "1") in lines
    assert ("wildfire", "ops", "1") in lines
    assert "ALERTS THAT WOULD HAVE FIRED: 2 (3 deliveries)" in text
    # The live paths of the config were not touched.
    assert not (tmp_path / "live-state.db").exists() and not (tmp_path / "live-bus.db").exists()


def test_replay_from_retained_bus_history_since(tmp_path: Path) -> None:
    settings = new_config(tmp_path, [])
    bus = EmbeddedBus(tmp_path / "live-bus.db")
    try:
        producer = bus.producer()
        for row in articles():
            a = next(read_jsonl(write_jsonl(tmp_path / "one.jsonl", [row])))
            producer.publish(settings.bus.topics.raw_articles, a.id, a.to_bytes())
        producer.flush()
        out = io.StringIO()
        now = T0 + timedelta(hours=3)
        # The last 110 minutes (from 09:10) hold articles 3..5 (wildfire twice, budget once).
        rc = backtest(
            settings, timedelta(minutes=110), None, out, make_services=make_services, history_bus=bus, now=now
        )
        assert rc == 0
        assert "replayed 3 articles" in out.getvalue()
        assert "earthquake" not in out.getvalue().lower()
        # Reading history committed nothing: no group offsets were written to the live bus.
        assert bus._conn.execute("SELECT COUNT(*) FROM offsets").fetchone()[0] == 0
    finally:
        bus.close()


def test_isolated_settings_send_nowhere(tmp_path: Path) -> None:
    iso = isolated_settings(new_config(tmp_path, []), tmp_path / "work")
    assert {c.kind for c in iso.alerts.channels.values()} == {"file"}
    assert all(c.digest is None and c.quiet_hours is None for c in iso.alerts.channels.values())
    assert iso.bus.kind == "embedded" and iso.bus.path.parent == tmp_path / "work"
    assert iso.store.path.parent == tmp_path / "work"
    assert not iso.http.enabled


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"title": "x", "published": "2026-01-01T00:00:00Z"}', "missing 'id'"),
        ('{"id": "1", "title": "x"}', "published"),
        ('{"id": "1", "published": "yesterday"}', "Invalid isoformat"),
        ("[1, 2]", "expected a JSON object"),
        ("not json", "Expecting value"),
        ('{"id": null, "published": "2026-01-01T00:00:00Z"}', "id: expected a non-empty string or a number"),
        ('{"id": "1", "title": ["a"], "published": "2026-01-01T00:00:00Z"}', "title: expected a string, got list"),
    ],
    ids=["no-id", "no-published", "bad-time", "not-object", "not-json", "null-id", "list-title"],
)
def test_bad_input_exits_2_naming_the_line(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "ok", "title": "fine", "published": "2026-01-01T00:00:00Z"}\n\n' + line + "\n")
    out, err = io.StringIO(), io.StringIO()
    assert backtest(new_config(tmp_path, []), None, path, out, make_services=make_services, err=err) == 2
    assert f"{path}:3:" in err.getvalue() and reason in err.getvalue()
    assert out.getvalue() == "", "errors go to stderr, apart from the report"


def test_empty_input(tmp_path: Path) -> None:
    out = io.StringIO()
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    assert backtest(new_config(tmp_path, []), None, path, out, make_services=make_services) == 0
    assert "no articles" in out.getvalue()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("7d", timedelta(days=7)), ("36h", timedelta(hours=36)), ("90m", timedelta(minutes=90)),
     ("1w", timedelta(weeks=1)), ("45s", timedelta(seconds=45)), ("600", timedelta(minutes=10)),
     (" 1.5D ", timedelta(hours=36))],
    ids=["days", "hours", "minutes", "weeks", "seconds", "bare-seconds", "fraction-case-space"],
)  # fmt: skip
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "d", "7x", "-1d", "0h", "nand", "infh", "seven days"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_since_and_input_are_exclusive(tmp_path: Path) -> None:
    out = io.StringIO()
    path = write_jsonl(tmp_path / "a.jsonl", articles())
    err = io.StringIO()
    assert backtest(new_config(tmp_path, []), timedelta(days=1), path, out, make_services=make_services, err=err) == 2
    assert "not both" in err.getvalue()
