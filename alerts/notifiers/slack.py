"""Slack through slack-sdk: an incoming webhook (``WebhookClient``) or a bot token
(``WebClient.chat_postMessage``).

With a bot token the first alert's ``ts`` is kept in the delivery log and follow-ups go
into its thread (``thread_ts``); every post carries the idempotency key in its message
metadata. Incoming webhooks cannot thread or carry metadata, so the key goes in the
context line.

When an earlier attempt may have posted already (its worker died mid-send), the bot
first looks for a message carrying the key in the channel or thread
(``conversations.history``/``.replies`` with metadata; needs a channel ID and the
``channels:history`` scope) and posts only if there is none, which closes the crash
window for bot channels. slack-sdk's own retries are switched off: the delivery log
retries, with backoff, and honours ``Retry-After`` on HTTP 429.
"""

from __future__ import annotations

from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient

from alerts.notifiers.base import NotifierContext, Outbound
from alerts.render import SLACK_TEXT_MAX, mrkdwn_escape, slack_blocks
from storywatch.errors import DeliveryError
from storywatch.settings.alerts import SlackChannel

# Errors that no retry will fix (https://api.slack.com/methods/chat.postMessage#errors).
_PERMANENT = {
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "invalid_blocks",
    "msg_too_long",
    "no_permission",
    "missing_scope",
}


def _retry_after(headers: Any) -> float | None:
    if not headers:
        return None
    for k, v in dict(headers).items():
        if k.lower() == "retry-after":
            value = v[0] if isinstance(v, list) else v
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


class SlackNotifier:
    def __init__(self, name: str, cfg: SlackChannel, ctx: NotifierContext):
        self.name = name
        self.cfg = cfg
        self.ctx = ctx
        timeout = max(1, round(cfg.timeout_s))
        self._web: WebClient | None = None
        self._hook: WebhookClient | None = None
        if cfg.token is not None:
            self._web = WebClient(
                token=cfg.token.get_secret_value(), base_url=cfg.api_url, timeout=timeout, retry_handlers=[]
            )
        elif cfg.webhook_url is not None:
            self._hook = WebhookClient(cfg.webhook_url.get_secret_value(), timeout=timeout, retry_handlers=[])

    def payload(self, msg: Outbound) -> dict[str, Any]:
        """``text`` (the notification fallback) and ``blocks`` for ``msg``."""
        body = self.ctx.renderer.render("slack.mrkdwn.j2", **msg.context())
        a = msg.alert
        header = ("Update: " if a.follow_up and not a.title.startswith("Update") else "") + a.title
        context = f"{a.severity} · storywatch `{mrkdwn_escape(msg.key)}`"
        text = mrkdwn_escape(header)[:SLACK_TEXT_MAX]
        return {"text": text, "blocks": slack_blocks(header, body, context)}

    def send(self, msg: Outbound) -> dict[str, Any]:
        payload = self.payload(msg)
        if self._web is not None:
            return self._post(msg, payload)
        return self._webhook(payload)

    def _post(self, msg: Outbound, payload: dict[str, Any]) -> dict[str, Any]:
        assert self._web is not None
        thread_ts = (msg.parent_result or {}).get("ts")
        if msg.uncertain:
            ts = self._already_posted(msg.key, thread_ts)
            if ts is not None:
                return {"ts": ts, "channel": self.cfg.channel, "thread_ts": thread_ts, "recovered": True}
        try:
            resp = self._web.chat_postMessage(
                channel=self.cfg.channel or "",
                text=payload["text"],
                blocks=payload["blocks"],
                thread_ts=thread_ts,
                unfurl_links=False,
                metadata={"event_type": "storywatch_alert", "event_payload": {"key": msg.key}},
            )
        except SlackApiError as exc:
            status = exc.response.status_code
            error = str(exc.response.get("error", "")) if isinstance(exc.response.data, dict) else ""
            raise DeliveryError(
                self.name,
                f"chat.postMessage failed: HTTP {status} {error}".strip(),
                retry_after=_retry_after(exc.response.headers) if status == 429 else None,
                permanent=error in _PERMANENT,
            ) from None
        except (SlackClientError, OSError) as exc:
            raise DeliveryError(self.name, f"chat.postMessage failed: {type(exc).__name__}") from None
        return {"ts": resp.get("ts"), "channel": resp.get("channel"), "thread_ts": thread_ts}

    def _already_posted(self, key: str, thread_ts: str | None) -> str | None:
        """The ts of a recent message of ours carrying ``key``, or None (also when the
        lookup fails: then posting again is the lesser evil than losing the alert)."""
        assert self._web is not None
        channel = self.cfg.channel or ""
        try:
            if thread_ts:
                resp = self._web.conversations_replies(
                    channel=channel, ts=thread_ts, include_all_metadata=True, limit=200
                )
            else:
                resp = self._web.conversations_history(channel=channel, include_all_metadata=True, limit=200)
        except (SlackClientError, OSError):
            return None
        for m in resp.get("messages") or []:
            payload = (m.get("metadata") or {}).get("event_payload") or {}
            if payload.get("key") == key:
                return str(m.get("ts"))
        return None

    def _webhook(self, payload: dict[str, Any]) -> dict[str, Any]:
        assert self._hook is not None
        try:
            resp = self._hook.send(text=payload["text"], blocks=payload["blocks"], unfurl_links=False)
        except (SlackClientError, OSError) as exc:
            # The URL is a secret: name the error, never the exception text that may quote it.
            raise DeliveryError(self.name, f"incoming webhook failed: {type(exc).__name__}") from None
        body = (resp.body or "")[:100]
        if resp.status_code == 200 and body.strip() == "ok":
            return {}
        if resp.status_code == 200:
            # Slack answers "ok"; anything else (a proxy's login page, a captive portal)
            # did not reach Slack, and calling it sent would lose the alert.
            raise DeliveryError(
                self.name, f"incoming webhook answered HTTP 200 without Slack's 'ok': {' '.join(body.split())[:60]!r}"
            )
        raise DeliveryError(
            self.name,
            f"incoming webhook answered HTTP {resp.status_code}: {body}",
            retry_after=_retry_after(resp.headers) if resp.status_code == 429 else None,
            permanent=resp.status_code in (400, 403, 404, 410) and body != "",
        )

    def close(self) -> None:
        pass
