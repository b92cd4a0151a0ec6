"""Fault injection end to end: SIGKILL one stage at a random moment, restart it, check nothing is lost or repeated.

A known stream flows: the seed feeds (seeds/feeds) served by a local HTTP server. Each
stage runs as its own process (``python -m storywatch <stage>``) with its own state
file, as on separate machines. One undisturbed run gives the reference; then every
trial starts the three stages afresh, SIGKILLs the chosen stage at a uniformly random
moment within the reference run's duration, restarts it at once, waits until the
stream is through, and checks:

- every raw article on the bus has a story in the enrich state (the snapshot's
  ``article_story`` map, aliases resolved);
- the stories (as sets of article ids) equal the undisturbed run's;
- every alert the undisturbed run sent arrives at the SMTP server (``X-Storywatch-Key``)
  and the Slack stand-in (context ``storywatch `KEY```) exactly once; a repeat is
  tolerated only when the alerts stage marked that delivery ``uncertain`` (it died
  between the receiver accepting and the ``sent`` record), and is counted;
- every process stops with exit code 0 on SIGTERM at the end.

Usage::

    python -m bench.faults --trials 20 --bus embedded --stage all
    python -m bench.faults --trials 20 --bus kafka --stage enrich --json results.json

The Kafka runs start a tansu broker (memory-only) for the whole run; every trial gets
its own topics and consumer groups.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.servers import SlackServer, SMTPServer

ROOT = Path(__file__).resolve().parents[1]
FEEDS = ROOT / "seeds" / "feeds"
STAGES = ("ingest", "enrich", "alerts")
TOPIC_NAMES = ("raw_articles", "story_events", "feed_health", "alerts", "dead_letters")
SLACK_KEY = re.compile(r"storywatch `([^`]+)`")


@dataclass
class Outcome:
    """What one run (undisturbed or faulted) produced, and what went wrong."""

    stage: str | None
    kill_at_s: float | None
    articles: int = 0
    stories: list[list[str]] = field(default_factory=list)
    email_keys: list[str] = field(default_factory=list)
    slack_keys: list[str] = field(default_factory=list)
    uncertain: list[str] = field(default_factory=list)
    exit_codes: list[int | None] = field(default_factory=list)
    duration_s: float = 0.0
    problems: list[str] = field(default_factory=list)
    signal: str = "SIGKILL"

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def repeats(self) -> int:
        return sum(n - 1 for n in Counter(self.email_keys + self.slack_keys).values() if n > 1)


@contextmanager
def feed_server() -> Iterator[str]:
    """The seed feeds over HTTP (conditional GET included, from the stdlib handler)."""
    handler = functools.partial(_QuietHandler, directory=str(FEEDS))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def bus_section(kind: str, workdir: Path, bootstrap: str | None) -> dict[str, Any]:
    """The ``bus`` config: the embedded log in ``workdir``, or fresh Kafka topics for this run."""
    if kind == "embedded":
        return {"kind": "embedded", "path": str(workdir / "bus.db")}
    suffix = uuid.uuid4().hex[:8]
    return {
        "kind": "kafka",
        "bootstrap_servers": [bootstrap],
        "max_poll_interval_ms": 3000,
        "session_timeout_ms": 3000,
        "request_timeout_ms": 10_000,
        "partitions": 1,
        "topics": {name: f"faults-{suffix}.{name}" for name in TOPIC_NAMES},
    }


def write_config(workdir: Path, feed_base: str, smtp: SMTPServer, bus: dict[str, Any]) -> Path:
    suffix = uuid.uuid4().hex[:8]
    cfg: dict[str, Any] = {
        "bus": bus,
        "ingest": {"tick_s": 1, "min_interval_s": 5, "default_interval_s": 30, "per_host_min_gap_s": 0},
        "feeds": [{"url": f"{feed_base}/{p.name}"} for p in sorted(FEEDS.iterdir()) if p.is_file()],
        "topics": [
            {
                "name": "missile launches",
                "description": "A country test-fires or launches ballistic or cruise missiles.",
                "examples": ["North Korea fires ballistic missile into the sea"],
                "counter_examples": ["Rocket company launches communications satellites into orbit"],
                "severity": "high",
                "channels": ["email", "slack"],
            },
            {
                "name": "earthquakes",
                "description": "A strong earthquake strikes; damage, casualties and tsunami warnings.",
                "examples": ["Magnitude 7 earthquake strikes off the coast of Chile"],
                "severity": "high",
                "channels": ["email", "slack"],
            },
            {
                "name": "interest rates",
                "description": "A central bank raises, cuts or holds its policy interest rate.",
                "examples": ["ECB holds rates steady as inflation cools"],
                "severity": "medium",
                "channels": ["email", "slack"],
            },
        ],
        "alerts": {
            "group": f"faults-alerts-{suffix}",
            "channels": {
                "email": {
                    "kind": "email",
                    "host": smtp.host,
                    "port": smtp.port,
                    "security": "none",
                    "from_addr": "storywatch@example.org",
                    "to": ["analyst@example.org"],
                    "timeout_s": 2,
                },
                "slack": {"kind": "slack", "webhook_url": {"env": "SW_FAULTS_SLACK_WEBHOOK"}, "timeout_s": 2},
            },
            "default_channels": ["email"],
            "operator_channels": ["email"],
            "claim_lease_s": 3.0,
            "backoff_base_s": 0.1,
            "backoff_max_s": 1.0,
        },
        "enrich": {"group": f"faults-enrich-{suffix}"},
        "http": {"enabled": False},
    }
    path = workdir / "storywatch.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class Pipeline:
    """The three stage processes of one run, each with its own state file and log."""

    def __init__(self, workdir: Path, config: Path, slack: SlackServer):
        self.workdir, self.config = workdir, config
        self.env = dict(os.environ, HF_HUB_OFFLINE="1", SW_FAULTS_SLACK_WEBHOOK=slack.webhook_url)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, stage: str) -> None:
        env = dict(self.env, STORYWATCH__STORE__PATH=str(self.workdir / f"{stage}-state.db"))
        with open(self.workdir / f"{stage}.log", "ab") as log:
            self.procs[stage] = subprocess.Popen(
                [sys.executable, "-m", "storywatch", stage, "--config", str(self.config)],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            )

    def kill(self, stage: str, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to the stage and wait for it to exit; its exit code."""
        proc = self.procs[stage]
        proc.send_signal(sig)
        return proc.wait(60)

    def dead(self) -> list[str]:
        return [s for s, p in self.procs.items() if p.poll() is not None]

    def stop(self, timeout: float = 60) -> list[int | None]:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for p in self.procs.values():
            try:
                codes.append(p.wait(timeout))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                codes.append(None)
        return codes

    def log_tail(self, chars: int = 1500) -> str:
        return "\n".join(
            f"--- {s}\n{(self.workdir / f'{s}.log').read_text(errors='replace')[-chars:]}" for s in STAGES
        )


