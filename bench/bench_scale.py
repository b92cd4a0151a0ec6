"""Benchmark: enrich scale-out on Kafka, 1 embed worker against 2, measured in one run.

Starts a Kafka-protocol broker (tansu, ``tests/kafka_broker.py``), publishes ``--limit``
UCI headlines (``shared/data``) to the raw articles topic (6 partitions), and runs
``storywatch enrich --role embed`` workers as separate processes in one consumer group.
Throughput is articles per second between 10 % and 90 % of the embedded articles
reaching the embedded-articles topic, so model loading and group joins are left out.
Each worker serves ``/metrics``; the bench checks that every worker embedded a share.

Arrangements, all in the same run:

- ``1 worker``: one process using every core (the baseline);
- ``2 workers``: two such processes (on a 2-core host they share the same cores);
- ``1 worker, 1 thread`` and ``2 workers, 1 thread each``: ``enrich.embed.threads: 1``,
  which shows how throughput follows the cores workers are given;
- the story writer (``--role cluster``) alone over the embedded articles: the ceiling
  of the split, since every embedded article goes through that one process.

    .venv/bin/python bench/bench_scale.py [--limit 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storywatch.bus.kafka import KafkaBus  # noqa: E402
from storywatch.schema import Article  # noqa: E402
from storywatch.settings import Settings  # noqa: E402
from tests.kafka_broker import TansuBroker, free_port  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "uci_headlines.jsonl"
STORYWATCH = str(Path(sys.executable).parent / "storywatch")


@dataclass
class Outcome:
    name: str
    rate: float
    shares: list[int]


def articles(limit: int) -> list[Article]:
    now = datetime.now(UTC)
    out = []
    with DATA.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            published = datetime.fromisoformat(row["published"].replace("Z", "+00:00"))
            out.append(
                Article(
                    id=row["id"], title=row["title"], summary=row.get("text", ""), url=row.get("url"),
                    source=row.get("source", ""), published=published, fetched_at=now,
                )
            )
            if len(out) >= limit:
                break
    return out


def write_config(tmp: Path, bootstrap: str, run: str) -> Path:
    cfg = {
        "bus": {
            "kind": "kafka",
            "bootstrap_servers": [bootstrap],
            "partitions": 6,
            "max_poll_interval_ms": 3000,
            "session_timeout_ms": 3000,
            "topics": {
                "raw_articles": f"raw.{run}",
                "embedded_articles": f"embedded.{run}",
                "story_events": f"events.{run}",
                "dead_letters": f"dead.{run}",
            },
        },
        "store": {"kind": "sqlite", "path": str(tmp / "state.db")},
        "log": {"level": "WARNING"},
        "http": {"enabled": True, "host": "127.0.0.1"},
        "topics": [{"name": "missile launches", "description": "A country launches missiles."}],
        "enrich": {"group": f"cluster.{run}", "embed_group": f"embed.{run}"},
    }
    path = tmp / f"{run}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


@contextmanager
def workers(config: Path, role: str, n: int, threads: int | None) -> Iterator[list[int]]:
    """``n`` enrich processes of ``role``; yields the ports of their /metrics."""
    ports = [free_port() for _ in range(n)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if threads:
        env["STORYWATCH__ENRICH__EMBED__THREADS"] = str(threads)
    procs = [
        subprocess.Popen(
            [STORYWATCH, "enrich", "--role", role, "--config", str(config)],
            env={**env, "STORYWATCH__HTTP__PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        yield ports
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def consumed(port: int) -> int:
    """Records a worker has consumed, from its /metrics (0 until it serves them)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return 0
    return int(sum(float(m) for m in re.findall(r"^storywatch_records_consumed_total\{[^}]*\} (\S+)$", text, re.M)))


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def measure(name: str, ports: list[int], total: int, publish: object | None = None) -> Outcome:
    """Wait for the workers to be ready (and join), publish, then time 10 % → 90 %."""
    deadline = time.monotonic() + 180
    while not all(ready(p) for p in ports):
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: workers not ready after 180 s")
        time.sleep(0.5)
    if callable(publish):
        time.sleep(8)  # let every member join the group before the load arrives
        publish()
    marks: dict[float, float] = {}
    deadline = time.monotonic() + 1800
    while len(marks) < 2:
        done = sum(consumed(p) for p in ports)
        for frac in (0.1, 0.9):
            if frac not in marks and done >= frac * total:
                marks[frac] = time.monotonic()
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: only {done} of {total} consumed after 30 min")
        time.sleep(0.1)
    rate = 0.8 * total / (marks[0.9] - marks[0.1])
    while sum(consumed(p) for p in ports) < total and time.monotonic() < deadline:
        time.sleep(0.2)
    return Outcome(name, rate, [consumed(p) for p in ports])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=3000)
    args = parser.parse_args()
    arts = articles(args.limit)
    broker = TansuBroker().start()
    results: list[Outcome] = []
    try:
        with tempfile.TemporaryDirectory(prefix="storywatch-scale-") as tmpdir:
            tmp = Path(tmpdir)
            arrangements = [("1 worker", 1, None), ("2 workers", 2, None),
                            ("1 worker, 1 thread", 1, 1), ("2 workers, 1 thread each", 2, 1)]
            last_config = None
            for i, (name, n, threads) in enumerate(arrangements):
                config = write_config(tmp, broker.bootstrap, f"r{i}")
                settings = Settings.model_validate(yaml.safe_load(config.read_text()))
                bus = KafkaBus(settings.bus)
                topics = settings.bus.topics
                bus.ensure_topics([topics.raw_articles, topics.embedded_articles, topics.dead_letters])

                def publish(bus: KafkaBus = bus, topic: str = topics.raw_articles) -> None:
                    producer = bus.producer()
                    for a in arts:
                        producer.publish(topic, a.id, a.to_bytes())
                    producer.flush()
                    producer.close()

                with workers(config, "embed", n, threads) as ports:
                    outcome = measure(name, ports, len(arts), publish)
                bus.close()
                results.append(outcome)
                print(f"{name:28} {outcome.rate:7.1f} articles/s  shares {outcome.shares}", flush=True)
                last_config = config
            assert last_config is not None
            # The story writer over what the last arrangement embedded.
            with workers(last_config, "cluster", 1, None) as ports:
                writer = measure("story writer (cluster role)", ports, len(arts))
            print(f"{writer.name:28} {writer.rate:7.1f} articles/s", flush=True)
    finally:
        broker.close()

    base = results[0].rate
    base1 = results[2].rate
    print()
    print(f"{len(arts)} UCI headlines, tansu, 6 partitions, {os.cpu_count()} cores; rate from 10 % to 90 % done")
    print("| arrangement | articles/s | ratio | articles embedded by each worker |")
    print("|---|---:|---:|---|")
    for r in results:
        ref = base1 if "thread" in r.name else base
        print(f"| {r.name} | {r.rate:.1f} | {r.rate / ref:.2f}x | {', '.join(map(str, r.shares))} |")
    print(f"| story writer alone (cluster role) | {writer.rate:.1f} | {writer.rate / base:.2f}x of 1 worker | - |")
    missing = [r.name for r in results if 0 in r.shares]
    if missing:
        print(f"WARNING: a worker embedded nothing in: {', '.join(missing)}")


if __name__ == "__main__":
    main()
