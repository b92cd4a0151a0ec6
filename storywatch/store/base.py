"""The state store: namespaced JSON documents with an optional tag, behind a small protocol.

Stages keep their state here (feed state, the seen-store, story snapshots, the alert
delivery log). A document lives under ``(namespace, key)``; ``tag`` is a short string
the store can index and filter on (the delivery log tags each alert with its state), and
:meth:`Store.update_if` changes a document only if its tag is still what the caller saw,
which is how two alert workers agree on who sends an alert.

Every implementation passes ``tests/core/test_store_contract.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

import orjson

Doc = dict[str, Any]


def dump_doc(value: Doc) -> str:
    """A document as compact JSON text, as every store keeps it.

    orjson where it can, the standard library where it cannot: a backfill writes
    thousands of story documents full of floats, and the standard encoder was 6% of the
    enrich stage's own time. orjson stops at integers beyond 64 bits, which the standard
    encoder takes. Either way numpy scalars are written as numbers, what JSON cannot hold
    raises ``TypeError``, and NaN and infinity are written as ``null`` by orjson.
    """
    try:
        return orjson.dumps(value, default=_plain, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), default=_plain)


def load_doc(text: str | bytes) -> Doc:
    """The document back. The standard decoder: orjson reads integers beyond 64 bits as floats."""
    out: Doc = json.loads(text)
    return out


def _plain(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class Store(Protocol):
    def get(self, ns: str, key: str) -> Doc | None: ...

    def get_tag(self, ns: str, key: str) -> str | None: ...

    def put(self, ns: str, key: str, value: Doc, *, tag: str | None = None) -> None: ...

    def put_many(self, ns: str, items: Mapping[str, Doc]) -> None: ...

    def insert(self, ns: str, key: str, value: Doc, *, tag: str | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent; True if it was stored."""
        ...

    def update_if(self, ns: str, key: str, expect_tag: str | None, value: Doc, *, tag: str | None) -> bool:
        """Replace the document only if its current tag is ``expect_tag``; True if replaced."""
        ...

    def delete(self, ns: str, key: str) -> None: ...

    def scan(
        self, ns: str, *, tag: str | None = None, after: str | None = None, limit: int | None = None
    ) -> Iterator[tuple[str, Doc]]:
        """Documents of ``ns`` in key order, optionally only those with ``tag``, keys > ``after``."""
        ...

    def count(self, ns: str, *, tag: str | None = None) -> int: ...

    def transaction(self) -> AbstractContextManager[None]:
        """Group writes so that they all happen or none does. Nests."""
        ...

    def close(self) -> None: ...
