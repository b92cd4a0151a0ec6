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


BAD_CONFIGS = {
    "duplicate-feed-names": (
        {"feeds.yaml": "feeds:\n  - {url: a.xml, name: World Wire}\n  - {url: b.xml, name: World Wire}\n"},
        "feeds.yaml: feeds.1.name: 'World Wire' is already the name of feeds.0",
    ),
    "feed-url-scheme": (
        {"feeds.yaml": "feeds:\n  - url: javascript:alert(1)\n"},
        "feeds.yaml: feeds.0.url: unsupported URL scheme 'javascript'",
    ),
    "webhook-url": (
        {"channels.yaml": "alerts:\n  channels:\n    hook: {kind: webhook, url: {env: SW_TEST_HOOK}}\n"},
        "channels.yaml: alerts.channels.hook.url: expected an http:// or https:// URL with a host",
    ),
    "template-directory": (
        {"channels.yaml": "alerts:\n  channels:\n    c: {kind: console, template: no-such-dir}\n"},
        "channels.yaml: alerts.channels.c.template: template directory",
    ),
}
HOOK = "htp:/127.0.0.1:18602/hook?token=sw-test-token-77d2"


@pytest.mark.parametrize(("files", "expected"), BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
@pytest.mark.parametrize("command", [["config", "check"], ["status", "--config"], ["feeds", "enable", "x", "--config"]])
def test_every_command_rejects_a_bad_config_with_exit_2(
    tmp_path: Path, files: dict[str, str], expected: str, command: list[str]
) -> None:
    main = tmp_path / "storywatch.yaml"
    main.write_text(f"include: {sorted(files)}\nstore: {{path: state.db}}\nbus: {{path: bus.db}}\n")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "storywatch", *command, str(main)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "SW_TEST_HOOK": HOOK},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr and "sw-test-token" not in proc.stdout + proc.stderr
    assert not (tmp_path / "state.db").exists()


def test_feeds_import_into_a_file_without_the_feeds_section_exits_2(tmp_path: Path) -> None:
    (tmp_path / "storywatch.yaml").write_text("include: [feeds.yaml, channels.yaml]\n")
    (tmp_path / "feeds.yaml").write_text("feeds:\n  - url: a.xml\n")
    (tmp_path / "channels.yaml").write_text("# channels\nalerts: {}\n")
    (tmp_path / "subs.opml").write_text('<opml><body><outline text="X" xmlUrl="https://x.example/rss"/></body></opml>')
    proc = sw("feeds", "import", "subs.opml", "--config", "storywatch.yaml", "--into", "channels.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"storywatch: channels.yaml: feeds: is defined in {tmp_path.resolve() / 'feeds.yaml'}; "
        "import into that file (or leave out --into)"
    ]
    assert (tmp_path / "channels.yaml").read_text() == "# channels\nalerts: {}\n"


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


def test_commands_that_send_nothing_run_without_the_channels_secrets(tmp_path: Path) -> None:
    """An operator reading the delivery log from another shell need not hold the webhook URL;
    the stages that send, and config check, still require it."""
    import os

    cfg = tmp_path / "storywatch.yaml"
    cfg.write_text(
        "alerts:\n  channels:\n    ops:\n      kind: slack\n      webhook_url: {env: SW_TEST_UNSET_WEBHOOK}\n"
        "    mail:\n      kind: email\n      host: 127.0.0.1\n      from_addr: a@example.org\n"
        "      to: [b@example.org]\n      username: u\n      password: {file: /nonexistent/sw-password}\n"
    )
    cfg.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k != "SW_TEST_UNSET_WEBHOOK"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "storywatch", *args, "--config", str(cfg)],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
        )

    for args in (["status"], ["alerts", "list"], ["feeds", "enable", "nothing-by-this-name"]):
        proc = run(*args)
        assert proc.returncode != 2 and "is not set" not in proc.stderr, (args, proc.stderr)
    for args in (["alerts", "--once"],):
        proc = run(*args)
        assert proc.returncode == 2 and "environment variable SW_TEST_UNSET_WEBHOOK is not set" in proc.stderr
    check = subprocess.run(
        [sys.executable, "-m", "storywatch", "config", "check", str(cfg)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
    )
    assert check.returncode == 2 and "cannot read secret file /nonexistent/sw-password" in check.stderr