class RawArticles:
    """Every raw article id on the bus, read with a consumer group of its own."""

    def __init__(self, config: Path, env: dict[str, str]):
        from storywatch.bus import make_bus
        from storywatch.settings import load_settings

        settings = load_settings(config, environ=env)
        self.bus = make_bus(settings.resolved_bus())
        self.bus.ensure_topics([settings.bus.topics.raw_articles])
        self.consumer = self.bus.consumer(f"faults-check-{uuid.uuid4().hex[:8]}", [settings.bus.topics.raw_articles])
        self.ids: set[str] = set()

    def read(self) -> set[str]:
        from storywatch.schema import Article, decode

        while records := self.consumer.poll(500, 0.5):
            for r in records:
                self.ids.add(decode(Article, r.topic, r.value).id)
        return self.ids

    def close(self) -> None:
        self.consumer.close()
        self.bus.close()


def story_assignment(state_db: Path) -> dict[str, str]:
    """article id -> story id from the enrich stage's last snapshot (empty before the first)."""
    from enrich.maplog import MapLog
    from enrich.service import ARTICLES_KEY_PREFIX, STATE_KEY
    from storywatch.errors import StoreError
    from storywatch.store.sqlite import SQLiteStore

    if not state_db.exists():
        return {}
    try:
        store = SQLiteStore(state_db)
        try:
            with store.transaction():  # one consistent view while the stage writes
                doc = store.get("enrich", STATE_KEY)
                if not doc:
                    return {}
                events = doc["events"]
                if "articles_log" in events:  # snapshot version 4: the map in a map log
                    article_story = MapLog(store, "enrich", ARTICLES_KEY_PREFIX).load(events["articles_log"])
                else:
                    article_story = events["article_story"]
        finally:
            store.close()
    except (StoreError, sqlite3.Error):
        return {}
    aliases: dict[str, str] = events.get("aliases", {})

    def resolve(sid: str) -> str:
        seen = set()
        while sid in aliases and sid not in seen:
            seen.add(sid)
            sid = aliases[sid]
        return sid

    return {a: resolve(s) for a, s in article_story.items()}


def partition(assign: dict[str, str]) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for a, s in assign.items():
        groups.setdefault(s, []).append(a)
    return sorted(sorted(g) for g in groups.values())


