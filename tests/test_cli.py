"""The CLI's contract: help on every command, config check, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def sw(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "storywatch", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "command",
    [
        ["run"], ["ingest"], ["enrich"], ["alerts"], ["alerts", "list"], ["alerts", "retry"],
        ["config", "check"], ["config", "reference"], ["feeds", "check"], ["feeds", "import"], ["replay"],
        ["topics", "score"], ["eval", "clustering"], ["status"], ["web"], ["backtest"],
    ],
    ids=lambda c: " ".join(c),
)
def test_every_command_has_help(command: list[str]) -> None:
    proc = sw(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout


def test_stage_commands_take_config_and_once() -> None:
    for stage in ("run", "ingest", "enrich", "alerts"):
        out = sw(stage, "--help").stdout
        assert "--config" in out and "--once" in out, stage


def test_config_check_accepts_the_default_config() -> None:
    proc = sw("config", "check")
    assert proc.returncode == 0, proc.stderr
    assert "config OK" in proc.stdout


def test_config_check_names_file_key_and_expectation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("bus:\n  kind: kafak\nstore:\n  pathh: x.db\n")
    proc = sw("config", "check", str(bad))
    assert proc.returncode == 2
    assert f"{bad}: bus.kind: Input should be 'embedded' or 'kafka' (got 'kafak')" in proc.stderr
    assert f"{bad}: store.pathh: Extra inputs are not permitted" in proc.stderr


def test_config_print_masks_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "alerts:\n  channels:\n    slack:\n      kind: slack\n      webhook_url: {env: SW_TEST_HOOK}\n"
    )
    env_secret = "https://hooks.example.invalid/very-secret-value"
    proc = subprocess.run(
        [sys.executable, "-m", "storywatch", "config", "check", str(cfg), "--print"],
        capture_output=True, text=True, timeout=60,
        env={**__import__("os").environ, "SW_TEST_HOOK": env_secret},
    )
    assert proc.returncode == 0, proc.stderr
    assert env_secret not in proc.stdout + proc.stderr
    assert "**********" in proc.stdout


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    proc = sw("run", "--once", "--config", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2
    assert "file not found" in proc.stderr


def test_ctrl_c_exits_130(tmp_path: Path) -> None:
    """A command interrupted before it could finish says so and exits 130 (services stop
    cleanly on SIGINT instead, see tests/e2e)."""
    import json
    import signal
    import time

    data = tmp_path / "articles.jsonl"
    rows = (
        {"id": f"a{i}", "title": f"Report {i} on event {i % 97}", "text": "", "story": str(i % 97),
         "published": "2026-01-01T00:00:00Z"}
        for i in range(20_000)
    )
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = subprocess.Popen(
        [sys.executable, "-m", "storywatch", "eval", "clustering", "--input", str(data)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(4)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err


@pytest.mark.parametrize("port", ["-1", "65536", "99999"])
def test_web_rejects_a_port_out_of_range(port: str) -> None:
    """An impossible port is a usage error (exit 2), not an OverflowError or a wrapped port."""
    proc = sw("web", "--port", port)
    assert proc.returncode == 2, proc.stderr
    assert "Invalid value for '--port'" in proc.stderr and "0<=x<=65535" in proc.stderr
    assert "Traceback" not in proc.stderr
