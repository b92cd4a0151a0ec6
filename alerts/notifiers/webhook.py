"""Generic webhook: POST the alert as JSON, signed with HMAC-SHA256.

Headers: ``Idempotency-Key`` (the delivery key: a receiver drops repeats by it), the
timestamp header (Unix seconds) and the signature header ``sha256=<hex>`` over
``<timestamp>.<body>``; signing the timestamp lets a receiver reject replays of old
requests. 2xx is delivered; 409 too (the receiver says it already has this key); 429 and
5xx are retried (honouring ``Retry-After``); other 4xx are permanent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx

from alerts.notifiers.base import NotifierContext, Outbound
from storywatch.errors import DeliveryError
from storywatch.schema import dump
from storywatch.settings.alerts import WebhookChannel


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def payload(msg: Outbound) -> dict[str, Any]:
    out: dict[str, Any] = {"idempotency_key": msg.key, "alert": dump(msg.alert)}
    if msg.items:
        out["items"] = [dump(i) for i in msg.items]
        out["more"] = msg.more
    if msg.parent_key:
        out["in_reply_to"] = msg.parent_key
    return out


class WebhookNotifier:
    def __init__(self, name: str, cfg: WebhookChannel, ctx: NotifierContext):
        self.name = name
        self.cfg = cfg
        self.ctx = ctx
        self._client = httpx.Client(timeout=cfg.timeout_s, follow_redirects=False)

    def send(self, msg: Outbound) -> dict[str, Any]:
        body = json.dumps(payload(msg), separators=(",", ":"), ensure_ascii=False).encode()
        ts = str(int(self.ctx.clock.now().timestamp()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "storywatch-alerts",
            "Idempotency-Key": msg.key,
            self.cfg.timestamp_header: ts,
        }
        if self.cfg.signing_secret is not None:
            headers[self.cfg.signature_header] = sign(self.cfg.signing_secret.get_secret_value().encode(), ts, body)
        try:
            resp = self._client.post(self.cfg.url.get_secret_value(), content=body, headers=headers)
        except httpx.HTTPError as exc:
            # The URL is a secret; httpx messages may quote it, so give only the error type.
            raise DeliveryError(self.name, f"webhook request failed: {type(exc).__name__}") from None
        if resp.is_success or resp.status_code == 409:
            return {"status": resp.status_code}
        retry_after = None
        if "retry-after" in resp.headers:
            try:
                retry_after = max(0.0, float(resp.headers["retry-after"]))
            except ValueError:
                retry_after = None
        temporary = resp.status_code in (408, 425, 429) or resp.status_code >= 500
        raise DeliveryError(
            self.name,
            f"webhook answered HTTP {resp.status_code}",
            retry_after=retry_after,
            permanent=not temporary,
        )

    def close(self) -> None:
        self._client.close()
