"""Headless Chromium (Debian's package) driven from the command line: DOM dumps and screenshots.

Chromium is part of the test environment (``scripts/setup.sh`` installs it as root);
a test that needs it and cannot find it fails with that instruction, it never skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]
_TIMEOUT_S = 120


def chromium_path() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if found is None:
        pytest.fail("chromium is not installed: run scripts/setup.sh as root (it installs Debian's chromium)")
    return found


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        return subprocess.run(
            [chromium_path(), *_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )


def dump_dom(url: str) -> str:
    """The page's DOM after it loaded, serialised (what a person's browser would show)."""
    proc = _run(["--dump-dom", url])
    assert proc.returncode == 0, f"chromium --dump-dom {url} exited {proc.returncode}: {proc.stderr[-2000:]}"
    return proc.stdout


def screenshot(url: str, out: Path, size: tuple[int, int] = (1280, 900)) -> Path:
    """A PNG of the page at ``size``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = _run([f"--screenshot={out}", f"--window-size={size[0]},{size[1]}", url])
    assert proc.returncode == 0 and out.exists(), f"chromium --screenshot {url} failed: {proc.stderr[-2000:]}"
    return out
