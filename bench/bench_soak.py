"""Benchmark: soak. A steady stream of articles for a compressed hour; each service's
resident memory (RSS) is sampled over time and must stay flat.

A local HTTP feed server (``tests/feedserver.py``) serves ``--feeds`` feeds that gain new
items all the time: headlines of the UCI News Aggregator set
(``/work/shared/data/uci_headlines.jsonl``), in their time order, so that real stories
form and grow; and reports of synthetic events (ten kinds, from a missile launch or an
earthquake to a strike or a merger, dealt round-robin), each told by several feeds in
different words over a few minutes, so that stories gather sources and match the
watched topics. Alerts go to a file channel.

storywatch runs as it is deployed (``--deploy``, default ``stages``):

- ``stages``: ``storywatch ingest``, ``enrich`` and ``alerts`` as three processes over
  the embedded bus, sharing one SQLite store;
- ``run``: one ``storywatch run`` process.

The feeds are polled every ``--interval`` seconds. The default rate (3 UCI headlines a
second plus a new event every 20 s) pushes about 4,000 articles through in 20 minutes:
ten times an hour of a 100-feed deployment, and far below the encoder's rate.

Time is compressed too: a story forgotten after 14 days of silence in the shipped config
would never be forgotten within the run, so the state would only grow. By default
every retention window is scaled down by the same factor, the clusterer's eviction age
becoming ``--retention-minutes`` (dormancy, the story-event TTL, the alert state and the
bus log scale with it), so that the run reaches the steady state in which forgetting
balances new stories. ``--retention-minutes 0`` keeps the shipped windows: memory then
grows with the stories of the run, as in the first weeks of a deployment.

Each process's VmRSS (``/proc/PID/status``) is sampled every ``--sample-s`` seconds.
Reported per service: RSS at the start of the steady state (after the first 10% of the
run), at the middle and at the end, the maximum, and the slope of a least-squares line
over the second half (MB per hour of the run, and per 1,000 articles); the verdict is
*flat* when that line rises by less than ``max(4 MB, 2% of RSS)`` across the second half.
An SVG plot of RSS over time is written to ``--svg``. Not collected by pytest.

Usage: ``python bench/bench_soak.py [--minutes 20] [--deploy stages run] [--svg docs/soak-rss.svg]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import MISSILE_TOPIC, Stages, line_chart, write_config  # noqa: E402
from storywatch.bus.embedded import EmbeddedBus  # noqa: E402
from storywatch.settings.core import TopicNames  # noqa: E402
from tests.feedserver import FeedServer, Reply, rss  # noqa: E402

UCI = Path("/work/shared/data/uci_headlines.jsonl")
SERVED_ITEMS = 60  # newest items kept in each feed document
MB = 1024 * 1024

# Shipped retention windows (hours), as ratios to the clusterer's eviction age (14 days).
SHIPPED_EVICT_H = 14 * 24.0
RATIOS = {
    "dormant_after_hours": 72.0 / SHIPPED_EVICT_H,
    "story_ttl_h": 21 * 24.0 / SHIPPED_EVICT_H,
    "alerts_retention_h": 30 * 24.0 / SHIPPED_EVICT_H,
    "bus_retention_h": 168.0 / SHIPPED_EVICT_H,
}

# -- the stream ------------------------------------------------------------------------

EVENT_KINDS: dict[str, dict[str, list[str]]] = {
    "missile": {
        "who": ["North Korea", "Iran", "Pakistan", "India", "Russia", "China", "Yemen's Houthi rebels", "Taiwan"],
        "what": ["a ballistic missile", "two cruise missiles", "a hypersonic missile", "a medium-range missile"],
        "where": ["into the sea off its east coast", "toward the Sea of Japan", "over the Red Sea",
                  "from a desert test range", "from a mobile launcher near the border"],
        "titles": [
            "{who} fires {what} {where}",
            "{who} launches {what} {where}, officials say",
            "Missile launch: {who} test-fires {what}",
            "{who} test-fires {what}; neighbours condemn launch",
            "Military says {who} launched {what} {where}",
        ],
        "lead": ["Defence officials said {who} launched {what} {where} on day {n}; it flew about {k}00 km."],
    },
    "quake": {
        "who": ["Chile", "Peru", "Japan", "Indonesia", "Turkey", "Nepal", "Mexico", "the Philippines"],
        "what": ["magnitude 6.{k}", "magnitude 7.{k}", "magnitude 5.{k}"],
        "where": ["near the coast", "in the mountainous north", "close to the capital", "offshore"],
        "titles": [
            "{what} earthquake strikes {who} {where}",
            "Strong quake hits {who}; {k} dead, buildings damaged",
            "Earthquake of {what} shakes {who}",
            "{who} quake: rescuers search rubble after {what} tremor",
        ],
        "lead": ["A {what} earthquake struck {who} {where} on day {n}; officials reported {k} deaths."],
    },
    "recall": {
        "who": ["General Motors", "Toyota", "Ford", "Honda", "Volkswagen", "Nissan", "Hyundai", "Tesla"],
        "what": ["ignition switches", "airbag inflators", "brake hoses", "fuel pumps", "seat belts"],
        "where": ["in the United States", "worldwide", "in Europe and Asia"],
        "titles": [
            "{who} recalls {k}00,000 vehicles over faulty {what}",
            "{who} recall: {k}00,000 cars {where} need new {what}",
            "Regulators push {who} to recall cars with defective {what}",
            "{who} expands recall over {what} {where}",
        ],
        "lead": ["{who} said on day {n} it would recall {k}00,000 vehicles {where} to replace {what}."],
    },
    "fire": {
        "who": ["California", "Greece", "Portugal", "British Columbia", "Siberia", "Victoria", "Catalonia"],
        "what": ["wildfire", "forest fire", "bushfire"],
        "where": ["forces thousands to evacuate", "burns {k}0,000 acres", "threatens villages"],
        "titles": [
            "{who} {what} {where}",
            "Firefighters battle {what} in {who} as it {where}",
            "{what} in {who}: evacuation orders widen",
        ],
        "lead": ["A {what} in {who} {where} on day {n}; {k}00 firefighters were deployed."],
    },
    "election": {
        "who": ["Portugal", "Kenya", "New Zealand", "Colombia", "Sweden", "Malaysia", "Ghana"],
        "what": ["the Social Democrats", "the conservative alliance", "the opposition Labour party", "the Greens"],
        "where": ["a snap election", "the parliamentary vote", "the general election"],
        "titles": [
            "{what} win {where} in {who}",
            "{who} votes: {what} claim victory with {k}0 seats",
            "Exit polls: {what} ahead in {who} after {where}",
        ],
        "lead": ["Voters in {who} handed {what} victory in {where} on day {n}, with turnout near {k}0 percent."],
    },
    "merger": {
        "who": ["Siemens", "Unilever", "Pfizer", "Oracle", "Nestle", "BHP", "Vodafone", "Bayer"],
        "what": ["a rival drugmaker", "a cloud software firm", "a mining group", "a snack brand", "a cable operator"],
        "where": ["in cash", "in cash and stock", "including debt"],
        "titles": [
            "{who} agrees to buy {what} for ${k} billion",
            "{who} strikes ${k} billion deal for {what}",
            "Shares jump as {who} bids for {what} {where}",
        ],
        "lead": ["{who} said on day {n} it would acquire {what} for ${k} billion {where}, pending approval."],
    },
    "flood": {
        "who": ["Bangladesh", "Pakistan", "Nigeria", "southern Brazil", "Bavaria", "Queensland", "Vietnam"],
        "what": ["monsoon floods", "flash floods", "river flooding"],
        "where": ["after days of torrential rain", "as dams overflow", "as a cyclone makes landfall"],
        "titles": [
            "{what} in {who} kill {k}, displace thousands",
            "{who}: {what} {where}; villages cut off",
            "Rescuers evacuate residents from {what} in {who}",
        ],
        "lead": ["{what} hit {who} {where} on day {n}, killing {k} people and cutting roads."],
    },
    "strike": {
        "who": ["Lufthansa pilots", "French rail workers", "London Underground staff", "Korean dockers",
                "Canadian postal workers", "Italian air traffic controllers"],
        "what": ["pay", "pensions", "working hours", "job cuts"],
        "where": ["for 48 hours", "indefinitely", "over the weekend"],
        "titles": [
            "{who} walk out over {what}",
            "Strike by {who} over {what} halts services {where}",
            "{who} announce strike {where} in dispute over {what}",
        ],
        "lead": ["{who} began a strike {where} on day {n} in a dispute over {what}; unions expect {k}0,000 to join."],
    },
    "rates": {
        "who": ["The Bank of England", "The European Central Bank", "The Reserve Bank of India",
                "The Bank of Canada", "Brazil's central bank", "The Swiss National Bank"],
        "what": ["raises interest rates", "cuts interest rates", "holds interest rates"],
        "where": ["by a quarter point", "by half a point", "as inflation eases", "amid weak growth"],
        "titles": [
            "{who} {what} {where}",
            "Central bank decision: {who} {what}",
            "{who} surprises markets and {what}",
        ],
        "lead": ["{who} {what} {where} on day {n}; the policy rate now stands at {k} percent."],
    },
    "crash": {
        "who": ["a regional airliner", "a cargo plane", "a passenger jet", "a military transport plane"],
        "what": ["Kathmandu", "Lagos", "Novosibirsk", "Medellin", "Karachi", "Halifax"],
        "where": ["shortly after take-off", "while landing in fog", "in mountainous terrain"],
        "titles": [
            "Plane crash: {who} goes down near {what}",
            "{who} crashes near {what} {where}, {k} aboard",
            "Investigators reach wreck of {who} near {what}",
        ],
        "lead": ["{who} crashed near {what} {where} on day {n} with {k}0 people on board."],
    },
}  # fmt: skip

TOPICS = [
    MISSILE_TOPIC | {"channels": ["file"]},
    {
        "name": "vehicle recalls",
        "description": "A car maker recalls vehicles over a safety defect.",
        "examples": [
            "GM recalls 1.6 million cars over faulty ignition switches",
            "Toyota recalls vehicles to replace defective airbags",
        ],
        "counter_examples": ["Car maker reports record quarterly sales"],
        "severity": "medium",
        "channels": ["file"],
    },
    {
        "name": "earthquakes",
        "description": "An earthquake strikes a region, causing damage or casualties.",
        "examples": [
            "Magnitude 6.1 earthquake strikes northern Chile",
            "Strong quake hits Indonesia, buildings collapse",
        ],
        "counter_examples": ["Stock market shaken by rate fears"],
        "severity": "high",
        "channels": ["file"],
    },
]


@dataclass
class Event:
    kind: str
    slots: dict[str, str]
    reports: list[tuple[float, int]]  # (monotonic due time, feed index), in time order


class SoakFeeds:
    """``n`` feeds at ``/soak/<i>.xml``; each serves its newest items with an ETag."""

    def __init__(self, n: int):
        self._lock = threading.Lock()
        self.items: list[list[dict[str, str]]] = [[] for _ in range(n)]
        self.versions = [0] * n
        self.added = 0

    def add(self, feed: int, item: dict[str, str]) -> None:
        with self._lock:
            self.items[feed].insert(0, item)
            del self.items[feed][SERVED_ITEMS:]
            self.versions[feed] += 1
            self.added += 1

    def __call__(self, path: str, headers: dict[str, str]) -> Reply | None:
        if not (path.startswith("/soak/") and path.endswith(".xml")):
            return None
        try:
            i = int(path[len("/soak/") : -len(".xml")])
        except ValueError:
            return None
        with self._lock:
            if not 0 <= i < len(self.items):
                return None
            etag = f'"{i}-{self.versions[i]}"'
            if headers.get("If-None-Match") == etag:
                return Reply(etag=etag)
            body = rss(f"Soak desk {i}", list(self.items[i]), link=f"https://desk{i}.example.com/")
        return Reply(body=body, etag=etag)


class Stream(threading.Thread):
    """Adds items to the feeds: ``rate`` UCI headlines a second, in their time order (the
    set restarts with new URLs when exhausted), and a new multi-report event every
    ``event_every_s`` seconds."""

    def __init__(self, feeds: SoakFeeds, rate: float, event_every_s: float, seed: int = 3):
        super().__init__(daemon=True, name="soak-stream")
        self.feeds = feeds
        self.rate = rate
        self.event_every_s = event_every_s
        self.rng = random.Random(seed)
        self.rows = [json.loads(line) for line in UCI.read_text(encoding="utf-8").splitlines() if line.strip()]
        self.stop = threading.Event()
        self.uci_added = 0
        self.reports_added = 0
        self.events_started = 0
        self._events: list[Event] = []
        self._kinds: list[str] = []

    def _n_feeds(self) -> int:
        return len(self.feeds.items)

    def _uci_item(self, k: int) -> tuple[int, dict[str, str]]:
        row = self.rows[k % len(self.rows)]
        rnd = k // len(self.rows)
        host = row.get("hostname") or "news.example.com"
        # A later round gets new URLs at another host: new articles, not resends.
        link = row["url"] if rnd == 0 else f"https://round{rnd}.{host}/{row['id']}"
        feed = zlib.crc32(str(row.get("source")).encode()) % self._n_feeds()
        return feed, self._item(row["title"], link, f"{row['id']}-{rnd}", "")

    def _item(self, title: str, link: str, guid: str, lead: str) -> dict[str, str]:
        return {
            "title": escape(title),
            "link": escape(link),
            "guid": escape(guid),
            "pubDate": format_datetime(datetime.now(UTC)),
            "description": escape(lead),
        }

    def _new_event(self, now: float) -> None:
        if not self._kinds:  # each kind once per round, in a fresh order
            self._kinds = sorted(EVENT_KINDS)
            self.rng.shuffle(self._kinds)
        kind = self._kinds.pop()
        spec = EVENT_KINDS[kind]
        k, n = self.rng.randint(2, 9), self.events_started
        slots = {
            s: self.rng.choice(spec[s]).format(k=k) for s in ("who", "what", "where")
        } | {"k": str(k), "n": str(n % 28 + 1)}
        count = self.rng.randint(4, 10)
        feeds = self.rng.sample(range(self._n_feeds()), min(count, self._n_feeds()))
        times = sorted(now + self.rng.uniform(0, 150) for _ in feeds)
        self._events.append(Event(kind, slots, list(zip(times, feeds, strict=True))))
        self.events_started += 1

    def _report(self, ev: Event, feed: int) -> None:
        spec = EVENT_KINDS[ev.kind]
        title = self.rng.choice(spec["titles"]).format(**ev.slots)
        title = title[0].upper() + title[1:]
        lead = self.rng.choice(spec["lead"]).format(**ev.slots)
        self.reports_added += 1
        uid = f"{ev.kind}-{id(ev):x}-{self.reports_added}"
        self.feeds.add(feed, self._item(title, f"https://desk{feed}.example.com/{uid}", uid, lead))

    def run(self) -> None:
        start = last_event = time.monotonic()
        self._new_event(start)
        while not self.stop.wait(0.25):
            now = time.monotonic()
            while self.uci_added < int((now - start) * self.rate):
                self.feeds.add(*self._uci_item(self.uci_added))
                self.uci_added += 1
            if now - last_event >= self.event_every_s:
                self._new_event(now)
                last_event = now
            for ev in self._events:
                while ev.reports and ev.reports[0][0] <= now:
                    self._report(ev, ev.reports.pop(0)[1])
            self._events = [ev for ev in self._events if ev.reports]


# -- the deployment under test -----------------------------------------------------------


def retention(minutes: float) -> dict[str, Any]:
    """Config sections that scale every retention window to ``minutes`` of eviction age
    (empty: the shipped windows)."""
    if minutes <= 0:
        return {}
    evict_h = minutes / 60.0
    return {
        "bus": {"retention_hours": evict_h * RATIOS["bus_retention_h"]},
        "enrich": {
            "cluster": {"evict_after_hours": evict_h, "dormant_after_hours": evict_h * RATIOS["dormant_after_hours"]},
            "events": {"story_ttl_s": evict_h * RATIOS["story_ttl_h"] * 3600.0},
        },
        "alerts": {"retention_days": evict_h * RATIOS["alerts_retention_h"] / 24.0},
    }


def config(tmp: Path, feed_urls: list[str], interval: float, retention_minutes: float) -> Path:
    scaled = retention(retention_minutes)
    sections = {
        "log": {"level": "WARNING"},
        "ingest": {
            "tick_s": 0.25,
            "min_interval_s": interval,
            "default_interval_s": interval,
            "per_host_min_gap_s": 0,
            "per_host_concurrency": 8,
        },
        "feeds": [{"url": u, "interval_s": interval} for u in feed_urls],
        "enrich": scaled.get("enrich", {}),
        "topics": TOPICS,
        "alerts": scaled.get("alerts", {}),
    }
    return write_config(tmp, sections, bus=scaled.get("bus", {}))


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, RssAnon) of ``pid`` in kB, from /proc."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                fields[key] = int(value.split()[0])
    return fields.get("VmRSS", 0), fields.get("RssAnon", 0)


@dataclass
class Sample:
    t: float  # seconds since the stream started
    rss_mb: dict[str, float]
    anon_mb: dict[str, float]
    added: int  # items added to the feeds
    published: int  # articles ingest published (raw-articles end offset)
    enriched: int  # raw-articles committed by enrich
    events: int  # story events published
    alerts: int  # lines in the file channel
    disk_mb: float  # bus and store files with their WAL


@dataclass
class Result:
    deploy: str
    minutes: float
    retention_minutes: float
    samples: list[Sample]
    final: dict[str, int]
    exit_codes: list[int | None]
    stream: dict[str, int]


class Counts:
    """Reads progress from the bus file and the alert file (read-only, short transactions)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.topics = TopicNames()
        self._bus: EmbeddedBus | None = None

    def read(self) -> tuple[int, int, int, int, float]:
        if self._bus is None:
            self._bus = EmbeddedBus(self.tmp / "bus.db")
        raw = self.topics.raw_articles
        published = self._bus.end_offset(raw)
        enriched = self._bus.committed("storywatch-enrich", raw)
        events = self._bus.end_offset(self.topics.story_events)
        alerts_file = self.tmp / "alerts.jsonl"
        alerts = alerts_file.read_bytes().count(b"\n") if alerts_file.exists() else 0
        disk = sum(p.stat().st_size for p in self.tmp.glob("*.db*"))
        return published, enriched, events, alerts, disk / MB

    def close(self) -> None:
        if self._bus is not None:
            self._bus.close()


