"""The quick start, exactly as the README gives it: the offline demo raises the missile alert."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STORYWATCH = [sys.executable, "-m", "storywatch"]


@pytest.fixture
def demo_dir(tmp_path: Path) -> Path:
    """A copy of config/ and seeds/, so the demo's var/ lands in a temp dir."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    shutil.copytree(ROOT / "seeds", tmp_path / "seeds")
    return tmp_path


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("STORYWATCH_CONFIG", None)
    return env


def test_run_once_raises_the_missile_launch_alert(demo_dir: Path) -> None:
    proc = subprocess.run(
        [*STORYWATCH, "run", "--once"], cwd=demo_dir, env=_env(), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "North Korea" in proc.stdout, proc.stdout[-3000:]
    lines = (demo_dir / "var" / "alerts.jsonl").read_text().splitlines()
    alerts = [json.loads(line)["alert"] for line in lines]
    missile = [a for a in alerts if a.get("topic") == "missile launches"]
    assert len(missile) == 1, alerts
    assert "north korea" in missile[0]["headline"].lower()
    assert missile[0]["source_count"] >= 2

    # A second round over the same feeds sends nothing again: once per story.
    again = subprocess.run(
        [*STORYWATCH, "run", "--once"], cwd=demo_dir, env=_env(), capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    lines_after = (demo_dir / "var" / "alerts.jsonl").read_text().splitlines()
    assert len(lines_after) == len(lines)


def test_run_stops_cleanly_on_sigterm(demo_dir: Path) -> None:
    proc = subprocess.Popen(
        [*STORYWATCH, "run"], cwd=demo_dir, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    alerts_file = demo_dir / "var" / "alerts.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not alerts_file.exists() and proc.poll() is None:
        time.sleep(0.5)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "stopped" in err
    assert alerts_file.exists()
