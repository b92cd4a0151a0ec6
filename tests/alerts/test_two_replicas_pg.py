"""Two alerts workers sharing one PostgreSQL store never send an alert twice.

Each replica has its own store connection pool and its own consumer group on a shared
embedded bus, so *both* see every story event: the worst case for duplicates, where the
delivery log's deterministic ids and ``update_if`` claims are all that stands between an
event and two emails. Events arrive while both replicas run, and the webhook receiver
fails some requests so that retries (``failed`` -> claim again) race too. Every alert
must reach the SMTP server and the webhook receiver exactly once, follow-up emails must
answer their story's first email.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.service import AlertsService
from storywatch.bus.embedded import EmbeddedBus
from storywatch.clock import SystemClock
from storywatch.settings import Settings
from storywatch.store import Store
from storywatch.store.postgres import PostgresStore
from tests.alerts.conftest import event
from tests.pg_server import PostgresServer
from tests.servers import SMTPServer, WebhookReceiver

STORIES = 30
FOLLOW_UPS = 10
TOPIC = "storywatch.story-events"
SECRET = "two-replicas-secret"


def settings(tmp_path: Path, smtp: SMTPServer, group: str) -> Settings:
    return Settings.model_validate(
        {
            "base_dir": str(tmp_path),
            "bus": {"path": str(tmp_path / "bus.db")},
            "topics": [{"name": "floods"}],
            "alerts": {
                "group": group,
                "channels": {
                    "mail": {
                        "kind": "email",
                        "host": smtp.host,
                        "port": smtp.port,
                        "security": "none",
                        "from_addr": "storywatch@alerts.example",
                        "to": ["desk@example.org"],
                        "timeout_s": 2,
                    },
                    "hook": {
                        "kind": "webhook",
                        "url": {"env": "TWO_REPLICAS_HOOK_URL"},
                        "signing_secret": {"env": "TWO_REPLICAS_HOOK_SECRET"},
                        "timeout_s": 2,
                    },
                },
                "default_channels": ["mail", "hook"],
                "batch_size": 4,
                "backoff_base_s": 0.05,
                "backoff_max_s": 0.2,
                "claim_lease_s": 60,
                "rules": {"appears": {"enabled": False}, "follow_up": {"min_interval_s": 0}},
            },
        }
    )


def events() -> list[bytes]:
    """A match per story, a follow-up for some, and every fourth match twice (redelivery).

    Stamped in the last hour: the replicas run on the system clock, and story state older
    than ``alerts.retention_days`` is pruned.
    """
    t0 = datetime.now(UTC) - timedelta(hours=1)
    out = []
    for i in range(STORIES):
        out.append(event("matched", f"s{i:02d}", at=t0 + timedelta(minutes=i)).to_bytes())
        if i % 4 == 0:
            out.append(out[-1])
        if i < FOLLOW_UPS:
            at = t0 + timedelta(minutes=i, seconds=30)
            up = event("updated", f"s{i:02d}", revision=2, at=at, changes=["new_entities"], entities=["Rhine"])
            out.append(up.to_bytes())
    return out


EXPECTED_ALERTS = STORIES + FOLLOW_UPS
EXPECTED_DELIVERIES = EXPECTED_ALERTS * 2


class Replica(threading.Thread):
    """One alerts worker: its own bus handle, store and consumer group, stepping until told."""

    def __init__(self, settings: Settings, store: Store, stop: threading.Event):
        super().__init__(name=f"replica-{settings.alerts.group}")
        self.bus = EmbeddedBus(settings.path(settings.bus.path))
        self.store = store
        self.service = AlertsService(settings, self.bus, store, SystemClock())
        self.stop = stop
        self.error: BaseException | None = None
        self.attempted = 0

    def run(self) -> None:
        try:
            self.service.start()
            while not self.stop.is_set():
                self.attempted += self.service.step(0.02)
        except BaseException as exc:
            self.error = exc
        finally:
            self.service.close()
            self.bus.close()


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer().start()
    except RuntimeError as exc:
        pytest.fail(f"the PostgreSQL test server could not start: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hook_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(secret=SECRET.encode()) as rx:
        monkeypatch.setenv("TWO_REPLICAS_HOOK_URL", rx.hook_url)
        monkeypatch.setenv("TWO_REPLICAS_HOOK_SECRET", SECRET)
        yield rx


def feed(bus_path: Path, values: list[bytes]) -> None:
    bus = EmbeddedBus(bus_path)
    producer = bus.producer()
    try:
        for i in range(0, len(values), 5):
            for v in values[i : i + 5]:
                producer.publish(TOPIC, None, v)
            producer.flush()
            time.sleep(0.02)  # interleave arrival with the replicas' steps
    finally:
        bus.close()


def wait_sent(store: Store, n: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (sent := store.count("alerts.deliveries", tag="sent")) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return sent


def expected_keys() -> set[str]:
    alerts = {f"topic_match/floods:s{i:02d}:1" for i in range(STORIES)}
    alerts |= {f"follow_up:s{i:02d}:2" for i in range(FOLLOW_UPS)}
    return {f"{a}|{ch}" for a in alerts for ch in ("mail", "hook")}


def wait_consumed(bus_path: Path, groups: list[str], timeout: float) -> None:
    """Until every group committed the whole topic: no late duplicate is still coming."""
    bus = EmbeddedBus(bus_path)
    deadline = time.monotonic() + timeout
    try:
        while any(bus.committed(g, TOPIC) < bus.end_offset(TOPIC) for g in groups):
            assert time.monotonic() < deadline, "replicas did not consume every event"
            time.sleep(0.05)
    finally:
        bus.close()


def test_two_replicas_on_one_postgres_send_every_alert_once(
    tmp_path: Path, pg_server: PostgresServer, hook_env: WebhookReceiver
) -> None:
    rx = hook_env
    dsn = pg_server.new_database("replicas")
    with SMTPServer(tmp_dir=tmp_path) as smtp:
        want = expected_keys()
        rx.fail_next(500, times=6)  # the first webhook attempts fail and are retried
        EmbeddedBus(tmp_path / "bus.db").close()
        stop = threading.Event()
        stores = [PostgresStore(dsn, pool_size=2) for _ in range(2)]
        replicas = [
            Replica(settings(tmp_path, smtp, f"alerts-{n}"), st, stop) for n, st in zip("ab", stores, strict=True)
        ]
        for r in replicas:
            r.start()
        try:
            feed(tmp_path / "bus.db", events())
            wait_consumed(tmp_path / "bus.db", [r.service.cfg.group for r in replicas], 60)
            sent = wait_sent(stores[0], EXPECTED_DELIVERIES, 20)
        finally:
            stop.set()
            for r in replicas:
                r.join(30)
        for r in replicas:
            assert r.error is None, r.error
        deliveries = {d["key"]: d for _, d in stores[0].scan("alerts.deliveries")}
        for st in stores:
            st.close()

    assert sent == EXPECTED_DELIVERIES, sorted(expected_keys() - set(deliveries))
    assert set(deliveries) == want
    assert {d["state"] for d in deliveries.values()} == {"sent"}
    assert not any(d["uncertain"] for d in deliveries.values())

    mail = Counter(m.message["X-Storywatch-Key"] for m in smtp.messages)
    hook = Counter(c.key for c in rx.messages)
    assert set(mail) == {k for k in want if k.endswith("|mail")}
    assert set(hook) == {k for k in want if k.endswith("|hook")}
    twice = sorted(k for k, n in (mail + hook).items() if n > 1)
    assert twice == [], f"sent more than once: {twice}"
    assert len(rx.requests) == len(hook) + 6, "each failed webhook attempt was retried once"

    by_key: dict[str, Any] = {m.message["X-Storywatch-Key"]: m.message for m in smtp.messages}
    for i in range(FOLLOW_UPS):
        root = by_key[f"topic_match/floods:s{i:02d}:1|mail"]
        assert by_key[f"follow_up:s{i:02d}:2|mail"]["In-Reply-To"] == root["Message-ID"]
    # Both workers did real work: the claims, not one idle replica, kept the sends unique.
    assert all(r.attempted > 0 for r in replicas), [r.attempted for r in replicas]
