"""Email alerts against a real SMTP server (aiosmtpd) with AUTH, STARTTLS and implicit TLS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from storywatch.settings.base import Secret
from tests.alerts.conftest import event, make_settings
from tests.servers import SMTPServer


def email_channel(smtp: SMTPServer, **kw: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "kind": "email",
        "host": smtp.host,
        "port": smtp.port,
        "security": "tls" if smtp.implicit_tls else "starttls" if smtp.starttls else "none",
        "from_addr": "storywatch@alerts.example",
        "to": ["desk@example.org"],
        "timeout_s": 5,
    }
    if smtp.ca_file:
        cfg["ca_file"] = str(smtp.ca_file)
    if smtp.auth:
        cfg["username"] = smtp.auth[0]
        cfg["password"] = Secret(smtp.auth[1])
    cfg.update(kw)
    return cfg


@pytest.mark.parametrize(
    "server_kw",
    [
        {"auth": ("alice", "s3cret-pw"), "starttls": True},
        pytest.param(
            {"auth": ("alice", "s3cret-pw"), "implicit_tls": True},
            # aiosmtpd warns about AUTH without STARTTLS; under SMTPS the whole session is TLS.
            marks=pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
        ),
        {"starttls": True},
        {},
    ],
    ids=["starttls-auth", "implicit-tls-auth", "starttls-noauth", "plain"],
)
def test_email_alert_is_delivered(server_kw: dict[str, Any], tmp_path: Path, harness_factory: Any) -> None:
    with SMTPServer(tmp_dir=tmp_path, **server_kw) as smtp:
        h = harness_factory(make_settings(tmp_path, {"mail": email_channel(smtp)}))
        h.send(event(sources=3))
        h.drain()
        [got] = smtp.wait_for(1)
        assert [d["state"] for d in h.deliveries()] == ["sent"]
        msg = got.message
        assert got.rcpt_tos == ["desk@example.org"]
        assert got.login == (server_kw["auth"][0] if "auth" in server_kw else None)
        assert "River bursts its banks" in msg["Subject"]
        assert msg["Message-ID"].endswith("@alerts.example>")
        assert msg.is_multipart()
        text = msg.get_body(("plain",)).get_content()
        html = msg.get_body(("html",)).get_content()
        assert "Sources: 3" in text and "https://news1.example/s1/1?a=1&b=2" in text
        assert 'href="https://news1.example/s1/1?a=1&amp;b=2"' in html
        assert "storywatch alert topic_appears/floods:s1:1|mail" in text


def test_wrong_password_is_dead_at_once(tmp_path: Path, harness_factory: Any) -> None:
    with SMTPServer(tmp_dir=tmp_path, auth=("alice", "right"), starttls=True) as smtp:
        chan = email_channel(smtp, password=Secret("wrong"))
        h = harness_factory(make_settings(tmp_path, {"mail": chan}))
        h.send(event())
        h.drain()
        [d] = h.deliveries()
        assert d["state"] == "dead" and "authentication" in d["last_error"]
        assert "wrong" not in d["last_error"]
        assert smtp.messages == []


def test_untrusted_certificate_is_retried_not_sent(tmp_path: Path, harness_factory: Any) -> None:
    with SMTPServer(tmp_dir=tmp_path, starttls=True) as smtp:
        chan = email_channel(smtp)
        del chan["ca_file"]
        h = harness_factory(make_settings(tmp_path, {"mail": chan}))
        h.send(event())
        h.drain()
        [d] = h.deliveries()
        assert d["state"] == "failed" and "certificate" in d["last_error"]


def test_temporary_smtp_error_is_retried_with_the_same_message_id(tmp_path: Path, harness_factory: Any) -> None:
    with SMTPServer(tmp_dir=tmp_path) as smtp:
        smtp.fail_next(451, "greylisted")
        h = harness_factory(make_settings(tmp_path, {"mail": email_channel(smtp)}))
        h.send(event())
        h.drain()
        [d] = h.deliveries()
        assert d["state"] == "failed" and "451" in d["last_error"]
        h.drain()
        assert h.deliveries()[0]["state"] == "failed", "not due yet: no retry before the backoff"
        h.clock.advance(seconds=60)
        h.drain()
        [got] = smtp.wait_for(1)
        [d] = h.deliveries()
        assert d["state"] == "sent" and d["attempts"] == 2
        assert got.message["Message-ID"] == d["result"]["message_id"]


def test_follow_up_threads_under_the_first_alert(tmp_path: Path, harness_factory: Any) -> None:
    with SMTPServer(tmp_dir=tmp_path) as smtp:
        h = harness_factory(make_settings(tmp_path, {"mail": email_channel(smtp)}))
        h.send(event(sources=1))
        h.drain()
        h.clock.advance(hours=1)
        h.send(event("updated", revision=2, sources=5, changes=["new_sources"], at=h.clock.now()))
        h.drain()
        first, second = (r.message for r in smtp.wait_for(2))
        assert second["In-Reply-To"] == first["Message-ID"]
        assert second["References"] == first["Message-ID"]
        assert second["Subject"] == "Re: " + first["Subject"]
        assert "Update on a story" in second.get_body(("plain",)).get_content()
        assert "4 new sources" in second.get_body(("plain",)).get_content()


def test_markup_in_a_headline_cannot_inject_html_or_headers(tmp_path: Path, harness_factory: Any) -> None:
    evil = 'Flood <script>alert(1)</script> <a href="javascript:x">click</a>\r\nBcc: victim@example.org'
    with SMTPServer(tmp_dir=tmp_path) as smtp:
        h = harness_factory(make_settings(tmp_path, {"mail": email_channel(smtp)}))
        h.send(event(headline=evil, summary="<img src=x onerror=alert(2)>"))
        h.drain()
        [got] = smtp.wait_for(1)
        html = got.message.get_body(("html",)).get_content()
        assert "<script>" not in html and "<img" not in html and 'href="javascript' not in html
        assert "&lt;script&gt;" in html
        assert got.message["Bcc"] is None and got.rcpt_tos == ["desk@example.org"]
