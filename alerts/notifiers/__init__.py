"""Notifiers, registered by channel kind; :func:`make_notifier` builds one from its settings."""

from __future__ import annotations

from typing import Any

from alerts.notifiers.base import Notifier, NotifierContext, NotifierFactory, Outbound
from alerts.notifiers.email import EmailNotifier
from alerts.notifiers.local import ConsoleNotifier, FileNotifier
from alerts.notifiers.slack import SlackNotifier
from alerts.notifiers.webhook import WebhookNotifier

__all__ = ["NOTIFIERS", "Notifier", "NotifierContext", "Outbound", "make_notifier"]

NOTIFIERS: dict[str, NotifierFactory] = {
    "email": EmailNotifier,
    "slack": SlackNotifier,
    "webhook": WebhookNotifier,
    "console": ConsoleNotifier,
    "file": FileNotifier,
}


def make_notifier(name: str, cfg: Any, ctx: NotifierContext) -> Notifier:
    """The notifier for channel ``name`` configured by ``cfg`` (its ``kind`` picks the class)."""
    return NOTIFIERS[cfg.kind](name, cfg, ctx)