def soak(args: argparse.Namespace, deploy: str) -> Result:
    stages = ["ingest", "enrich", "alerts"] if deploy == "stages" else ["run"]
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="sw-soak-") as tmpdir:
        tmp = Path(tmpdir)
        feeds = SoakFeeds(args.feeds)
        server = stack.enter_context(FeedServer())
        server.requests = _Discard()
        server.dynamic = feeds
        urls = [server.url(f"/soak/{i}.xml") for i in range(args.feeds)]
        cfg = config(tmp, urls, args.interval, args.retention_minutes)
        procs = Stages(tmp)
        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        for stage in stages:
            procs.start(stage, cfg, env)
        stack.callback(procs.stop)
        counts = Counts(tmp)
        stack.callback(counts.close)
        stream = Stream(feeds, args.rate, args.event_every)
        stream.start()
        t0 = time.monotonic()
        duration = args.minutes * 60.0
        samples: list[Sample] = []
        next_print = 0.0
        for t in _ticks(t0, duration, args.sample_s):
            procs.check()
            rss = {s: rss_kb(p.pid) for s, p in zip(stages, procs.procs, strict=True)}
            published, enriched, events, alerts, disk = counts.read()
            samples.append(
                Sample(
                    round(t, 1), {s: v[0] / 1024 for s, v in rss.items()}, {s: v[1] / 1024 for s, v in rss.items()},
                    feeds.added, published, enriched, events, alerts, round(disk, 1),
                )
            )
            if t >= next_print:
                mem = " ".join(f"{s}={v[0] / 1024:.0f}MB" for s, v in rss.items())
                print(
                    f"[{deploy}] {t / 60:5.1f} min: added {feeds.added}, published {published}, enriched {enriched},"
                    f" events {events}, alerts {alerts}; {mem}; disk {disk:.0f} MB",
                    flush=True,
                )
                next_print = t + 60.0
        stream.stop.set()
        stream.join()
        # Let enrich and alerts finish what was published, then stop as an operator would.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            published, enriched, *_ = counts.read()
            if enriched >= published:
                break
            procs.check()
            time.sleep(1.0)
        time.sleep(2 * args.interval + 3)
        codes = procs.stop(120)
        published, enriched, events, alerts, disk = counts.read()
    final = {"added": feeds.added, "published": published, "enriched": enriched, "events": events, "alerts": alerts}
    streamed = {"uci": stream.uci_added, "reports": stream.reports_added, "events": stream.events_started}
    return Result(deploy, args.minutes, args.retention_minutes, samples, final, codes, streamed)


