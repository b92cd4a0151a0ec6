"""Local channels: ``console`` prints a readable alert to stdout, ``file`` appends one
JSON line per alert (the idempotency key included, so a reader can drop a repeat)."""

from __future__ import annotations

import json
import os
from typing import Any

from alerts.notifiers.base import NotifierContext, Outbound
from alerts.notifiers.webhook import payload
from storywatch.errors import DeliveryError
from storywatch.security import create_private
from storywatch.settings.alerts import ConsoleChannel, FileChannel


class ConsoleNotifier:
    def __init__(self, name: str, cfg: ConsoleChannel, ctx: NotifierContext):
        self.name = name
        self.ctx = ctx

    def send(self, msg: Outbound) -> dict[str, Any]:
        text = self.ctx.renderer.render("console.txt.j2", **msg.context())
        self.ctx.stdout.write(text + "\n\n")
        self.ctx.stdout.flush()
        return {}

    def close(self) -> None:
        pass


class FileNotifier:
    def __init__(self, name: str, cfg: FileChannel, ctx: NotifierContext):
        self.name = name
        self.path = ctx.resolve(cfg.path)

    def send(self, msg: Outbound) -> dict[str, Any]:
        line = json.dumps(payload(msg), ensure_ascii=False, separators=(",", ":")) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            create_private(self.path)  # 0600 when new, like the bus and the store
            # One write of one line in append mode: lines of concurrent writers don't interleave.
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise DeliveryError(self.name, f"cannot append to {self.path}: {exc.strerror}") from None
        return {}

    def close(self) -> None:
        pass
