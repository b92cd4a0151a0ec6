"""The notifier interface: one small protocol every channel kind implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from alerts.render import Renderer
from storywatch.clock import Clock
from storywatch.schema import Alert


@dataclass(frozen=True)
class Outbound:
    """One delivery as a notifier sees it.

    ``key`` is the delivery's idempotency key; a notifier puts it where the receiver can
    see it (Message-ID, ``Idempotency-Key`` header, Slack metadata) so repeats can be
    dropped. ``parent_key``/``parent_result`` describe the story's first alert on this
    channel (a follow-up threads under it); ``items`` are the alerts of a digest.
    ``uncertain`` says an earlier attempt may have reached the receiver (its worker died
    mid-send): a notifier that can ask the receiver checks before sending again.
    """

    alert: Alert
    key: str
    channel: str
    attempt: int = 1
    items: list[Alert] = field(default_factory=list)
    more: int = 0
    parent_key: str | None = None
    parent_result: dict[str, Any] | None = None
    uncertain: bool = False

    def context(self) -> dict[str, Any]:
        """The variables every template gets."""
        return {
            "alert": self.alert,
            "items": self.items,
            "more": self.more,
            "key": self.key,
            "channel": self.channel,
        }


class Notifier(Protocol):
    """Sends one rendered alert. ``send`` returns receipts kept in the delivery log
    (``thread_ts`` of a Slack post, ``message_id`` of an email) and raises
    :class:`storywatch.errors.DeliveryError` on failure (with ``retry_after`` or
    ``permanent`` when known)."""

    def send(self, msg: Outbound) -> dict[str, Any]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class NotifierContext:
    """What a notifier may need from its surroundings, injected."""

    clock: Clock
    renderer: Renderer
    resolve: Callable[[Path], Path]
    stdout: TextIO


NotifierFactory = Callable[[str, Any, NotifierContext], Notifier]
