"""Crash test: SIGKILL the alerts stage at random moments while events flow, restart it,
and check that every alert reaches the SMTP server and the webhook receiver, once.

The one allowed repeat is the documented window (the receiver accepted, the process died
before recording ``sent``): such a delivery is marked ``uncertain`` and the repeat carries
the same idempotency key, so the test accepts a repeat only for an uncertain delivery.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import yaml

from storywatch.bus.embedded import EmbeddedBus
from storywatch.store.sqlite import SQLiteStore
from tests.alerts.conftest import T0, event
from tests.servers import SMTPServer, WebhookReceiver

ROOT = Path(__file__).resolve().parents[2]
STORIES = 24
FOLLOW_UPS = 8
KILLS = 8


def write_config(tmp_path: Path, smtp: SMTPServer) -> Path:
    config = {
        "bus": {"path": "bus.db"},
        "store": {"path": "state.db"},
        "topics": [{"name": "floods"}],
        "alerts": {
            "channels": {
                "mail": {
                    "kind": "email",
                    "host": smtp.host,
                    "port": smtp.port,
                    "security": "none",
                    "from_addr": "storywatch@alerts.example",
                    "to": ["desk@example.org"],
                    "timeout_s": 0.5,
                },
                "hook": {
                    "kind": "webhook",
                    "url": {"env": "CRASH_HOOK_URL"},
                    "signing_secret": {"env": "CRASH_HOOK_SECRET"},
                    "timeout_s": 0.5,
                },
            },
            "default_channels": ["mail", "hook"],
            "backoff_base_s": 0.05,
            "backoff_max_s": 0.5,
            "claim_lease_s": 1.0,
            "rules": {"appears": {"enabled": False}, "follow_up": {"min_interval_s": 0}},
        },
    }
    path = tmp_path / "storywatch.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def events() -> list[bytes]:
    """Matches for STORIES stories, follow-ups for some, and every fifth event twice."""
    out = []
    for i in range(STORIES):
        out.append(event("matched", f"s{i:02d}", at=T0 + timedelta(minutes=i)).to_bytes())
        if i % 5 == 0:
            out.append(out[-1])
        if i < FOLLOW_UPS:
            at = T0 + timedelta(minutes=i, seconds=30)
            up = event("updated", f"s{i:02d}", revision=2, at=at, changes=["new_entities"], entities=["Rhine"])
            out.append(up.to_bytes())
    return out


def publish_slowly(bus_path: Path, values: list[bytes], done: threading.Event) -> None:
    bus = EmbeddedBus(bus_path)
    producer = bus.producer()
    try:
        for i in range(0, len(values), 3):
            for v in values[i : i + 3]:
                producer.publish("storywatch.story-events", None, v)
            producer.flush()
            time.sleep(0.15)
    finally:
        bus.close()
        done.set()


def start(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.alerts.crash_runner", str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_sigkill_at_random_points_sends_every_alert_once(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CRASH_SEED", "20260302")))
    secret = "crash-test-secret"
    with SMTPServer(tmp_dir=tmp_path) as smtp, WebhookReceiver(secret=secret.encode()) as rx:
        config = write_config(tmp_path, smtp)
        env = {**os.environ, "CRASH_HOOK_URL": rx.hook_url, "CRASH_HOOK_SECRET": secret, "PYTHONPATH": str(ROOT)}
        EmbeddedBus(tmp_path / "bus.db").close()
        published = threading.Event()
        feeder = threading.Thread(target=publish_slowly, args=(tmp_path / "bus.db", events(), published))
        feeder.start()
        kills = 0
        try:
            for _ in range(KILLS):
                proc = start(config, env)
                time.sleep(rng.uniform(0.0, 0.6))
                proc.kill()
                proc.wait()
                kills += 1
            published.wait(30)
            proc = start(config, env)
            expected = (STORIES + FOLLOW_UPS) * 2
            store = SQLiteStore(tmp_path / "state.db")
            deadline = time.monotonic() + 30
            while store.count("alerts.deliveries", tag="sent") < expected and time.monotonic() < deadline:
                time.sleep(0.1)
            proc.terminate()
            assert proc.wait(10) == 0
        finally:
            feeder.join(30)
            if proc.poll() is None:
                proc.kill()

        deliveries = {d["key"]: d for _, d in store.scan("alerts.deliveries")}
        store.close()
        want = {f"topic_match/floods:s{i:02d}:1" for i in range(STORIES)}
        want |= {f"follow_up:s{i:02d}:2" for i in range(FOLLOW_UPS)}
        missing = sorted({f"{k}|{c}" for k in want for c in ("mail", "hook")} - set(deliveries))
        assert not missing, missing
        assert {d["state"] for d in deliveries.values()} == {"sent"}

        mail = Counter(m.message["X-Storywatch-Key"] for m in smtp.messages)
        hook = Counter(c.key for c in rx.messages)
        assert set(mail) == {f"{k}|mail" for k in want}, "every alert arrived by email"
        assert set(hook) == {f"{k}|hook" for k in want}, "every alert arrived by webhook"
        assert rx.rejected == []
        repeats = [k for k, n in (mail + hook).items() if n > 1]
        assert all(deliveries[k]["uncertain"] for k in repeats), f"repeat outside the crash window: {repeats}"
        assert sum((mail + hook).values()) - len(mail) - len(hook) <= kills

        # Threads survive crashes: every follow-up email answers its story's first one.
        by_key = {m.message["X-Storywatch-Key"]: m.message for m in smtp.messages}
        for i in range(FOLLOW_UPS):
            root = by_key[f"topic_match/floods:s{i:02d}:1|mail"]
            assert by_key[f"follow_up:s{i:02d}:2|mail"]["In-Reply-To"] == root["Message-ID"]
        print(f"kills={kills} repeats={len(repeats)} uncertain={sum(d['uncertain'] for d in deliveries.values())}")
