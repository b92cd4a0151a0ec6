"""Structured logs with fixed snake_case keys (``feed_url``, ``story_id``, ``topic``, ...).

Call sites pass fields with ``extra=kv(feed_url=url, status=304)``. Text output appends
``key=value`` pairs; JSON output (``log.format: json``) writes one object per line.
Secrets never reach a log: callers log channel names, never webhook URLs or passwords,
and :func:`configure` adds a filter that masks any registered secret value as well.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_FIELDS = "sw_fields"


def kv(**fields: Any) -> dict[str, Any]:
    return {_FIELDS: fields}


class _Redactor(logging.Filter):
    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 4]

    def _mask(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, "**********")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = self._mask(record.getMessage())
            record.args = None
            fields = getattr(record, _FIELDS, None)
            if fields:
                setattr(record, _FIELDS, {k: self._mask(str(v)) for k, v in fields.items()})
        return True


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        line = f"{ts} {record.levelname:<7} {record.name}: {record.getMessage()}"
        fields = getattr(record, _FIELDS, None)
        if fields:
            line += " " + " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(getattr(record, _FIELDS, None) or {})
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _fmt(v: Any) -> str:
    s = str(v)
    return json.dumps(s) if (" " in s or "=" in s or not s) else s


def configure(level: str = "INFO", fmt: str = "text", secrets: list[str] | None = None) -> None:
    """Send storywatch's logs to stderr in the chosen format, masking ``secrets``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    handler.addFilter(_Redactor(secrets or []))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries are chatty at INFO; their warnings still come through.
    for noisy in ("kafka", "apscheduler", "httpx", "httpcore", "sentence_transformers", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
