"""A large, slowly changing dict kept in the store as a base document plus change documents.

The enrich snapshot holds two maps that grow with the stream: the online document
frequencies (up to ``max_terms`` terms) and the article -> story map. Written whole into
the snapshot document, they made every snapshot cost as much as the whole state (600 kB
of JSON after 7,000 articles, rewritten every 200 articles). A :class:`MapLog` writes,
at each save, only the keys changed since the previous save, as one change document;
once the change documents hold as many entries as the map itself, it writes the map
whole as the new base and deletes them. A save thus costs what changed, amortised.

The caller saves inside the transaction that writes the snapshot document, and keeps
in that document the small manifest :meth:`MapLog.save` returns: a restore reads the
base and replays the change documents named there, so a crash between saves leaves
nothing half-written.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from storywatch.errors import StoreError
from storywatch.store import Store

# A compaction never waits for fewer entries than this: small maps are cheap either way.
_MIN_COMPACT = 1000


class MapLog:
    """Persist a ``str -> JSON value`` dict under ``prefix`` in namespace ``ns`` of ``store``.

    Values must not be None (None marks a deleted key in a change document).
    """

    def __init__(self, store: Store, ns: str, prefix: str) -> None:
        self.store = store
        self.ns = ns
        self.prefix = prefix
        self._deltas: list[int] = []
        self._entries = 0  # keys written in the change documents since the base
        self._next = 0
        self._has_base = False

    def save(self, data: Mapping[str, Any], touched: Collection[str] | None) -> dict[str, Any]:
        """Write what changed in ``data`` (the keys in ``touched``; None: anything) and return the manifest.

        Call :meth:`committed` with the manifest once the transaction has committed.
        """
        deltas, entries, seq = self._deltas, self._entries, self._next
        if touched is None or not self._has_base or entries + len(touched) > max(len(data), _MIN_COMPACT):
            self.store.put(self.ns, self.prefix + "base", dict(data))
            for old in deltas:
                self.store.delete(self.ns, f"{self.prefix}delta:{old}")
            deltas, entries = [], 0
        elif touched:
            self.store.put(self.ns, f"{self.prefix}delta:{seq}", {k: data.get(k) for k in touched})
            deltas, entries, seq = [*deltas, seq], entries + len(touched), seq + 1
        return {"deltas": deltas, "entries": entries, "next": seq}

    def committed(self, manifest: Mapping[str, Any]) -> None:
        """The documents of ``manifest`` are in the store: the next save builds on them."""
        self._deltas = [int(seq) for seq in manifest["deltas"]]
        self._entries, self._next = int(manifest["entries"]), int(manifest["next"])
        self._has_base = True

    def load(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """The map as saved with ``manifest``; later saves carry on from it."""
        base = self.store.get(self.ns, self.prefix + "base")
        if base is None:
            raise StoreError(f"enrich snapshot is missing {self.prefix}base ({self.ns})")
        data = dict(base)
        deltas = [int(s) for s in manifest["deltas"]]
        for seq in deltas:
            delta = self.store.get(self.ns, f"{self.prefix}delta:{seq}")
            if delta is None:
                raise StoreError(f"enrich snapshot is missing {self.prefix}delta:{seq} ({self.ns})")
            for key, value in delta.items():
                if value is None:
                    data.pop(key, None)
                else:
                    data[key] = value
        self.committed(manifest)
        return data
