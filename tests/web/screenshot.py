"""Make the README's dashboard screenshot: ``python -m tests.web.screenshot docs/dashboard.png``.

Serves the dashboard over the same populated store the tests use and photographs the
stories page (``--page timeline`` etc. for the others) with headless Chromium.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from storywatch.clock import FakeClock
from storywatch.store.sqlite import SQLiteStore
from storywatch.web import WebServer, create_app
from tests.web.browser import screenshot
from tests.web.fixtures import NOW, populate, settings_for


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--page", default="", help="path under the dashboard, e.g. timeline")
    parser.add_argument("--size", default="1280,900")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        settings = settings_for(tmp)
        store = SQLiteStore(tmp / "state.db")
        populate(store, settings, tmp)
        server = WebServer(create_app(settings, store, clock=FakeClock(NOW)), "127.0.0.1", 0).start()
        try:
            w, h = (int(v) for v in args.size.split(","))
            screenshot(server.url + args.page, args.out.resolve(), (w, h))
        finally:
            server.stop()
            store.close()
    print(args.out)


if __name__ == "__main__":
    main()
