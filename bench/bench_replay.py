"""Benchmark: a backfill of the shared data sets through the whole pipeline, compared
with the bare encoder on the same texts.

The labelled sets in ``/work/shared/data`` (``ecbplus.jsonl``: 982 full-text articles;
``uci_headlines.jsonl``: 6,366 headlines) are written as local RSS files read through
``file://`` URLs, as a backfill would find them:

- UCI: the outlets are spread over 16 feeds by a hash of their name, each feed in time
  order, split into files of ``--feed-items`` items (ingest reads at most 500 entries
  of a document, ``ingest.max_entries_per_feed``; every file stays far below the 10 MB
  ``ingest.max_body_bytes``). The channels carry no title, so that each article's
  source is its outlet's host, as it would be in the outlet's own feed.
- ECB+: no dates and no outlets; the documents are dealt round-robin to four feeds
  ("ECB+ wire 0-3") in file order, the full text as the description.

One ``storywatch run --once`` (embedded bus, SQLite store, default enrich settings, two
watched topics, a file channel) takes everything from the feeds to alerts and exits.
The phases are timed from its JSON log: start-up, ingest, enrich (whose first batch
loads the model), alerts, exit. Then, in this process and after the pipeline has exited,
the bare encoder (``enrich.embed.make_embedder`` with the service's ``EmbedConfig``,
``enrich.service.embed_config``) encodes exactly the texts the enrich stage embedded
(``article_text`` of each published article, read back from the bus), in the same
order and batches of ``enrich.embed.batch_size``. Model load is timed separately and
left out of both rates; after it the heap is settled as the stage does
(``storywatch.runtime.settle_heap``).

One round of the two is noisy on a shared machine: the encoder alone has taken from 55 to
67 s on the same texts in one hour, and the ratio of a single round moved by 0.05 either
way with it. So the two alternate for ``--rounds`` rounds (pipeline, encoder, pipeline,
encoder, ...), each pipeline from fresh feeds, bus and store; the summary gives every
round's ratio, their median, and the pooled ratio (all encoder seconds over all enrich
seconds). Not collected by pytest.

Usage: ``python bench/bench_replay.py [--limit N] [--rounds R]`` (N articles of each data
set, default all; R rounds, default 3)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import write_config  # noqa: E402
from enrich.embed import article_text, make_embedder  # noqa: E402
from enrich.service import embed_config  # noqa: E402
from storywatch.bus.embedded import EmbeddedBus  # noqa: E402
from storywatch.runtime import settle_heap  # noqa: E402
from storywatch.schema import Article, decode  # noqa: E402
from storywatch.settings import load_settings  # noqa: E402

DATA = Path("/work/shared/data")
STORYWATCH = ROOT / ".venv" / "bin" / "storywatch"
UCI_FEEDS = 16
ECB_FEEDS = 4

TOPICS = [
    {
        "name": "vehicle recalls",
        "description": "A car maker recalls vehicles over a safety defect.",
        "examples": ["GM recalls 1.6 million cars over faulty ignition switches"],
        "counter_examples": ["Car maker reports record quarterly sales"],
        "channels": ["file"],
    },
    {
        "name": "earthquakes",
        "description": "An earthquake strikes a region, causing damage or casualties.",
        "examples": ["Magnitude 6.1 earthquake strikes northern California", "Strong quake hits Indonesia"],
        "counter_examples": ["Stock market shaken by rate fears"],
        "channels": ["file"],
    },
]


# -- feeds ------------------------------------------------------------------------------


def load_rows(name: str, limit: int | None) -> list[dict[str, Any]]:
    rows = []
    with (DATA / name).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rows.append(json.loads(line))
                if limit is not None and len(rows) >= limit:
                    break
    return rows


def rss_document(title: str | None, link: str, items: list[dict[str, str]]) -> bytes:
    head = f"<title>{escape(title)}</title>" if title else ""
    parts = ['<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>', f"{head}<link>{link}</link>"]
    for it in items:
        parts.append("<item>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in it.items() if v) + "</item>")
    parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")


def _chunks(items: list[dict[str, str]], size: int) -> list[list[dict[str, str]]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def write_feeds(out: Path, uci: list[dict[str, Any]], ecb: list[dict[str, Any]], per_file: int) -> list[Path]:
    """Write the feed files; return them in the order they are configured."""
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    wires: list[list[dict[str, str]]] = [[] for _ in range(ECB_FEEDS)]
    for i, row in enumerate(ecb):
        wires[i % ECB_FEEDS].append(
            {
                "title": row["title"],
                "link": row.get("url") or f"https://ecbplus.example.org/doc/{row['id']}",
                "guid": row["id"],
                "description": row.get("text") or "",
            }
        )
    for w, items in enumerate(wires):
        for c, chunk in enumerate(_chunks(items, per_file)):
            path = out / f"ecb-{w}-{c}.xml"
            path.write_bytes(rss_document(f"ECB+ wire {w}", f"https://ecbplus.example.org/wire{w}", chunk))
            paths.append(path)
    buckets: list[list[dict[str, str]]] = [[] for _ in range(UCI_FEEDS)]
    for row in uci:
        published = datetime.fromisoformat(row["published"].replace("Z", "+00:00")) if row.get("published") else None
        buckets[zlib.crc32(str(row.get("source")).encode()) % UCI_FEEDS].append(
            {
                "title": row["title"],
                "link": row["url"],
                "guid": row["id"],
                "pubDate": format_datetime(published) if published else "",
            }
        )
    for b, items in enumerate(buckets):
        for c, chunk in enumerate(_chunks(items, per_file)):
            path = out / f"uci-{b:02d}-{c}.xml"
            path.write_bytes(rss_document(None, f"https://uci-bucket{b}.example.org/", chunk))
            paths.append(path)
    return paths


def config(tmp: Path, feeds: list[Path]) -> Path:
    return write_config(
        tmp,
        {
            "log": {"level": "INFO", "format": "json"},
            # Local files share one (empty) host: the politeness limits are for web servers.
            "ingest": {"per_host_min_gap_s": 0, "per_host_concurrency": 16},
            "feeds": [{"url": p.as_uri()} for p in feeds],
            "topics": TOPICS,
        },
    )


# -- the pipeline ----------------------------------------------------------------------


@dataclass
class Pipeline:
    wall_s: float  # start to exit
    phases: dict[str, float]  # phase -> seconds
    enriched_at_s: float  # start to the end of the enrich drain
    published: int
    enriched: int
    events: int
    alerts: int
    exit_code: int
    model_load_s: float  # from the enrich stage's own log


def run_pipeline(tmp: Path, cfg: Path) -> Pipeline:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    log_path = tmp / "run.log"
    with log_path.open("wb") as log:
        start_wall = time.time()
        t0 = time.perf_counter()
        proc = subprocess.run(
            [str(STORYWATCH), "run", "--once", "--config", str(cfg)], cwd=ROOT, env=env, stdout=log,
            stderr=subprocess.STDOUT, timeout=3600, check=False,
        )
        wall = time.perf_counter() - t0
    marks: dict[str, float] = {}
    model_load = 0.0
    for line in log_path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        at = datetime.fromisoformat(rec["ts"]).timestamp() - start_wall
        if rec.get("message") == "started":
            marks["started"] = at
        elif rec.get("message") == "drained":
            marks[str(rec.get("stage"))] = at
        elif rec.get("message") == "embedding model loaded" and not model_load:
            model_load = float(rec.get("seconds", 0.0))
    if proc.returncode != 0 or not {"started", "ingest", "enrich", "alerts"} <= marks.keys():
        raise RuntimeError(f"storywatch run --once failed ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
    phases = {
        "start-up (imports, config, bus, store)": marks["started"],
        "ingest (read, parse, normalise, dedupe, publish)": marks["ingest"] - marks["started"],
        "enrich (model load, embed, cluster, match, events)": marks["enrich"] - marks["ingest"],
        "alerts (rules, delivery log, file channel)": marks["alerts"] - marks["enrich"],
        "close and exit": wall - marks["alerts"],
    }
    bus = EmbeddedBus(tmp / "bus.db")
    try:
        raw = "storywatch.raw-articles"
        published, enriched = bus.end_offset(raw), bus.committed("storywatch-enrich", raw)
        events = bus.end_offset("storywatch.story-events")
    finally:
        bus.close()
    alerts_file = tmp / "alerts.jsonl"
    alerts = alerts_file.read_bytes().count(b"\n") if alerts_file.exists() else 0
    return Pipeline(wall, phases, marks["enrich"], published, enriched, events, alerts, proc.returncode, model_load)


# -- the bare encoder ------------------------------------------------------------------


@dataclass
class Encoder:
    load_s: float
    encode_s: float
    per_set: dict[str, tuple[int, float]]  # data set -> (articles, seconds)
    articles: int


def embedded_texts(tmp: Path, lead_chars: int) -> list[tuple[str, str]]:
    """(data set, text) of every article enrich embedded, in bus order (first copy of each id)."""
    bus = EmbeddedBus(tmp / "bus.db")
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    try:
        offset = 0
        while records := bus.read("storywatch.raw-articles", offset, 1000):
            for rec in records:
                art = decode(Article, rec.topic, rec.value)
                if art.id not in seen:
                    seen.add(art.id)
                    kind = "ecb" if any("/ecb-" in f for f in art.feeds) else "uci"
                    out.append((kind, article_text(art.title, art.summary, lead_chars)))
            offset = records[-1].offset + 1
    finally:
        bus.close()
    return out


def bare_encoder(cfg: Path, texts: list[tuple[str, str]]) -> Encoder:
    ec = embed_config(load_settings(cfg))
    t0 = time.perf_counter()
    embedder = make_embedder(ec)
    load = time.perf_counter() - t0
    settle_heap()  # as the enrich stage does once its model is loaded
    per_set: dict[str, list[float]] = {}
    total = 0.0
    for i in range(0, len(texts), ec.batch_size):
        batch = texts[i : i + ec.batch_size]
        t = time.perf_counter()
        embedder.encode([text for _, text in batch])
        dt = time.perf_counter() - t
        total += dt
        for kind, _ in batch:  # a batch spanning both sets is shared by article
            acc = per_set.setdefault(kind, [0.0, 0.0])
            acc[0] += 1
            acc[1] += dt / len(batch)
    return Encoder(load, total, {k: (int(v[0]), v[1]) for k, v in per_set.items()}, len(texts))


# -- report ----------------------------------------------------------------------------


def report(p: Pipeline, e: Encoder, n_uci: int, n_ecb: int, n_files: int) -> str:
    n = e.articles
    enrich_phase = p.phases["enrich (model load, embed, cluster, match, events)"]
    enrich_net = enrich_phase - p.model_load_s
    lines = [
        f"Input: {n_uci:,} UCI headlines + {n_ecb:,} ECB+ articles in {n_files} feed files;"
        f" ingest published {p.published:,}, enrich embedded {n:,} (distinct ids) and committed {p.enriched:,};"
        f" {p.events:,} story events; {p.alerts:,} alerts to the file channel; exit code {p.exit_code}.",
        "",
        "| phase of `storywatch run --once` | seconds | share |",
        "|---|---:|---:|",
    ]
    for name, secs in p.phases.items():
        lines.append(f"| {name} | {secs:.1f} | {secs / p.wall_s:.0%} |")
    lines.append(f"| **total, start to exit** | **{p.wall_s:.1f}** | |")
    lines += [
        "",
        "| measure | articles | seconds | articles/s |",
        "|---|---:|---:|---:|",
        f"| pipeline, start to all enriched (model load included) | {n:,} | {p.enriched_at_s:.1f}"
        f" | {n / p.enriched_at_s:.1f} |",
        f"| pipeline, start to exit | {n:,} | {p.wall_s:.1f} | {n / p.wall_s:.1f} |",
        f"| pipeline, enrich phase less model load ({p.model_load_s:.1f} s, from the stage's log)"
        f" | {n:,} | {enrich_net:.1f} | {n / enrich_net:.1f} |",
        f"| bare encoder, same texts, same batches (model load excluded) | {n:,} | {e.encode_s:.1f}"
        f" | {n / e.encode_s:.1f} |",
    ]
    for kind, label in (("uci", "UCI headlines"), ("ecb", "ECB+ title + 400-char lead")):
        if kind in e.per_set:
            k, secs = e.per_set[kind]
            lines.append(f"| bare encoder, {label} only | {k:,} | {secs:.1f} | {k / secs:.1f} |")
    lines += [
        "",
        f"Ratio, pipeline enrich phase (less model load) to bare encoder: **{(n / enrich_net) / (n / e.encode_s):.2f}**"
        f" of the encoder's rate; whole pipeline, start to exit: **{(n / p.wall_s) / (n / e.encode_s):.2f}**.",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="articles of each data set (default: all)")
    ap.add_argument("--feed-items", type=int, default=400, help="items per feed file (default 400, at most 500)")
    ap.add_argument("--rounds", type=int, default=3, help="pipeline and encoder rounds, alternating (default 3)")
    ap.add_argument("--keep", type=Path, help="keep the feeds, config, bus, store and log in this directory")
    args = ap.parse_args()
    if not 1 <= args.feed_items <= 500:
        ap.error("--feed-items must be between 1 and 500 (ingest.max_entries_per_feed)")
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    uci = load_rows("uci_headlines.jsonl", args.limit)
    ecb = load_rows("ecbplus.jsonl", args.limit)
    rounds: list[tuple[Pipeline, Encoder]] = []
    for r in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="sw-replay-") as tmpdir:
            tmp = (args.keep / f"round-{r}") if args.keep else Path(tmpdir)
            tmp.mkdir(parents=True, exist_ok=True)
            feeds = write_feeds(tmp / "feeds", uci, ecb, args.feed_items)
            cfg = config(tmp, feeds)
            print(f"round {r}: pipeline, {len(uci):,} UCI + {len(ecb):,} ECB+ articles in {len(feeds)} feed files ...",
                  flush=True)
            pipe = run_pipeline(tmp, cfg)
            print(f"round {r}: pipeline done in {pipe.wall_s:.1f} s; bare encoder ...", flush=True)
            lead = embed_config(load_settings(cfg)).lead_chars
            enc = bare_encoder(cfg, embedded_texts(tmp, lead))
        rounds.append((pipe, enc))
        print(f"\n### Round {r}\n\n{report(pipe, enc, len(uci), len(ecb), len(feeds))}\n", flush=True)
    print(summary(rounds))


def summary(rounds: list[tuple[Pipeline, Encoder]]) -> str:
    """Each round's ratio of the enrich phase (less model load) to the encoder, the median and the pooled one."""
    ratios = [e.encode_s / _enrich_net(p) for p, e in rounds]
    whole = [e.encode_s / p.wall_s for p, e in rounds]
    pooled = sum(e.encode_s for _, e in rounds) / sum(_enrich_net(p) for p, _ in rounds)
    stage = [_enrich_net(p) - e.encode_s for p, e in rounds]
    return (
        f"Summary of {len(rounds)} rounds: enrich phase to bare encoder "
        + ", ".join(f"{x:.2f}" for x in ratios)
        + f"; median **{statistics.median(ratios):.2f}**, pooled **{pooled:.2f}**"
        + f" (whole pipeline: median {statistics.median(whole):.2f}). The stage's own work"
        + " (enrich phase less model load less encoder): "
        + ", ".join(f"{x:.1f}" for x in stage)
        + " s."
    )


def _enrich_net(p: Pipeline) -> float:
    return p.phases["enrich (model load, embed, cluster, match, events)"] - p.model_load_s


if __name__ == "__main__":
    main()
