"""Running stages as services: the loop, SIGTERM handling, and ``--once``.

A stage's service object implements :class:`Service`. The runner calls ``step`` in a loop
until a stop is requested (SIGTERM or Ctrl-C), then ``close``, which finishes the batch
in hand, commits and releases resources. With ``--once`` it calls ``drain`` on each
service in pipeline order instead, so one process can take a round of feeds all the way
to alerts and exit.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

from storywatch.logs import kv
from storywatch.observe import Health

log = logging.getLogger("storywatch.runtime")


def settle_heap() -> None:
    """Exempt what is alive now from the cyclic garbage collector, for the process's life.

    Call once a service has built its long-lived state: an embedding model leaves some
    400,000 tracked objects (torch, transformers), and every full collection walks all of
    them again (about 0.25 s each here, several times a minute in a backfill) though none
    will ever be garbage. What is frozen is still freed by reference counting; only
    cycles among frozen objects would outlive their use, so freeze after loading, not
    in a loop. Garbage is collected first, so that none of it is frozen.
    """
    gc.collect()
    gc.freeze()
    log.debug("heap settled", extra=kv(frozen=gc.get_freeze_count()))


class Service(Protocol):
    name: str

    def start(self) -> None:
        """Begin background work (the ingest scheduler); must not block."""
        ...

    def step(self, timeout: float) -> int:
        """Do one unit of work, waiting up to ``timeout`` seconds for input; return items handled."""
        ...

    def drain(self) -> int:
        """Process everything available now (one round for ingest) and return items handled."""
        ...

    def close(self) -> None:
        """Finish the batch in hand, commit, and release resources."""
        ...


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGTERM or SIGINT while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        log.info("stop requested", extra=kv(signal=signal.Signals(signum).name))
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_services(
    services: Sequence[Service], stop: threading.Event, *, once: bool = False, health: Health | None = None
) -> None:
    """Run ``services`` until ``stop`` is set (or one drain each, in order, with ``once``)."""
    health = health or Health()
    try:
        if once:
            for svc in services:
                handled = svc.drain()
                log.info("drained", extra=kv(stage=svc.name, items=handled))
                if stop.is_set():
                    break
            return
        for svc in services:
            svc.start()
            health.set_ready(svc.name)
            health.beat(svc.name)
        # Round-robin in one thread: with several stages in one process, each step waits
        # only briefly so that no stage starves the others.
        wait = 1.0 if len(services) == 1 else 0.2
        while not stop.is_set():
            handled = 0
            for svc in services:
                handled += svc.step(wait)
                health.beat(svc.name)
            if handled == 0 and len(services) > 1:
                stop.wait(0.2)
    finally:
        for svc in reversed(services):
            try:
                svc.close()
            except Exception:
                log.exception("error while closing", extra=kv(stage=svc.name))
