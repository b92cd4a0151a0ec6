"""Run the alerts stage alone over an embedded bus and a SQLite store, until SIGTERM.

``python -m tests.alerts.crash_runner CONFIG`` -- the crash test starts this, kills it
with SIGKILL at random moments, and starts it again.
"""

from __future__ import annotations

import signal
import sys
import threading

from alerts.service import AlertsService
from storywatch.bus.embedded import EmbeddedBus
from storywatch.clock import SystemClock
from storywatch.logs import configure
from storywatch.settings import load_settings
from storywatch.store.sqlite import SQLiteStore


def main(config: str) -> None:
    settings = load_settings(config)
    configure("WARNING")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    bus = EmbeddedBus(settings.path(settings.bus.path))
    store = SQLiteStore(settings.path(settings.store.path))
    service = AlertsService(settings, bus, store, SystemClock())
    service.start()
    print("ready", flush=True)
    try:
        while not stop.is_set():
            service.step(0.05)
    finally:
        service.close()
        bus.close()
        store.close()


if __name__ == "__main__":
    main(sys.argv[1])
