"""Benchmark: feed-to-alert latency, from an item appearing in a feed to the alert arriving.

A local HTTP feed server (``tests/feedserver.py``) adds one new item to a feed at a
known moment (monotonic clock), about once a second with random gaps so that items land
at every phase of the poll cycle. storywatch polls the feed every ``--interval`` seconds,
turns each item into a story matching a watched topic (clustering is told never to join
stories, so that every item is its own alert), and sends the alert by email to a local
SMTP server (aiosmtpd) and to a local Slack stand-in (``tests/servers.py``); both
timestamp arrival. Reported per channel: p50, p95 and max latency, split into the wait
for the next poll (publication to the first feed request after it) and the pipeline
(that request to the alert's arrival). The goal is p95 under ``interval + 5 s``.

Deployments measured (``--deploy``, default ``embedded``):

- ``embedded``: the default; one ``storywatch run`` process, embedded bus, SQLite store.
- ``kafka``: ``storywatch ingest``, ``enrich`` and ``alerts`` as three processes over a
  Kafka-protocol broker (tansu, ``tests/kafka_broker.py``), each with its own SQLite store.
- ``kafka-pg``: the same three processes sharing one PostgreSQL store (a throwaway server
  from ``tests/pg_server.py``): the distributed deployment.

Before measuring, warm-up items are published until an alert arrives on both channels
(model load, consumer group joins). Not collected by pytest (it is not a test).

Usage: ``python bench/bench_latency.py [--items 100] [--interval 2] [--deploy embedded kafka kafka-pg] [--svg F]``
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import MISSILE_TOPIC, Stages, line_chart  # noqa: E402
from tests.feedserver import FeedServer, Reply, rss  # noqa: E402
from tests.servers import Reply as HTTPReply  # noqa: E402
from tests.servers import Request, SlackServer, SMTPServer  # noqa: E402

FEED_PATH = "/latency.xml"
MARK = re.compile(r"bulletin (\d+)")

COUNTRIES = [
    "North Korea", "Iran", "Pakistan", "India", "Russia", "China", "Yemen's Houthi rebels", "Israel",
    "South Korea", "Taiwan", "Turkey", "Saudi Arabia", "France", "Japan", "Ukraine", "Syria",
]  # fmt: skip
MISSILES = [
    "a ballistic missile", "two cruise missiles", "a hypersonic missile", "short-range ballistic missiles",
    "an intercontinental ballistic missile", "a submarine-launched missile", "an anti-ship missile",
    "a medium-range missile",
]  # fmt: skip
WHERE = [
    "into the sea off its east coast", "toward the Sea of Japan", "over the Red Sea",
    "from a desert test range", "across the strait", "in a test watched by military chiefs",
    "near the northern border", "from a mobile launcher",
]  # fmt: skip


def headline(n: int) -> tuple[str, str]:
    """A distinct missile-launch headline and lead for item ``n``.

    Each item gets its own (country, missile, place) combination: two bulletins that
    differ only in their numbers would be near-duplicates, one story, one alert.
    """
    combos = [(c, m, w) for c in COUNTRIES for m in MISSILES for w in WHERE]
    random.Random(5).shuffle(combos)
    country, missile, where = combos[n % len(combos)]
    rng = random.Random(n)
    title = f"{country} fires {missile} {where}, bulletin {n}"
    lead = (
        f"Defence officials said {country} launched {missile} {where} early on day {n % 28 + 1}; "
        f"analysts counted {rng.randint(2, 40)} launches this year. Bulletin {n}, desk {rng.randint(100, 999)}."
    )
    return title, lead


class LatencyFeed:
    """The feed's content: items appear at known moments; the newest 30 are served."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[dict[str, str]] = []
        self.published: dict[int, float] = {}  # item -> monotonic time it appeared

    def publish(self, n: int) -> None:
        title, lead = headline(n)
        item = {
            "title": title,
            "link": f"https://wire.example.com/bulletins/{n}",
            "guid": f"bulletin-{n}",
            "pubDate": format_datetime(datetime.now(UTC)),
            "description": lead,
        }
        with self._lock:
            self.items.insert(0, item)
            del self.items[30:]
            self.published[n] = time.monotonic()

    def __call__(self, path: str, headers: dict[str, str]) -> Reply | None:
        if path != FEED_PATH:
            return None
        with self._lock:
            etag = f'"v{len(self.published)}"'
            if headers.get("If-None-Match") == etag:
                return Reply(etag=etag)
            body = rss("Wire bulletins", list(self.items), link="https://wire.example.com/")
        return Reply(body=body, etag=etag)


