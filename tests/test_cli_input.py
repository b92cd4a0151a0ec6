"""Bad input to the offline commands: one line naming the file (and line), exit 2, no traceback.

Each case runs the real ``storywatch`` command in a subprocess, in a directory without a
config file, over files written to ``tmp_path``. The errors come before any model is
loaded, so these runs take a second or two each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOOD = b'{"id": "a1", "title": "Quake hits coast", "published": "2026-03-02T06:00:00Z"}\n'
NOT_UTF8 = b'{"id": "a2", "title": "caf\xe9 \xff", "published": "2026-03-02T07:00:00Z"}\n'


def sw(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("STORYWATCH_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "storywatch", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def commands(tmp_path: Path, data: Path, out: Path) -> dict[str, list[str]]:
    """Each command that reads an article file, over ``data``, writing (if it writes) ``out``."""
    (tmp_path / "topics.yaml").write_text("- name: earthquakes\n")
    (tmp_path / "new.yaml").write_text("{}\n")
    return {
        "replay": ["replay", "--input", str(data), "--assignments", str(out)],
        "topics score": ["topics", "score", "--topics", "topics.yaml", "--input", str(data), "--out", str(out)],
        "eval clustering": ["eval", "clustering", "--input", str(data)],
        "backtest": ["backtest", "--config", "new.yaml", "--input", str(data)],
    }


@pytest.mark.parametrize("command", ["replay", "topics score", "eval clustering", "backtest"])
def test_input_that_is_not_utf8_names_file_and_line(tmp_path: Path, command: str) -> None:
    data = tmp_path / "latin1.jsonl"
    data.write_bytes(GOOD + b"\n" + NOT_UTF8)
    proc = sw(tmp_path, *commands(tmp_path, data, tmp_path / "out.jsonl")[command])
    assert proc.returncode == 2, proc.stderr
    output = proc.stdout + proc.stderr
    assert f"{data}:3: not UTF-8 (byte 0xe9" in output
    assert "Traceback" not in output
    assert not (tmp_path / "out.jsonl").exists()


UNWRITABLE = [
    ("in /proc", lambda tmp: Path("/proc/storywatch-test/out.jsonl")),
    ("a directory", lambda tmp: tmp),
    ("parent is a file", lambda tmp: tmp / "articles.jsonl" / "out.jsonl"),
]


@pytest.mark.parametrize("command", ["replay", "topics score"])
@pytest.mark.parametrize("where", [u[1] for u in UNWRITABLE], ids=[u[0] for u in UNWRITABLE])
def test_an_output_that_cannot_be_written_fails_before_the_work(tmp_path: Path, command: str, where: Any) -> None:
    """The output is opened before the model is loaded: with a model that does not exist,
    the error is still about the output."""
    data = tmp_path / "articles.jsonl"
    data.write_bytes(GOOD)
    config = tmp_path / "no-model.yaml"
    config.write_text("enrich:\n  embed:\n    model: /nonexistent/model\n")
    config.chmod(0o600)
    out = where(tmp_path)
    proc = sw(tmp_path, *commands(tmp_path, data, out)[command], "--config", str(config))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"storywatch: {out}: cannot write: "), proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr


def test_accepted_input_problems_are_warnings_not_errors(tmp_path: Path) -> None:
    """Through the real command: a repeated id, a title that is a list and a published
    that is not a time are warned about with file and line, and replay still writes one
    line per input line, each id as given."""
    data = tmp_path / "articles.jsonl"
    data.write_bytes(
        GOOD
        + b'{"id": 7, "title": ["Quake", "aftershock"], "published": "yesterday"}\n'
        + b'{"id": "a1", "title": "Quake hits coast again", "published": null}\n'
    )
    out = tmp_path / "out" / "assignments.jsonl"
    proc = sw(tmp_path, *commands(tmp_path, data, out)["replay"])
    assert proc.returncode == 0, proc.stderr
    assert f"storywatch: warning: {data}:2: title: expected a string, got a list" in proc.stderr
    assert f"storywatch: warning: {data}:2: published: not a time ('yesterday')" in proc.stderr
    assert f'storywatch: warning: {data}: 1 line repeats the id of an earlier line: "a1" (line 3)' in proc.stderr
    assert "Traceback" not in proc.stderr
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a1", 7, "a1"]


def test_a_model_path_that_is_not_there_is_a_config_error(tmp_path: Path) -> None:
    data = tmp_path / "articles.jsonl"
    data.write_bytes(GOOD)
    (tmp_path / "sw.yaml").write_text("enrich:\n  embed:\n    model: /nonexistent/storywatch-model\n")
    proc = sw(tmp_path, "replay", "--config", "sw.yaml", "--input", str(data), "--assignments", "out.jsonl")
    assert proc.returncode == 2, proc.stderr
    assert "enrich.embed.model: cannot load the embedding model '/nonexistent/storywatch-model'" in proc.stderr
    assert "Traceback" not in proc.stderr