def _ticks(t0: float, duration: float, every: float) -> Iterator[float]:
    k = 0
    while True:
        due = t0 + k * every
        if due - t0 > duration:
            return
        time.sleep(max(0.0, due - time.monotonic()))
        yield time.monotonic() - t0
        k += 1


class _Discard(list):  # type: ignore[type-arg]
    """A request log that keeps nothing (thousands of polls)."""

    def append(self, item: Any) -> None:
        pass


# -- analysis and report ---------------------------------------------------------------


@dataclass
class Memory:
    service: str
    start: float
    middle: float
    end: float
    peak: float
    slope_mb_h: float
    slope_mb_per_1k: float
    rise_mb: float
    verdict: str


def fit(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ``ys`` over ``xs`` (0 for fewer than two distinct xs)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0


def memory(result: Result, service: str) -> Memory:
    s = result.samples
    end_t = s[-1].t
    steady = [x for x in s if x.t >= 0.1 * end_t]
    second = [x for x in s if x.t >= 0.5 * end_t]
    middle = min(s, key=lambda x: abs(x.t - 0.5 * end_t))
    ys = [x.rss_mb[service] for x in second]
    slope_s = fit([x.t for x in second], ys)  # MB per second
    span_s = second[-1].t - second[0].t
    articles = second[-1].enriched - second[0].enriched
    rise = slope_s * span_s
    per_1k = rise / articles * 1000 if articles > 0 else 0.0
    typical = sorted(ys)[len(ys) // 2]
    verdict = "flat" if rise < max(4.0, 0.02 * typical) else "growing"
    return Memory(
        service, steady[0].rss_mb[service], middle.rss_mb[service], s[-1].rss_mb[service],
        max(x.rss_mb[service] for x in s), slope_s * 3600, per_1k, rise, verdict,
    )


def report(results: list[Result], args: argparse.Namespace) -> str:
    lines = [
        "| deployment | retention | minutes | items added | articles published | articles enriched "
        "| story events | alerts sent | exit codes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        f = r.final
        ret = f"{r.retention_minutes:g} min (compressed)" if r.retention_minutes > 0 else "shipped"
        lines.append(
            f"| {r.deploy} | {ret} | {r.minutes:g} | {f['added']:,} | {f['published']:,} | {f['enriched']:,}"
            f" | {f['events']:,} | {f['alerts']:,} | {', '.join(str(c) for c in r.exit_codes)} |"
        )
    lines += [
        "",
        "| deployment | service | RSS at 10% (MB) | at 50% (MB) | at end (MB) | max (MB) "
        "| slope, 2nd half (MB/h) | per 1,000 articles (MB) | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        for service in r.samples[0].rss_mb:
            m = memory(r, service)
            lines.append(
                f"| {r.deploy} | {service} | {m.start:.0f} | {m.middle:.0f} | {m.end:.0f} | {m.peak:.0f}"
                f" | {m.slope_mb_h:+.1f} | {m.slope_mb_per_1k:+.2f} | **{m.verdict}** |"
            )
    lines.append("")
    lines.append(
        f"Feeds: {args.feeds}, polled every {args.interval:g} s; {args.rate:g} UCI headlines/s plus an event"
        f" every {args.event_every:g} s told by 4-10 feeds; RSS sampled every {args.sample_s:g} s."
    )
    return "\n".join(lines)


def svg(results: list[Result], path: Path) -> None:
    """RSS (MB) over minutes, one line per process; ``storywatch run`` dashed."""
    series = [
        (f"{r.deploy}: {svc}", [(x.t / 60, x.rss_mb[svc]) for x in r.samples])
        for r in results
        for svc in r.samples[0].rss_mb
    ]
    line_chart(
        path,
        "storywatch soak: resident memory (RSS) of each process",
        series,
        "minutes into the run",
        "RSS (MB)",
        dashed=lambda label: label.startswith("run"),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="length of the stream (default 20)")
    ap.add_argument("--deploy", nargs="+", default=["stages"], choices=["stages", "run"],
                    help="deployments to soak, one after the other (default: stages)")
    ap.add_argument("--feeds", type=int, default=12, help="feeds served (default 12)")
    ap.add_argument("--interval", type=float, default=2.0, help="feed poll interval in seconds (default 2)")
    ap.add_argument("--rate", type=float, default=3.0, help="UCI headlines added per second (default 3)")
    ap.add_argument("--event-every", type=float, default=20.0, help="seconds between new events (default 20)")
    ap.add_argument("--retention-minutes", type=float, default=4.0,
                    help="the clusterer's eviction age, other windows scaled alike; 0 = shipped (default 4)")
    ap.add_argument("--sample-s", type=float, default=5.0, help="seconds between RSS samples (default 5)")
    ap.add_argument("--svg", type=Path, default=ROOT / "docs" / "soak-rss.svg", help="plot to write")
    ap.add_argument("--json", type=Path, help="also write the samples here")
    args = ap.parse_args()
    results = [soak(args, d) for d in args.deploy]
    print()
    print(report(results, args))
    svg(results, args.svg)
    print(f"\nplot written to {args.svg}")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ | {"samples": [s.__dict__ for s in r.samples]} for r in results]))


if __name__ == "__main__":
    main()