class Arrivals:
    """First arrival time (monotonic) of each item's alert, per channel."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.first: dict[str, dict[int, float]] = {"email": {}, "slack": {}}
        self.total: dict[str, int] = {"email": 0, "slack": 0}

    def note(self, channel: str, text: str) -> None:
        now = time.monotonic()
        m = MARK.search(text)
        with self._lock:
            self.total[channel] += 1
            if m:
                self.first[channel].setdefault(int(m.group(1)), now)

    def have(self, channel: str, n: int) -> bool:
        with self._lock:
            return n in self.first[channel]


class TimedSMTP(SMTPServer):
    def __init__(self, arrivals: Arrivals) -> None:
        super().__init__()
        self.arrivals = arrivals

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        self.arrivals.note("email", str(msg["Subject"]))
        return reply


class TimedSlack(SlackServer):
    def __init__(self, arrivals: Arrivals) -> None:
        super().__init__()
        self.arrivals = arrivals

    def handle(self, req: Request) -> HTTPReply:
        reply = super().handle(req)
        self.arrivals.note("slack", str(req.json().get("text", "")))
        return reply


# -- the deployment under test ----------------------------------------------------------


def config(tmp: Path, feed_url: str, smtp: SMTPServer, interval: float, bus: dict[str, Any]) -> Path:
    cfg = {
        "log": {"level": "WARNING"},
        "bus": bus,
        "store": {"path": str(tmp / "state.db")},
        "ingest": {
            "tick_s": 0.25,
            "min_interval_s": interval,
            "default_interval_s": interval,
            "per_host_min_gap_s": 0,
        },
        "feeds": [{"url": feed_url, "name": "Wire bulletins", "interval_s": interval}],
        # Every bulletin its own story: the benchmark wants one alert per item.
        "enrich": {"cluster": {"min_similarity": 0.99}},
        "topics": [
            MISSILE_TOPIC | {"channels": ["email", "slack"]},
        ],
        "alerts": {
            "channels": {
                "email": {
                    "kind": "email",
                    "host": smtp.host,
                    "port": smtp.port,
                    "security": "none",
                    "from_addr": "storywatch@bench.example",
                    "to": ["desk@bench.example"],
                },
                "slack": {"kind": "slack", "webhook_url": {"env": "SW_BENCH_SLACK_WEBHOOK"}},
            },
            "default_channels": ["email"],
            "operator_channels": ["email"],
        },
    }
    path = tmp / "storywatch.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# -- measuring ----------------------------------------------------------------------


@dataclass
class Result:
    deploy: str
    interval: float
    items: int
    latency: dict[str, list[float]]  # channel -> seconds, publication to arrival
    pipeline: dict[str, list[float]]  # channel -> seconds, first poll after publication to arrival
    poll_wait: list[float]
    missing: dict[str, int]
    extra_messages: dict[str, int]


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def wait_for(cond: Any, timeout: float, deploy: Stages, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        deploy.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def measure(args: argparse.Namespace, deploy_name: str) -> Result:
    arrivals = Arrivals()
    feed = LatencyFeed()
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="sw-latency-") as tmpdir:
        tmp = Path(tmpdir)
        server = stack.enter_context(FeedServer())
        server.dynamic = feed
        smtp = stack.enter_context(TimedSMTP(arrivals))
        slack = stack.enter_context(TimedSlack(arrivals))
        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        env["SW_BENCH_SLACK_WEBHOOK"] = slack.webhook_url
        env["PYTHONPATH"] = str(ROOT)
        bus: dict[str, Any] = {"path": str(tmp / "bus.db")}
        stages = ["run"]
        if deploy_name.startswith("kafka"):
            from tests.kafka_broker import TansuBroker

            broker = stack.enter_context(TansuBroker())
            bus = {
                "kind": "kafka",
                "bootstrap_servers": [broker.bootstrap],
                "partitions": 3,
                "max_poll_interval_ms": 3000,
                "session_timeout_ms": 3000,
            }
            stages = ["ingest", "enrich", "alerts"]
        if deploy_name == "kafka-pg":
            from tests.pg_server import PostgresServer

            pg = stack.enter_context(PostgresServer())
            env["STORYWATCH__STORE__KIND"] = "postgres"
            env["STORYWATCH__STORE__DSN"] = "{env: SW_BENCH_PG_DSN}"
            env["SW_BENCH_PG_DSN"] = pg.new_database("bench")
        cfg = config(tmp, server.url(FEED_PATH), smtp, args.interval, bus)
        deploy = Stages(tmp)
        stack.callback(deploy.stop)
        for stage in stages:
            stage_env = dict(env)
            if stage != "run" and "STORYWATCH__STORE__KIND" not in env:
                stage_env["STORYWATCH__STORE__PATH"] = str(tmp / f"{stage}-state.db")
            deploy.start(stage, cfg, stage_env)

        # Warm-up: the model loads on the first batch, Kafka groups join; not measured.
        t_warm = t_last = time.monotonic()
        n = 0
        while not (arrivals.first["email"] and arrivals.first["slack"]):
            if time.monotonic() - t_warm > 300:
                raise RuntimeError("no alert within 300 s of starting:\n" + deploy.tail())
            if n == 0 or time.monotonic() - t_last > 15:
                feed.publish(n)
                n, t_last = n + 1, time.monotonic()
            deploy.check()
            time.sleep(0.1)
        print(f"[{deploy_name}] warm after {time.monotonic() - t_warm:.1f} s ({n} warm-up items)", flush=True)
        time.sleep(args.interval + 3)  # let the warm-up items' alerts settle
        first = n  # numbering goes on: every item, warm-up or measured, has its own combination
        measured = list(range(first, first + args.items))
        rng = random.Random(11)
        for i in measured:
            feed.publish(i)
            time.sleep(rng.uniform(0.5, 1.5) * args.gap)
            deploy.check()
        print(f"[{deploy_name}] published {args.items} items; waiting for their alerts", flush=True)
        try:
            wait_for(
                lambda: all(arrivals.have(ch, i) for ch in ("email", "slack") for i in measured),
                args.interval + 60,
                deploy,
                "every alert",
            )
        except RuntimeError as exc:
            late = [i for i in measured if not all(arrivals.have(ch, i) for ch in ("email", "slack"))]
            print(f"[{deploy_name}] {exc}; no alert yet for: {[headline(i)[0] for i in late[:5]]}", flush=True)
        time.sleep(1.0)
        requests = sorted(r.at for r in server.requests if r.path == FEED_PATH)
        deploy.stop()

    latency: dict[str, list[float]] = {"email": [], "slack": []}
    pipeline: dict[str, list[float]] = {"email": [], "slack": []}
    poll_wait: list[float] = []
    missing = {"email": 0, "slack": 0}
    for i in measured:
        t_pub = feed.published[i]
        t_poll = next((t for t in requests if t >= t_pub), None)
        if t_poll is not None:
            poll_wait.append(t_poll - t_pub)
        for ch in ("email", "slack"):
            t_in = arrivals.first[ch].get(i)
            if t_in is None:
                missing[ch] += 1
                continue
            latency[ch].append(t_in - t_pub)
            if t_poll is not None:
                pipeline[ch].append(t_in - t_poll)
    distinct = {ch: len(arrivals.first[ch]) for ch in ("email", "slack")}
    extra = {ch: arrivals.total[ch] - distinct[ch] for ch in ("email", "slack")}
    return Result(deploy_name, args.interval, args.items, latency, pipeline, poll_wait, missing, extra)


def report(results: list[Result]) -> None:
    goal_line = ""
    print()
    header = (
        f"{'deployment':<10} {'channel':<7} {'n':>4} {'p50 s':>7} {'p95 s':>7} {'max s':>7}"
        f" {'poll-wait p50/p95 s':>20} {'pipeline p50/p95 s':>19} {'missing':>8} {'extra':>6}  goal"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        goal = r.interval + 5.0
        for ch in ("email", "slack"):
            lat = r.latency[ch]
            ok = bool(lat) and pct(lat, 95) <= goal and r.missing[ch] == 0
            print(
                f"{r.deploy:<10} {ch:<7} {len(lat):>4} {pct(lat, 50):>7.2f} {pct(lat, 95):>7.2f}"
                f" {max(lat, default=float('nan')):>7.2f}"
                f" {pct(r.poll_wait, 50):>9.2f} / {pct(r.poll_wait, 95):>5.2f}"
                f" {pct(r.pipeline[ch], 50):>9.2f} / {pct(r.pipeline[ch], 95):>5.2f}"
                f" {r.missing[ch]:>8} {r.extra_messages[ch]:>6}  {'met' if ok else 'NOT met'} (p95 <= {goal:.0f} s)"
            )
        goal_line = f"poll interval {r.interval:g} s; goal: p95 <= poll interval + 5 s"
    print()
    print(goal_line)
    print("poll-wait: publication to the feed's next request; pipeline: that request to the alert's arrival")
    print("extra: messages beyond one per item (other rules, warm-up items), not repeats of one alert")


def plot(results: list[Result], path: Path) -> None:
    """The latency distribution (share of alerts arrived within x seconds) per deployment and channel."""
    series = []
    for r in results:
        for ch in ("email", "slack"):
            lat = sorted(r.latency[ch])
            n = r.items
            series.append((f"{r.deploy}: {ch}", [(0.0, 0.0)] + [(t, (k + 1) / n * 100) for k, t in enumerate(lat)]))
    goal = results[0].interval + 5.0
    series.append((f"goal: p95 within {goal:g} s", [(goal, 0.0), (goal, 95.0), (0.0, 95.0)]))
    line_chart(
        path,
        f"storywatch feed-to-alert latency, feeds polled every {results[0].interval:g} s",
        series,
        "seconds from publication in the feed to the alert's arrival",
        "alerts arrived (%)",
        dashed=lambda label: label.startswith("goal") or label.endswith("slack"),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--items", type=int, default=100, help="measured items per deployment (default 100)")
    ap.add_argument("--interval", type=float, default=2.0, help="feed poll interval in seconds (default 2)")
    ap.add_argument("--gap", type=float, default=1.0, help="mean seconds between items (default 1)")
    ap.add_argument(
        "--deploy",
        nargs="+",
        default=["embedded"],
        choices=["embedded", "kafka", "kafka-pg"],
        help="deployments to measure (default: embedded)",
    )
    ap.add_argument("--json", type=Path, help="also write the raw latencies here")
    ap.add_argument("--svg", type=Path, help="also plot the latency distributions here")
    args = ap.parse_args()
    results = [measure(args, d) for d in args.deploy]
    report(results)
    if args.svg:
        plot(results, args.svg)
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=1))


if __name__ == "__main__":
    main()
