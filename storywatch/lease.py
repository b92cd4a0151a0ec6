"""A single-writer lease kept in the state store.

The enrich stage's story state is one sequence that exactly one process may advance at a
time (see :mod:`enrich.service`). That process holds a lease: one store document whose
tag names the holder and which says until when the holder counts as alive. The holder
renews it as it works; any other candidate stays a standby until the lease expires (or
until the holder is seen to be a process on this host that no longer exists), then takes
it over with a compare-and-swap on the tag (:meth:`storywatch.store.Store.update_if`), so
two candidates can never both win.

Expiry compares wall clocks of different machines: keep them synchronised (NTP) to well
under the lease length.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import Any

from storywatch.clock import Clock
from storywatch.logs import kv
from storywatch.store import Store

log = logging.getLogger("storywatch.lease")

HOST = socket.gethostname()
PROCESS_STARTED = time.time()


class Lease:
    """The lease ``(ns, key)`` for ``ttl_s`` seconds, held (or wanted) by this process."""

    def __init__(self, store: Store, ns: str, key: str, ttl_s: float, clock: Clock, *, owner: str | None = None):
        self.store = store
        self.ns = ns
        self.key = key
        self.ttl_s = ttl_s
        self.clock = clock
        self.owner = owner or f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.held = False
        self.renewed_at = float("-inf")
        self.holder: dict[str, Any] | None = None
        """The other holder's document when the last :meth:`acquire` failed."""

    def acquire(self) -> bool:
        """Take the lease or renew it; True if this process holds it now."""
        now = self.clock.now().timestamp()
        doc = {
            "owner": self.owner,
            "host": HOST,
            "pid": os.getpid(),
            "process_started": PROCESS_STARTED,
            "renewed_at": now,
            "expires_at": now + self.ttl_s,
        }
        tag = self.store.get_tag(self.ns, self.key)
        if tag == self.owner:
            won = self.store.update_if(self.ns, self.key, tag, doc, tag=self.owner)
        else:
            current = self.store.get(self.ns, self.key)
            if current is None:
                won = self.store.insert(self.ns, self.key, doc, tag=self.owner)
            elif tag is not None and _alive(current, now):
                won = False
                self.holder = current
            else:
                won = self.store.update_if(self.ns, self.key, tag, doc, tag=self.owner)
                if won and tag is not None:
                    log.warning(
                        "took over an expired lease",
                        extra=kv(lease=f"{self.ns}/{self.key}", previous=current.get("owner"), owner=self.owner),
                    )
        if self.held and not won:
            log.error("lost the lease", extra=kv(lease=f"{self.ns}/{self.key}", owner=self.owner))
        self.held = won
        if won:
            self.renewed_at = now
            self.holder = None
        return won

    def due(self) -> bool:
        """Whether a third of the lease has passed since the last renewal."""
        return self.clock.now().timestamp() - self.renewed_at >= self.ttl_s / 3

    def release(self) -> None:
        """Give the lease up at once, so that a standby need not wait for it to expire."""
        if self.held:
            released = {"owner": None, "released_at": self.clock.now().timestamp()}
            self.store.update_if(self.ns, self.key, self.owner, released, tag=None)
            self.held = False


def _alive(doc: dict[str, Any], now: float) -> bool:
    """Whether the holder described by ``doc`` still counts as alive at ``now``."""
    if float(doc.get("expires_at", 0)) <= now:
        return False
    if doc.get("host") == HOST and isinstance(doc.get("pid"), int):
        if doc["pid"] == os.getpid():
            # This process, or an earlier life of its pid (a restarted container runs as
            # pid 1 again under the same hostname): told apart by the start time.
            return doc.get("process_started") == PROCESS_STARTED
        return _pid_exists(doc["pid"])
    return True


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
