"""Secrets stay secret: the whole pipeline runs with known secret values and none of them
appears in any log line, stdout, stderr, ``config check --print``, ``status --json``, the
alerts file or the alerts the receivers got.

Secrets: the SMTP password (AUTH over STARTTLS on the test SMTP server), a token in the
Slack webhook URL's path, a token in the webhook URL's query, the webhook signing secret,
and a Kafka SASL password that is set but unused on the embedded bus.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.servers import SlackServer, SMTPServer, WebhookReceiver

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "SW_T_SMTP_PASSWORD": "smtp-pw-Q7v9Zk2Lx",
    "SW_T_SLACK_TOKEN": "slacktok3nXYZ81q",
    "SW_T_HOOK_TOKEN": "hookurltoken55Rb",
    "SW_T_HOOK_SIGNING": "hooksign-S3cr3t-JJ",
    "SW_T_SASL_PASSWORD": "sasl-pw-Kafka42Zz",
}


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "storywatch", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_no_secret_leaks_anywhere(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    shutil.copytree(ROOT / "seeds", tmp_path / "seeds")
    topics_file = tmp_path / "config" / "topics.yaml"
    topics = yaml.safe_load(topics_file.read_text())
    for topic in topics["topics"]:
        topic.pop("channels", None)  # every topic alerts on the default channels: all of them
    topics_file.write_text(yaml.safe_dump(topics))
    signing = SECRETS["SW_T_HOOK_SIGNING"].encode()
    with (
        SMTPServer(auth=("storywatch", SECRETS["SW_T_SMTP_PASSWORD"]), starttls=True, tmp_dir=tmp_path) as smtp,
        SlackServer() as slack,
        WebhookReceiver(secret=signing) as rx,
    ):
        cfg = {
            "include": ["feeds.yaml", "topics.yaml"],
            "log": {"level": "DEBUG", "format": "json"},
            "bus": {"kind": "embedded", "path": "../var/bus.db", "sasl_username": "sw",
                    "sasl_password": {"env": "SW_T_SASL_PASSWORD"}},
            "store": {"path": "../var/state.db"},
            "http": {"enabled": False},
            "alerts": {
                "channels": {
                    "email": {"kind": "email", "host": "localhost", "port": smtp.port, "security": "starttls",
                              "ca_file": str(smtp.ca_file), "username": "storywatch",
                              "password": {"env": "SW_T_SMTP_PASSWORD"},
                              "from_addr": "sw@example.org", "to": ["desk@example.org"]},
                    "slack": {"kind": "slack", "webhook_url": {"env": "SW_T_SLACK_URL"}},
                    "hook": {"kind": "webhook", "url": {"env": "SW_T_HOOK_URL"},
                             "signing_secret": {"env": "SW_T_HOOK_SIGNING"}},
                    "console": {"kind": "console"},
                    "file": {"kind": "file", "path": "../var/alerts.jsonl"},
                },
                "default_channels": ["email", "slack", "hook", "console", "file"],
                "operator_channels": ["console"],
            },
        }
        config = tmp_path / "config" / "secrets-run.yaml"
        config.write_text(yaml.safe_dump(cfg))
        config.chmod(0o600)
        env = {
            **os.environ,
            **SECRETS,
            "HF_HUB_OFFLINE": "1",
            "SW_T_SLACK_URL": f"{slack.url}/services/T000/B000/{SECRETS['SW_T_SLACK_TOKEN']}",
            "SW_T_HOOK_URL": f"{rx.hook_url}?token={SECRETS['SW_T_HOOK_TOKEN']}",
        }
        env.pop("STORYWATCH_CONFIG", None)
        outputs = {}
        run = _run(["run", "--once", "--config", str(config)], env, tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
        outputs["run"] = run.stdout + run.stderr
        check = _run(["config", "check", "--print", str(config)], env, tmp_path)
        assert check.returncode == 0, check.stderr
        outputs["config check --print"] = check.stdout + check.stderr
        status = _run(["status", "--json", "--config", str(config)], env, tmp_path)
        outputs["status --json"] = status.stdout + status.stderr
        listing = _run(["alerts", "list", "--json", "--config", str(config)], env, tmp_path)
        outputs["alerts list --json"] = listing.stdout + listing.stderr

        assert smtp.messages and slack.messages and rx.messages, outputs["run"][-4000:]
        assert rx.rejected == [], "the signing secret was used"
        assert all(m.login == "storywatch" for m in smtp.messages), "SMTP AUTH was used"
        outputs["emails"] = "\n".join(m.message.as_string() for m in smtp.messages)
        outputs["slack"] = json.dumps([m.payload for m in slack.messages])
        outputs["webhook"] = json.dumps([c.payload for c in rx.messages])
        outputs["alerts.jsonl"] = (tmp_path / "var" / "alerts.jsonl").read_text()

    assert "***" in outputs["config check --print"] or "*" in outputs["config check --print"]
    leaks = [(where, name) for where, text in outputs.items() for name, value in SECRETS.items() if value in text]
    assert not leaks, leaks
