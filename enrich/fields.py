"""The fields of an article file as the offline commands read them, and the warnings.

An article file may leave any field but ``id`` empty or null, and the commands accept a
field of the wrong type, a time they cannot read or a repeated id rather than reject the
whole file. They are never silent about it, though: :class:`InputWarnings` prints each
kind of problem to stderr with its file and line (the first few lines of each kind, then
how many lines in all), in the same ``FILE:LINE: reason`` form as the errors::

    storywatch: warning: a.jsonl:4: published: not a time ('yesterday'); the previous article's time is used
    storywatch: warning: a.jsonl:7: title: expected a string, got a list; its items are joined
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TextIO

SHOWN = 3
"""Lines shown per kind of problem; the rest are counted."""


def parse_time(value: Any) -> datetime | None:
    """ISO 8601, RFC 2822 or Unix seconds, as aware UTC (naive taken as UTC); None if unusable."""
    if value is None or value == "":
        return None
    dt: datetime | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):
            return None
    s = str(value).strip()
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        try:
            dt = parsedate_to_datetime(s)
        except (TypeError, ValueError, IndexError):
            return None
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    return "a list" if isinstance(value, list) else type(value).__name__


def as_text(value: Any) -> tuple[str, str | None]:
    """A text field (title, text, source, url) as a string, and, when it was not a string
    or null, what was made of it.

    A number is used as its text and a list of strings and numbers as its items joined
    by spaces; anything else (true/false, an object, a nested list) is ignored.

    >>> as_text(["Quake", "hits", 3])
    ('Quake hits 3', 'expected a string, got a list; its items are joined')
    """
    if value is None or isinstance(value, str):
        return value or "", None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value), "expected a string, got a number; used as text"
    if isinstance(value, list) and all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in value):
        return " ".join(str(v) for v in value), "expected a string, got a list; its items are joined"
    return "", f"expected a string, got {_json_type(value)}; ignored"


def body_field(row: dict[str, Any]) -> str:
    """The field that holds an article's text: ``text``, or ``summary`` when ``text`` is null."""
    return "text" if row.get("text") is not None else "summary"


class InputWarnings:
    """Problems of one input file that do not stop a command, printed to ``err`` (stderr)."""

    def __init__(self, path: Path, err: TextIO | None = None):
        self.path = path
        self.err = err
        self.counts: Counter[str] = Counter()

    def line(self, kind: str, line: int, reason: str) -> None:
        """One line's problem; ``kind`` groups the lines counted together."""
        self.counts[kind] += 1
        if self.counts[kind] <= SHOWN:
            self._print(f"{self.path}:{line}: {reason}")

    def file(self, reason: str) -> None:
        self._print(f"{self.path}: {reason}")

    def close(self) -> None:
        """Say how many lines had each kind of problem of which only the first were shown."""
        for kind, n in self.counts.items():
            if n > SHOWN:
                self._print(f"{self.path}: {n} lines in all with {kind} (the first {SHOWN} shown)")
        self.counts.clear()

    def _print(self, text: str) -> None:
        print(f"storywatch: warning: {text}", file=self.err or sys.stderr)


def check_fields(
    warnings: InputWarnings, numbered: Iterable[tuple[int, dict[str, Any]]], fields: tuple[str, ...]
) -> None:
    """Warn about each of ``fields`` (``"body"`` is the text field) that is not a string
    or null, and about a ``published`` value that is not a time."""
    for n, row in numbered:
        for field in fields:
            name = body_field(row) if field == "body" else field
            value = row.get(name)
            if name == "published":
                if value not in (None, "") and parse_time(value) is None:
                    reason = f"published: not a time ({value!r}); the previous article's time is used"
                    warnings.line("an unreadable published time", n, reason)
                continue
            _, problem = as_text(value)
            if problem:
                warnings.line(f"a {name} that is not a string", n, f"{name}: {problem}")


def repeated_ids(numbered: Iterable[tuple[int, dict[str, Any]]]) -> Iterator[tuple[int, Any]]:
    """``(line, id)`` of each object whose id (as text: ``7`` and ``"7"`` are one id) an
    earlier object already has."""
    seen: set[str] = set()
    for n, row in numbered:
        key = str(row["id"])
        if key in seen:
            yield n, row["id"]
        seen.add(key)


def warn_repeated_ids(warnings: InputWarnings, repeats: list[tuple[int, Any]], consequence: str) -> None:
    """One warning: how many lines repeat an id, the first few of them, and what is done."""
    if not repeats:
        return
    first = ", ".join(f"{json.dumps(i, ensure_ascii=False)} (line {n})" for n, i in repeats[:SHOWN])
    more = ", ..." if len(repeats) > SHOWN else ""
    lines = "line repeats the id" if len(repeats) == 1 else "lines repeat the id"
    warnings.file(f"{len(repeats)} {lines} of an earlier line: {first}{more}; {consequence}")
