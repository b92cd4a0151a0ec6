"""The Kafka broker stopped and started again under a running stage.

Decision (documented in bench/faults-results.md): a stage is a supervised service. While
the broker is away, kafka-python retries with bounded backoff; a stage that cannot reach
the broker within its bounds exits with code 3 and a "service unavailable" log line
naming the bootstrap servers, for its supervisor (systemd, Docker, Kubernetes) to
restart it; its state is in the store and the committed offsets, so a restart loses
nothing. A stage that rides the outage out must carry on once the broker is back. This
test accepts exactly those two outcomes and nothing else (no hang, no other exit code).

tansu keeps everything in memory, so the restarted broker is empty: the test publishes
new events after the restart rather than checking durability (that is the embedded
bus's job in test_kill_restart).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from storywatch.bus.kafka import KafkaBus
from storywatch.settings import load_settings
from tests.alerts.conftest import event
from tests.kafka_broker import TansuBroker

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, bootstrap: str) -> Path:
    suffix = uuid.uuid4().hex[:8]
    cfg = {
        "bus": {
            "kind": "kafka", "bootstrap_servers": [bootstrap], "partitions": 1,
            "max_poll_interval_ms": 3000, "session_timeout_ms": 3000, "request_timeout_ms": 5000,
            "topics": {n: f"restart-{suffix}.{n}" for n in
                       ("raw_articles", "story_events", "feed_health", "alerts", "dead_letters")},
        },
        "store": {"path": str(tmp_path / "state.db")},
        "http": {"enabled": False},
        "topics": [{"name": "floods", "min_sources": 1}],
        "alerts": {
            "group": f"restart-alerts-{suffix}",
            "channels": {"file": {"kind": "file", "path": str(tmp_path / "alerts.jsonl")}},
            "default_channels": ["file"], "operator_channels": ["file"],
        },
    }
    path = tmp_path / "storywatch.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _publish(config: Path, story_id: str) -> None:
    settings = load_settings(config)
    bus = KafkaBus(settings.resolved_bus())
    try:
        bus.ensure_topics([settings.bus.topics.story_events])
        producer = bus.producer()
        producer.publish(settings.bus.topics.story_events, story_id, event(story_id=story_id).to_bytes())
        producer.flush()
    finally:
        bus.close()


def _alerted(tmp_path: Path, story_id: str, within_s: float) -> bool:
    path = tmp_path / "alerts.jsonl"
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if path.exists() and any(
            json.loads(line)["alert"].get("story_id") == story_id for line in path.read_text().splitlines()
        ):
            return True
        time.sleep(0.3)
    return False


@pytest.mark.slow
@pytest.mark.kafka
def test_broker_restart_under_a_running_stage(tmp_path: Path) -> None:
    broker = TansuBroker().start()
    log = open(tmp_path / "alerts.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "storywatch", "alerts", "--config", str(_config(tmp_path, broker.bootstrap))],
        cwd=ROOT, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        config = tmp_path / "storywatch.yaml"
        _publish(config, "before")
        assert _alerted(tmp_path, "before", 90), (tmp_path / "alerts.log").read_text()[-3000:]

        broker.stop()  # the broker goes away
        time.sleep(8)
        # Back on the same port, answering; if it cannot bind, say so rather than wait for alerts.
        broker.start(port=broker.port)

        try:
            code = proc.wait(120) if proc.poll() is not None else None
        except subprocess.TimeoutExpired:
            code = None
        if proc.poll() is None:
            # It rode the outage out: it must carry on with the broker back.
            # The empty broker restarts the topic at offset 0 while the consumer's position
            # is past "before"; a real broker keeps the log. Publish past that position.
            for i in range(3):
                _publish(config, f"after{i}")
            assert _alerted(tmp_path, "after2", 120), (tmp_path / "alerts.log").read_text()[-3000:]
            outcome = "survived"
        else:
            code = proc.returncode
            text = (tmp_path / "alerts.log").read_text()
            assert code == 3, text[-3000:]
            assert "service unavailable" in text and broker.bootstrap in text, text[-3000:]
            outcome = "exit 3"
        print(f"broker restart: {outcome}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        broker.close()
        log.close()
