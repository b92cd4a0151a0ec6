"""The probes and metrics a stage service serves, over real HTTP from a real process."""

from __future__ import annotations

import json
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from storywatch.observe import Health, Metrics, ObserveServer


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _hang_up_mid_request(port: int) -> None:
    """Send half a request line, then reset the connection (SO_LINGER 0)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(b"GET /metr")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_probes_and_metrics_survive_clients_that_hang_up(capfd) -> None:  # type: ignore[no-untyped-def]
    health, metrics = Health(stall_after_s=60), Metrics()
    server = ObserveServer(metrics, health, port=0).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert _get(f"{base}/readyz")[0] == 503, "not ready before any stage said so"
        health.set_ready("ingest")
        health.beat("ingest")
        metrics.articles_in.inc(3)
        for _ in range(5):
            _hang_up_mid_request(server.port)
        status, body = _get(f"{base}/readyz")
        assert (status, json.loads(body)) == (200, {"ok": True, "stages": {"ingest": True}})
        assert _get(f"{base}/healthz")[0] == 200
        status, body = _get(f"{base}/metrics")
        assert status == 200 and "storywatch_articles_published_total 3.0" in body
        assert _get(f"{base}/nope")[0] == 404
    finally:
        server.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ConnectionResetError" not in err, err


def test_a_stage_service_serves_its_probes_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    config = tmp_path / "storywatch.yaml"
    config.write_text(
        "bus: {kind: embedded, path: bus.db}\n"
        "store: {kind: sqlite, path: state.db}\n"
        f"http: {{enabled: true, port: {port}}}\n"
        "alerts:\n  channels: {file: {kind: file, path: alerts.jsonl}}\n  default_channels: [file]\n"
        "  operator_channels: [file]\n"
    )
    log = tmp_path / "alerts.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "storywatch", "alerts", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if _get(f"http://127.0.0.1:{port}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"never ready:\n{log.read_text()}"
            time.sleep(0.2)
        _hang_up_mid_request(port)
        assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        status, body = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "storywatch_records_consumed" in body
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()
