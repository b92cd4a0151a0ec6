"""The three stages as separate processes, over a real bus, delivering to real servers.

Feeds come from a local HTTP server serving seeds/feeds; alerts must reach a real SMTP
server (aiosmtpd) and a local Slack stand-in, exactly once each. The same test runs on
the embedded bus (three processes sharing the log file), on the Kafka-protocol broker,
and there again with enrich split as docker-compose.yml runs it: two embed workers and
one story writer.
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
from collections.abc import Iterable, Iterator
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


# Each service: a name and its storywatch command.
STAGES = {"ingest": ["ingest"], "enrich": ["enrich"], "alerts": ["alerts"]}
SPLIT = {
    "ingest": ["ingest"],
    "embed-1": ["enrich", "--role", "embed"],
    "embed-2": ["enrich", "--role", "embed"],
    "cluster": ["enrich", "--role", "cluster"],
    "alerts": ["alerts"],
}


def _run_stages(
    tmp: Path, cfg: Path, slack: SlackServer, services: dict[str, list[str]]
) -> dict[str, subprocess.Popen[str]]:
    procs = {}
    for name, command in services.items():
        env = dict(
            os.environ,
            HF_HUB_OFFLINE="1",
            SW_E2E_SLACK_WEBHOOK=slack.webhook_url,
            # Each stage is its own service with its own state, as on separate machines.
            STORYWATCH__STORE__PATH=str(tmp / f"{name}-state.db"),
        )
        log = open(tmp / f"{name}.log", "w")
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "storywatch", *command, "--config", str(cfg)],
            env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )
    return procs


def _stop(procs: dict[str, subprocess.Popen[str]], tmp: Path) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for name, p in procs.items():
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            pytest.fail(f"{name} did not stop within 60 s of SIGTERM:\n{(tmp / f'{name}.log').read_text()[-3000:]}")


def _logs(tmp: Path, names: Iterable[str]) -> str:
    return "\n".join(f"--- {s}\n{(tmp / f'{s}.log').read_text()[-2500:]}" for s in names)


def _missile_emails(smtp: SMTPServer) -> list[str]:
    return [str(m.message["Subject"]) for m in smtp.messages if "north korea" in str(m.message["Subject"]).lower()]


def _pipeline(tmp: Path, feed_base: str, bus: dict[str, object], services: dict[str, list[str]] = STAGES) -> None:
    with SMTPServer() as smtp, SlackServer() as slack:
        cfg = _config(tmp, feed_base, smtp, bus)
        procs = _run_stages(tmp, cfg, slack, services)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if _missile_emails(smtp) and any("North Korea" in m.text for m in slack.messages):
                    break
                dead = [name for name, p in procs.items() if p.poll() is not None]
                assert not dead, f"{dead} exited early:\n{_logs(tmp, services)}"
                time.sleep(0.5)
            else:
                pytest.fail(f"no missile alert within 300 s:\n{_logs(tmp, services)}")
            # Let the stages run a few more poll rounds: nothing may arrive twice.
            time.sleep(8)
        finally:
            _stop(procs, tmp)
        assert {name: p.returncode for name, p in procs.items()} == dict.fromkeys(services, 0), _logs(tmp, services)
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


def _kafka(bootstrap: str) -> dict[str, object]:
    suffix = uuid.uuid4().hex[:8]
    names = ("raw_articles", "embedded_articles", "story_events", "feed_health", "alerts", "dead_letters")
    return {
        "kind": "kafka",
        "bootstrap_servers": [bootstrap],
        "max_poll_interval_ms": 3000,
        "partitions": 2,
        "topics": {name: f"e2e-{suffix}.{name}" for name in names},
    }


@pytest.mark.slow
@pytest.mark.kafka
def test_pipeline_on_kafka(tmp_path: Path, feed_server: str, kafka_broker: str) -> None:
    _pipeline(tmp_path, feed_server, _kafka(kafka_broker))


@pytest.mark.slow
@pytest.mark.kafka
def test_pipeline_on_kafka_with_embed_workers_and_one_story_writer(
    tmp_path: Path, feed_server: str, kafka_broker: str
) -> None:
    _pipeline(tmp_path, feed_server, _kafka(kafka_broker), SPLIT)
    embedded = [(tmp_path / f"embed-{i}.log").read_text() for i in (1, 2)]
    assert all("Traceback" not in log for log in embedded)
