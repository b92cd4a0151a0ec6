"""The three stages as separate processes, over a real bus, delivering to real servers.

Feeds come from a local HTTP server serving seeds/feeds; alerts must reach a real SMTP
server (aiosmtpd) and a local Slack stand-in, exactly once each. The same test runs on
the embedded bus (three processes sharing the log file) and on the Kafka-protocol broker.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.servers import SlackServer, SMTPServer

ROOT = Path(__file__).resolve().parents[2]
FEEDS = ROOT / "seeds" / "feeds"


@pytest.fixture
def feed_server() -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(FEEDS))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _config(tmp: Path, feed_base: str, smtp: SMTPServer, bus: dict[str, object]) -> Path:
    cfg = {
        "bus": bus,
        "ingest": {"tick_s": 1, "min_interval_s": 5, "default_interval_s": 30, "per_host_min_gap_s": 0},
        "feeds": [{"url": f"{feed_base}/{p.name}"} for p in sorted(FEEDS.iterdir()) if p.is_file()],
        "topics": [
            {
                "name": "missile launches",
                "description": "A country test-fires or launches ballistic or cruise missiles.",
                "examples": ["North Korea fires ballistic missile into the sea"],
                "counter_examples": ["Rocket company launches communications satellites into orbit"],
                "severity": "high",
                "channels": ["email", "slack"],
            }
        ],
        "alerts": {
            "channels": {
                "email": {
                    "kind": "email",
                    "host": smtp.host,
                    "port": smtp.port,
                    "security": "none",
                    "from_addr": "storywatch@example.org",
                    "to": ["analyst@example.org"],
                },
                "slack": {"kind": "slack", "webhook_url": {"env": "SW_E2E_SLACK_WEBHOOK"}},
            },
            "default_channels": ["email"],
            "operator_channels": ["email"],
        },
    }
    path = tmp / "storywatch.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run_stages(tmp: Path, cfg: Path, slack: SlackServer) -> list[subprocess.Popen[str]]:
    procs = []
    for stage in ("ingest", "enrich", "alerts"):
        env = dict(
            os.environ,
            HF_HUB_OFFLINE="1",
            SW_E2E_SLACK_WEBHOOK=slack.webhook_url,
            # Each stage is its own service with its own state, as on separate machines.
            STORYWATCH__STORE__PATH=str(tmp / f"{stage}-state.db"),
        )
        log = open(tmp / f"{stage}.log", "w")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "storywatch", stage, "--config", str(cfg)],
                env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
            )
        )
    return procs


def _stop(procs: list[subprocess.Popen[str]], tmp: Path) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p, stage in zip(procs, ("ingest", "enrich", "alerts"), strict=True):
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            pytest.fail(f"{stage} did not stop within 60 s of SIGTERM:\n{(tmp / f'{stage}.log').read_text()[-3000:]}")


def _logs(tmp: Path) -> str:
    return "\n".join(f"--- {s}\n{(tmp / f'{s}.log').read_text()[-2500:]}" for s in ("ingest", "enrich", "alerts"))


def _missile_emails(smtp: SMTPServer) -> list[str]:
    return [str(m.message["Subject"]) for m in smtp.messages if "north korea" in str(m.message["Subject"]).lower()]


def _pipeline(tmp: Path, feed_base: str, bus: dict[str, object]) -> None:
    with SMTPServer() as smtp, SlackServer() as slack:
        cfg = _config(tmp, feed_base, smtp, bus)
        procs = _run_stages(tmp, cfg, slack)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if _missile_emails(smtp) and any("North Korea" in m.text for m in slack.messages):
                    break
                dead = [p for p in procs if p.poll() is not None]
                assert not dead, f"a stage exited early:\n{_logs(tmp)}"
                time.sleep(0.5)
            else:
                pytest.fail(f"no missile alert within 300 s:\n{_logs(tmp)}")
            # Let the stages run a few more poll rounds: nothing may arrive twice.
            time.sleep(8)
        finally:
            _stop(procs, tmp)
        assert [p.returncode for p in procs] == [0, 0, 0], _logs(tmp)
        email_keys = [str(m.message["X-Storywatch-Key"]) for m in smtp.messages]
        slack_keys = [k for m in slack.messages for k in re.findall(r"storywatch `([^`]+)`", json.dumps(m.blocks))]
        assert len(slack_keys) == len(slack.messages), "every Slack message carries its idempotency key"
        for keys in (email_keys, slack_keys):
            assert len(keys) == len(set(keys)), f"an alert was delivered twice: {keys}"
            # One first alert for the launch: all its reports formed one story, alerted once
            # (follow-ups on material change may come after it, in the same thread).
            firsts = [k for k in keys if "missile launches" in k and not k.startswith("follow_up")]
            assert len(firsts) == 1, keys
        msg = next(m.message for m in smtp.messages if "north korea" in str(m.message["Subject"]).lower())
        assert msg["Message-ID"], "each alert carries a stable Message-ID"
        assert msg.get_body(preferencelist=("html",)) is not None, "multipart text and HTML"


@pytest.mark.slow
def test_pipeline_on_embedded_bus(tmp_path: Path, feed_server: str) -> None:
    _pipeline(tmp_path, feed_server, {"kind": "embedded", "path": str(tmp_path / "bus.db")})


@pytest.mark.slow
@pytest.mark.kafka
def test_pipeline_on_kafka(tmp_path: Path, feed_server: str, kafka_broker: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    bus = {
        "kind": "kafka",
        "bootstrap_servers": [kafka_broker],
        "max_poll_interval_ms": 3000,
        "partitions": 2,
        "topics": {
            name: f"e2e-{suffix}.{name}"
            for name in ("raw_articles", "story_events", "feed_health", "alerts", "dead_letters")
        },
    }
    _pipeline(tmp_path, feed_server, bus)
