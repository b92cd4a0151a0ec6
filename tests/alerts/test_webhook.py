"""Generic webhook alerts against a receiver that checks HMAC signatures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from storywatch.settings.base import Secret
from tests.alerts.conftest import event, make_settings
from tests.servers import WebhookReceiver


def hook(receiver: WebhookReceiver, secret: bytes | None = b"test-signing-secret") -> dict[str, Any]:
    cfg: dict[str, Any] = {"kind": "webhook", "url": Secret(receiver.hook_url), "timeout_s": 5}
    if secret is not None:
        cfg["signing_secret"] = Secret(secret.decode())
    return cfg


def test_signed_payload_with_idempotency_key(tmp_path: Path, harness_factory: Any) -> None:
    with WebhookReceiver(secret=b"test-signing-secret") as rx:
        h = harness_factory(make_settings(tmp_path, {"hook": hook(rx)}))
        h.send(event(sources=2))
        h.drain()
        [call] = rx.wait_for(1)
        [d] = h.deliveries()
        assert d["state"] == "sent" and rx.rejected == []
        assert call.key == d["key"] == call.payload["idempotency_key"]
        alert = call.payload["alert"]
        assert alert["topic"] == "floods" and alert["source_count"] == 2
        assert alert["articles"][0]["url"] == "https://news1.example/s1/1?a=1&b=2"
        assert call.timestamp == str(int(h.clock.now().timestamp()))


def test_wrong_secret_is_rejected_and_dead(tmp_path: Path, harness_factory: Any) -> None:
    with WebhookReceiver(secret=b"the-real-secret") as rx:
        h = harness_factory(make_settings(tmp_path, {"hook": hook(rx, b"not-the-secret")}))
        h.send(event())
        h.drain()
        [d] = h.deliveries()
        assert d["state"] == "dead" and "401" in d["last_error"]
        assert len(rx.rejected) == 1 and rx.messages == []


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (500, "failed"),
        (503, "failed"),
        (429, "failed"),
        (408, "failed"),
        (400, "dead"),
        (404, "dead"),
        (409, "sent"),
    ],
    ids=["500", "503", "429", "408", "400", "404", "409-duplicate"],
)
def test_status_codes(status: int, state: str, tmp_path: Path, harness_factory: Any) -> None:
    with WebhookReceiver() as rx:
        rx.fail_next(status)
        h = harness_factory(make_settings(tmp_path, {"hook": hook(rx)}))
        h.send(event())
        h.drain()
        assert h.deliveries()[0]["state"] == state


def test_retry_after_on_503_and_same_key_on_resend(tmp_path: Path, harness_factory: Any) -> None:
    with WebhookReceiver() as rx:
        rx.fail_next(503, retry_after=30)
        h = harness_factory(make_settings(tmp_path, {"hook": hook(rx)}))
        h.send(event())
        h.drain()
        h.clock.advance(seconds=29)
        h.drain()
        assert len(rx.requests) == 1
        h.clock.advance(seconds=2)
        h.drain()
        [call] = rx.wait_for(1)
        first, second = rx.requests
        assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == call.key


def test_the_url_is_never_logged(tmp_path: Path, harness_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    rx = WebhookReceiver()
    with rx:
        url = rx.hook_url
    # The receiver is gone: connection refused, and the error must not quote the URL.
    h = harness_factory(make_settings(tmp_path, {"hook": {"kind": "webhook", "url": Secret(url), "timeout_s": 2}}))
    h.send(event())
    h.drain()
    [d] = h.deliveries()
    assert d["state"] == "failed" and "ConnectError" in d["last_error"]
    assert url not in caplog.text and url not in d["last_error"]
