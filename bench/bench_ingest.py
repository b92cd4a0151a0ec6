"""Benchmark: one ingest cycle over 2,000 feeds served by a local server.

The feed server (``tests/feedserver.py --bench N``) runs in a separate process so that
the CPU time measured here is the ingest side only. Each feed has an ETag; between
cycles the server gives ``--fraction`` of the feeds one new item, so a steady cycle is
mostly 304s with some 200s carrying 20 entries of which one is new. One cycle with no
changes at all (every feed answers 304) shows the fixed cost of a poll.

Reported per cycle: wall time, process CPU time (all threads), articles published, and
the same figures for a baseline measured in the same run: a bare httpx GET loop over the
same URLs with the same concurrency and the same conditional headers (fetch only, no
parsing, no bus, no store). The goal is 2,000 feeds a minute on less than one core, that
is a steady cycle under 60 s of CPU.

Usage: ``python bench/bench_ingest.py [--feeds 2000] [--cycles 3] [--concurrency 16]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.service import IngestService  # noqa: E402
from storywatch.bus.embedded import EmbeddedBus  # noqa: E402
from storywatch.clock import SystemClock  # noqa: E402
from storywatch.settings import Settings  # noqa: E402
from storywatch.store.sqlite import SQLiteStore  # noqa: E402


@dataclass
class Sample:
    label: str
    wall_s: float
    cpu_s: float
    items: int

    def line(self, feeds: int) -> str:
        rate = feeds / self.wall_s * 60 if self.wall_s else 0.0
        return (
            f"{self.label:<27} wall {self.wall_s:7.2f} s   cpu {self.cpu_s:7.2f} s   "
            f"{rate:9,.0f} feeds/min   cores {self.cpu_s / self.wall_s:5.2f}   items {self.items}"
        )


def measure(label: str, fn: object) -> Sample:
    w0, c0 = time.perf_counter(), time.process_time()
    items = fn()  # type: ignore[operator]
    return Sample(label, time.perf_counter() - w0, time.process_time() - c0, int(items))


class Baseline:
    """A bare conditional-GET loop: what fetching alone costs with httpx."""

    def __init__(self, urls: list[str], concurrency: int):
        self.urls = urls
        self.etags: dict[str, str] = {}
        self.client = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=concurrency * 2))
        self.pool = ThreadPoolExecutor(concurrency)

    def _get(self, url: str) -> int:
        headers = {"If-None-Match": self.etags[url]} if url in self.etags else {}
        r = self.client.get(url, headers=headers)
        if r.status_code == 200 and "etag" in r.headers:
            self.etags[url] = r.headers["etag"]
        return 1 if r.status_code == 200 else 0

    def cycle(self) -> int:
        return sum(self.pool.map(self._get, self.urls))

    def close(self) -> None:
        self.pool.shutdown()
        self.client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, default=2000)
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--fraction", type=float, default=0.1, help="share of feeds with a new item per cycle")
    args = ap.parse_args()

    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "feedserver.py"), "--bench", str(args.feeds), "--fraction",
         str(args.fraction)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        base = f"http://127.0.0.1:{port}"
        urls = [f"{base}/feed/{i}.xml" for i in range(args.feeds)]
        run(args, base, urls)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=10)


def run(args: argparse.Namespace, base: str, urls: list[str]) -> None:
    bump = httpx.Client(base_url=base)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.model_validate(
            {
                "base_dir": tmp,
                "feeds": [{"url": u} for u in urls],
                # Every bench feed is on 127.0.0.1: per-host politeness would serialise them.
                "ingest": {
                    "global_concurrency": args.concurrency,
                    "per_host_concurrency": args.concurrency,
                    "per_host_min_gap_s": 0,
                    "seen_capacity": 1_000_000,
                    "jitter_seed": 1,
                },
            }
        )
        bus = EmbeddedBus(Path(tmp) / "bus.db")
        store = SQLiteStore(Path(tmp) / "state.db")
        svc = IngestService(settings, bus, store, SystemClock())
        svc.poller.langs.detect("warm up the language model once, outside the measurements")
        baseline = Baseline(urls, args.concurrency)
        samples = [measure("ingest cold (all 200)", svc.drain), measure("baseline cold", baseline.cycle)]
        samples += [measure("ingest unchanged (all 304)", svc.drain), measure("baseline unchanged", baseline.cycle)]
        steady: list[tuple[Sample, Sample]] = []
        for i in range(args.cycles):
            bump.get("/_bump")
            ing = measure(f"ingest steady #{i + 1}", svc.drain)
            # The baseline sees the same mix: the same feeds changed, its ETags are as old.
            ref = measure(f"baseline steady #{i + 1}", baseline.cycle)
            steady.append((ing, ref))
        svc.close()
        baseline.close()
        bus.close()
        store.close()
    bump.close()

    n = len(urls)
    print(f"\n{n} feeds, concurrency {args.concurrency}, {args.fraction:.0%} of feeds with a new item per cycle\n")
    for s in samples:
        print(s.line(n))
    for ing, ref in steady:
        print(ing.line(n))
        print(ref.line(n))
    wall = sum(i.wall_s for i, _ in steady) / len(steady)
    cpu = sum(i.cpu_s for i, _ in steady) / len(steady)
    bwall = sum(r.wall_s for _, r in steady) / len(steady)
    bcpu = sum(r.cpu_s for _, r in steady) / len(steady)
    per_2000 = cpu * 2000 / n
    print(
        f"\nsteady cycle (mean of {len(steady)}): wall {wall:.2f} s, cpu {cpu:.2f} s "
        f"-> {n / wall * 60:,.0f} feeds/min; "
        f"at 2,000 feeds/min that is {per_2000 / 60:.3f} of one core"
    )
    print(f"ratio to baseline: wall x{wall / bwall:.2f}, cpu x{cpu / bcpu:.2f}")
    goal = per_2000 < 60
    print(f"goal (2,000 feeds/min on < 1 core, i.e. < 60 s CPU per 2,000 feeds): {'met' if goal else 'NOT met'}")


if __name__ == "__main__":
    main()