def uncertain_keys(state_db: Path) -> list[str]:
    from storywatch.store.sqlite import SQLiteStore

    if not state_db.exists():
        return []
    store = SQLiteStore(state_db)
    try:
        return [str(d["key"]) for _, d in store.scan("alerts.deliveries") if d.get("uncertain")]
    finally:
        store.close()


def received(smtp: SMTPServer, slack: SlackServer) -> tuple[list[str], list[str]]:
    email_keys = [str(m.message["X-Storywatch-Key"]) for m in smtp.messages]
    slack_keys = [k for m in slack.messages for k in SLACK_KEY.findall(json.dumps(m.blocks))]
    return email_keys, slack_keys


def run_once(
    feed_base: str,
    bus_kind: str,
    bootstrap: str | None,
    reference: Outcome | None,
    stage: str | None,
    kill_at_s: float | None,
    *,
    sig: int = signal.SIGKILL,
    timeout_s: float = 180,
    grace_s: float = 3.0,
) -> Outcome:
    """One run of the pipeline; with ``stage``, send it ``sig`` (SIGKILL) ``kill_at_s`` seconds in
    and restart it. A stage stopped with SIGTERM must exit 0 (a clean shutdown)."""
    out = Outcome(stage, kill_at_s)
    with tempfile.TemporaryDirectory(prefix="sw-faults-") as tmp, SMTPServer() as smtp, SlackServer() as slack:
        workdir = Path(tmp)
        config = write_config(workdir, feed_base, smtp, bus_section(bus_kind, workdir, bootstrap))
        pipe = Pipeline(workdir, config, slack)
        started = time.monotonic()
        for s in STAGES:
            pipe.start(s)
        raw: RawArticles | None = None
        killed = stage is None
        try:
            raw = RawArticles(config, pipe.env)
            deadline = started + timeout_s
            settled_at: float | None = None
            while time.monotonic() < deadline:
                now = time.monotonic() - started
                if not killed and kill_at_s is not None and stage is not None and now >= kill_at_s:
                    code = pipe.kill(stage, sig)
                    if sig == signal.SIGTERM and code != 0:
                        out.problems.append(f"{stage} exited {code} on SIGTERM mid-stream")
                    pipe.start(stage)
                    killed = True
                if dead := pipe.dead():
                    out.problems.append(f"stage(s) exited early: {dead}")
                    break
                if killed and _done(raw, workdir, smtp, slack, reference):
                    if settled_at is None:
                        settled_at = time.monotonic()
                        out.duration_s = settled_at - started
                    elif time.monotonic() - settled_at >= grace_s:
                        break
                else:
                    settled_at = None
                time.sleep(0.3)
            else:
                out.problems.append(f"not through within {timeout_s:.0f} s")
        finally:
            out.exit_codes = pipe.stop()
            if raw is not None:
                ids = raw.read()
                raw.close()
            else:
                ids = set()
        assign = story_assignment(workdir / "enrich-state.db")
        out.articles = len(ids)
        out.stories = partition({a: s for a, s in assign.items() if a in ids})
        out.email_keys, out.slack_keys = received(smtp, slack)
        out.uncertain = uncertain_keys(workdir / "alerts-state.db")
        _judge(out, ids, assign, reference)
        if out.problems and os.environ.get("FAULTS_VERBOSE"):
            print(pipe.log_tail(), file=sys.stderr)
    return out


def _done(raw: RawArticles, workdir: Path, smtp: SMTPServer, slack: SlackServer, ref: Outcome | None) -> bool:
    ids = raw.read()
    if not ids or (ref is not None and len(ids) < ref.articles):
        return False
    assign = story_assignment(workdir / "enrich-state.db")
    if not ids <= assign.keys():
        return False
    email_keys, slack_keys = received(smtp, slack)
    if ref is None:
        return bool(email_keys) and bool(slack_keys)
    return set(ref.email_keys) <= set(email_keys) and set(ref.slack_keys) <= set(slack_keys)


def _judge(out: Outcome, ids: set[str], assign: dict[str, str], ref: Outcome | None) -> None:
    if any(c != 0 for c in out.exit_codes):
        out.problems.append(f"exit codes on SIGTERM {out.exit_codes}")
    missing = ids - assign.keys()
    if missing:
        out.problems.append(f"{len(missing)} of {len(ids)} articles have no story")
    for name, keys in (("email", out.email_keys), ("slack", out.slack_keys)):
        repeats = [k for k, n in Counter(keys).items() if n > 1 and k not in set(out.uncertain)]
        if repeats:
            out.problems.append(f"{name}: delivered more than once and not marked uncertain: {repeats}")
    if ref is None:
        return
    if out.articles != ref.articles:
        out.problems.append(f"{out.articles} articles, reference {ref.articles}")
    if out.stories != ref.stories:
        out.problems.append("story assignments differ from the undisturbed run")
    for name, got, want in (("email", out.email_keys, ref.email_keys), ("slack", out.slack_keys, ref.slack_keys)):
        if set(got) != set(want):
            out.problems.append(f"{name}: keys {sorted(set(got) ^ set(want))} differ from the undisturbed run")


