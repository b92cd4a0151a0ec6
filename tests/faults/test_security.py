"""File-permission warnings for config, secrets files and state (storywatch.security)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from storywatch.security import check_permissions, secret_files, sensitive_paths
from storywatch.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("mode", "warned"),
    [(0o600, False), (0o640, False), (0o644, True), (0o660, True), (0o604, True), (0o400, False)],
    ids=["owner-only", "group-read", "world-read", "group-write", "other-read-only", "read-only-owner"],
)
def test_check_permissions_by_mode(tmp_path: Path, mode: int, warned: bool) -> None:
    f = tmp_path / "f.yaml"
    f.write_text("x: 1")
    f.chmod(mode)
    warnings = check_permissions([f])
    assert bool(warnings) == warned
    if warned:
        assert str(f) in warnings[0] and f"{mode:04o}" in warnings[0]


def test_missing_paths_are_skipped(tmp_path: Path) -> None:
    assert check_permissions([tmp_path / "nope.db"]) == []


def _setup(tmp_path: Path) -> Path:
    secret = tmp_path / "smtp-password"
    secret.write_text("hunter2")
    cfg = {
        "bus": {"path": str(tmp_path / "bus.db")},
        "store": {"path": str(tmp_path / "state.db")},
        "alerts": {
            "channels": {
                "mail": {
                    "kind": "email", "host": "127.0.0.1", "port": 25, "security": "none",
                    "from_addr": "a@example.org", "to": ["b@example.org"],
                    "username": "u", "password": {"file": str(secret)},
                }
            },
        },
    }
    path = tmp_path / "storywatch.yaml"
    path.write_text(yaml.safe_dump(cfg))
    for p in (path, secret):
        p.chmod(0o600)
    (tmp_path / "bus.db").write_bytes(b"")
    (tmp_path / "bus.db").chmod(0o600)
    return path


def test_sensitive_paths_cover_config_secret_files_and_state(tmp_path: Path) -> None:
    cfg = _setup(tmp_path)
    paths = sensitive_paths(cfg, load_settings(cfg))
    assert secret_files(cfg) == [tmp_path / "smtp-password"]
    for want in (cfg, tmp_path / "smtp-password", tmp_path / "bus.db", tmp_path / "state.db"):
        assert want in paths
    assert check_permissions(paths) == []
    (tmp_path / "smtp-password").chmod(0o644)
    (tmp_path / "bus.db").chmod(0o660)
    warned = check_permissions(paths)
    assert len(warned) == 2
    assert "smtp-password" in warned[0] and "bus.db" in warned[1]
    assert "hunter2" not in "".join(warned)


def test_cli_logs_a_warning_per_insecure_path(tmp_path: Path) -> None:
    cfg = _setup(tmp_path)
    (tmp_path / "smtp-password").chmod(0o644)
    out = subprocess.run(
        [sys.executable, "-m", "storywatch", "alerts", "list", "--config", str(cfg)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "STORYWATCH__LOG__FORMAT": "json"},
        timeout=60,
    )
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if "insecure file permissions" in ln]
    assert len(lines) == 1, out.stdout + out.stderr
    assert "smtp-password" in lines[0] and "0644" in lines[0]
    assert "hunter2" not in out.stdout + out.stderr


def test_a_fresh_start_under_umask_022_creates_private_state(tmp_path: Path) -> None:
    """The store and bus files storywatch creates are 0600 whatever the umask, so only a
    loose config (or secrets file) draws a warning."""
    cfg = _setup(tmp_path)
    (tmp_path / "bus.db").unlink()
    run = [sys.executable, "-c", "import os; os.umask(0o022); from storywatch.cli import main; main()",
           "alerts", "list", "--config", str(cfg)]
    out = subprocess.run(run, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "insecure file permissions" not in out.stdout + out.stderr
    assert (tmp_path / "state.db").stat().st_mode & 0o777 == 0o600
    cfg.chmod(0o644)
    again = subprocess.run(run, capture_output=True, text=True, cwd=ROOT, timeout=60)
    warned = [ln for ln in (again.stdout + again.stderr).splitlines() if "insecure file permissions" in ln]
    assert len(warned) == 1 and "storywatch.yaml" in warned[0]



def test_included_configs_and_their_secret_files_are_checked_too(tmp_path: Path) -> None:
    cfg = _setup(tmp_path)
    data = yaml.safe_load(cfg.read_text())
    (tmp_path / "channels.yaml").write_text(yaml.safe_dump({"alerts": data.pop("alerts")}))
    cfg.write_text(yaml.safe_dump({**data, "include": ["channels.yaml"]}))
    assert secret_files(cfg) == [], "the secret is referenced from the included file only"
    paths = sensitive_paths(cfg, load_settings(cfg))
    (tmp_path / "channels.yaml").chmod(0o600)
    cfg.chmod(0o600)
    assert check_permissions(paths) == []
    for p in (tmp_path / "channels.yaml", tmp_path / "smtp-password"):
        p.chmod(0o644)
    warned = check_permissions(paths)
    assert any("channels.yaml" in w for w in warned) and any("smtp-password" in w for w in warned)
    assert "hunter2" not in "".join(warned)