@contextmanager
def broker(bus_kind: str, bootstrap: str | None) -> Iterator[str | None]:
    if bus_kind != "kafka" or bootstrap:
        yield bootstrap
        return
    from tests.kafka_broker import TansuBroker

    b = TansuBroker()
    try:
        b.start()
        yield b.bootstrap
    finally:
        b.close()


def run_trials(
    trials: int,
    bus_kind: str,
    stages: list[str],
    seed: int,
    bootstrap: str | None = None,
    log: Any = None,
    sig: int = signal.SIGKILL,
    sigterm_stages: tuple[str, ...] = (),
) -> tuple[Outcome, list[Outcome]]:
    """The reference run, then ``trials`` faulted runs per stage in ``stages`` (signal
    ``sig``), plus ``trials`` SIGTERM runs per stage in ``sigterm_stages``."""
    rng = random.Random(seed)
    with feed_server() as feeds, broker(bus_kind, bootstrap) as addr:
        reference = run_once(feeds, bus_kind, addr, None, None, None)
        if not reference.ok:
            raise SystemExit(f"the undisturbed run failed: {reference.problems}")
        if log:
            print(
                f"reference: {reference.articles} articles, {len(reference.stories)} stories, "
                f"{len(reference.email_keys)} emails, {len(reference.slack_keys)} Slack, "
                f"{reference.duration_s:.1f} s",
                file=log, flush=True,
            )
        outcomes = []
        plan = [(stage, sig) for stage in stages] + [(stage, signal.SIGTERM) for stage in sigterm_stages]
        for i in range(trials):
            for stage, signum in plan:
                kill_at = rng.uniform(0.5, max(1.0, reference.duration_s))
                o = run_once(feeds, bus_kind, addr, reference, stage, kill_at, sig=signum)
                o.signal = signal.Signals(signum).name
                outcomes.append(o)
                if log:
                    verdict = "ok" if o.ok else "FAIL " + "; ".join(o.problems)
                    print(
                        f"trial {i + 1} {bus_kind} {o.signal} {stage} at {kill_at:.1f} s: {verdict} "
                        f"(repeats {o.repeats}, uncertain {len(o.uncertain)}, {o.duration_s:.1f} s)",
                        file=log, flush=True,
                    )
    return reference, outcomes


def summary(bus_kind: str, outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """One row per (signal, stage): trials, passes, repeats of uncertain deliveries."""
    rows = []
    for sig in sorted({o.signal for o in outcomes}):
        for stage in STAGES:
            mine = [o for o in outcomes if o.stage == stage and o.signal == sig]
            if mine:
                rows.append({
                    "bus": bus_kind,
                    "signal": sig,
                    "stage": stage,
                    "trials": len(mine),
                    "passed": sum(o.ok for o in mine),
                    "uncertain_repeats": sum(o.repeats for o in mine),
                    "failures": [p for o in mine for p in o.problems],
                })
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20, help="faulted runs per stage")
    ap.add_argument("--bus", choices=["embedded", "kafka"], default="embedded")
    ap.add_argument("--stage", choices=[*STAGES, "all"], default="all")
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--signal", choices=["KILL", "TERM"], default="KILL", help="the signal sent to the stage")
    ap.add_argument("--bootstrap", default=None, help="an existing Kafka broker (default: start tansu)")
    ap.add_argument("--json", type=Path, default=None, help="write every outcome here")
    args = ap.parse_args(argv)
    stages = list(STAGES) if args.stage == "all" else [args.stage]
    sig = getattr(signal, "SIG" + args.signal)
    reference, outcomes = run_trials(args.trials, args.bus, stages, args.seed, args.bootstrap, log=sys.stdout, sig=sig)
    rows = summary(args.bus, outcomes)
    print("| bus | signal | stage | trials | passed | uncertain repeats |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['bus']} | {r['signal']} | {r['stage']} | {r['trials']} | {r['passed']} | {r['uncertain_repeats']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(
            {"reference": asdict(reference), "outcomes": [asdict(o) for o in outcomes], "summary": rows}, indent=1
        ))
    sys.exit(0 if all(o.ok for o in outcomes) else 1)


if __name__ == "__main__":
    main()
