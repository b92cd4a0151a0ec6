"""Benchmark: the enrich stage's own cost (everything but the encoder) in a backfill.

The shared data sets (``uci_headlines.jsonl``, 6,366 headlines, and ``ecbplus.jsonl``,
982 full-text articles) are published as :class:`storywatch.schema.Article` records to
a fresh embedded bus, as ingest would (ECB+ first, dealt to four wires; then UCI). Then:

1. The bare encoder embeds the texts the stage would embed, in the service's batches:
   the baseline, measured in this run.
2. :class:`enrich.service.EnrichService` drains the bus (default settings, SQLite store,
   two watched topics, JSON logs to a file) with an embedder that hands back the vectors
   of step 1. What it spends is the stage's own work: polling and decoding, clustering,
   topic scoring, story events, the read model, snapshots.

The ratio printed is the one ``bench_replay.py`` reports for the enrich phase,
predicted from these two: ``encoder / (encoder + stage)``. With ``--vectors FILE`` the
vectors (and the encoder's time) are saved on the first run and reused after, to
iterate on the stage alone; the ratio then uses the saved time. The stage's CPU time is
printed too: it runs on one thread, so that is its work, and it varies less than the wall
clock when the machine is shared. ``--profile`` prints
the stage's top functions by own time (cProfile); ``--assignments FILE`` writes
``article_id story_id`` lines, to check that a change left the stories alone.

Usage: ``python bench/bench_enrich_stage.py [--limit N] [--vectors F.npz] [--profile] [--assignments F]``
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import pstats
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_replay import TOPICS, load_rows  # noqa: E402
from bench.common import write_config  # noqa: E402
from enrich.embed import article_text, make_embedder  # noqa: E402
from enrich.service import EnrichService, embed_config  # noqa: E402
from storywatch.bus.embedded import EmbeddedBus  # noqa: E402
from storywatch.clock import SystemClock  # noqa: E402
from storywatch.logs import configure  # noqa: E402
from storywatch.runtime import settle_heap  # noqa: E402
from storywatch.schema import Article  # noqa: E402
from storywatch.settings import load_settings  # noqa: E402
from storywatch.store import make_store  # noqa: E402

ECB_FEEDS = 4


def articles(limit: int | None) -> list[Article]:
    """The data sets as ingest would publish them (ids, sources and dates alike)."""
    now = datetime.now(UTC)
    out = []
    for i, row in enumerate(load_rows("ecbplus.jsonl", limit)):
        wire = f"ECB+ wire {i % ECB_FEEDS}"
        out.append(
            Article(
                id=f"ecb-{row['id']}", url=row.get("url"), guid=str(row["id"]), title=row["title"],
                summary=" ".join(str(row.get("text") or "").split())[:4000], published=now, fetched_at=now,
                source=wire, source_host="ecbplus.example.org", feeds=[wire],
            )
        )
    for row in load_rows("uci_headlines.jsonl", limit):
        host = urlsplit(row.get("url") or "").hostname or ""
        published = datetime.fromisoformat(row["published"].replace("Z", "+00:00")) if row.get("published") else now
        out.append(
            Article(
                id=f"uci-{row['id']}", url=row.get("url"), guid=str(row["id"]), title=row["title"],
                published=min(published, now), fetched_at=now, source=host, source_host=host, feeds=["uci"],
            )
        )
    return out


class CachedEmbedder:
    """Hands back precomputed vectors by text: the stage without the encoder's cost."""

    def __init__(self, vectors: dict[str, np.ndarray], dim: int) -> None:
        self._vectors = vectors
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts])


def encode_all(texts: list[str], extra: list[str], batch: int, cfg: Any) -> tuple[dict[str, np.ndarray], float]:
    """Vectors of ``texts`` in the service's batches (timed) and of ``extra`` (not timed)."""
    embedder = make_embedder(cfg)
    embedder.encode(texts[:8])  # warm-up
    out: dict[str, np.ndarray] = {}
    seconds = 0.0
    for i in range(0, len(texts), batch):
        chunk = texts[i : i + batch]
        t0 = time.perf_counter()
        vecs = embedder.encode(chunk)
        seconds += time.perf_counter() - t0
        out.update(zip(chunk, vecs, strict=True))
    if extra:
        out.update(zip(extra, embedder.encode(extra), strict=True))
    return out, seconds


def anchor_texts() -> list[str]:
    """What the topic matcher embeds once at start (names, descriptions, examples, counters)."""
    out = []
    for t in TOPICS:
        out += [t["name"], t["description"], *t["examples"], *t["counter_examples"]]
    return out


def run_stage(tmp: Path, arts: list[Article], vectors: dict[str, np.ndarray], dim: int, profile: bool) -> tuple:
    cfg_path = write_config(tmp, {"log": {"level": "INFO", "format": "json"}, "topics": TOPICS})
    settings = load_settings(cfg_path)
    bus = EmbeddedBus(tmp / "bus.db")
    topic = settings.bus.topics.raw_articles
    bus.ensure_topics([topic, settings.bus.topics.story_events, settings.bus.topics.dead_letters])
    producer = bus.producer()
    for art in arts:
        producer.publish(topic, art.id, art.to_bytes())
    producer.flush()
    store = make_store(settings.resolved_store())
    assigned: list[tuple[str, str]] = []
    service = EnrichService(
        settings, bus, store, SystemClock(), embedder=CachedEmbedder(vectors, dim),
        on_assign=lambda a, s: assigned.append((a, s)),
    )
    settle_heap()  # as the service does once its model is loaded (here: the saved vectors)
    prof = cProfile.Profile() if profile else None
    t0, cpu0 = time.perf_counter(), time.process_time()
    if prof:
        prof.enable()
    service.drain()
    if prof:
        prof.disable()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    service.close()
    events = bus.end_offset(settings.bus.topics.story_events)
    store.close()
    bus.close()
    return seconds, cpu, assigned, events, prof


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="articles of each data set (default: all)")
    ap.add_argument("--vectors", type=Path, help="save the encoder's vectors here, or reuse them if saved")
    ap.add_argument(
        "--profile", nargs="?", const="-", metavar="FILE",
        help="profile the stage (cProfile): print the top 30 by own time, and save the stats to FILE if given",
    )
    ap.add_argument("--assignments", type=Path, help="write 'article_id story_id' lines here")
    args = ap.parse_args()

    arts = articles(args.limit)
    with tempfile.TemporaryDirectory(prefix="sw-enrich-stage-") as tmpdir:
        tmp = Path(tmpdir)
        ecfg = embed_config(load_settings(write_config(tmp, {"topics": TOPICS})))
        texts = list(dict.fromkeys(article_text(a.title, a.summary, ecfg.lead_chars) for a in arts))
        if args.vectors and args.vectors.exists():
            saved = np.load(args.vectors, allow_pickle=False)
            vectors = dict(zip(saved["texts"].tolist(), saved["vectors"], strict=True))
            encode_s = float(saved["encode_s"])
            how = f"saved in {args.vectors}"
        else:
            vectors, encode_s = encode_all(texts, anchor_texts(), ecfg.batch_size, ecfg)
            how = "measured in this run"
            if args.vectors:
                keys = list(vectors)
                np.savez(args.vectors, texts=np.array(keys), vectors=np.stack([vectors[k] for k in keys]),
                         encode_s=encode_s)
        dim = int(next(iter(vectors.values())).shape[0])
        configure("INFO", "json")  # as `storywatch run` logs, but to a file
        with (tmp / "enrich.log").open("w", encoding="utf-8") as log_file:
            handler = logging.getLogger().handlers[0]
            assert isinstance(handler, logging.StreamHandler)
            handler.setStream(log_file)
            stage_s, stage_cpu, assigned, events, prof = run_stage(tmp, arts, vectors, dim, bool(args.profile))
            handler.setStream(sys.stderr)

    n = len(assigned)
    if args.assignments:
        args.assignments.write_text("".join(f"{a} {s}\n" for a, s in assigned))
    print(f"{len(arts):,} articles, {n:,} assigned, {events:,} story events")
    print(f"bare encoder ({how}): {encode_s:6.1f} s  {len(texts) / encode_s:7.1f} articles/s")
    print(f"enrich stage less the encoder: {stage_s:6.1f} s  {n / stage_s:7.1f} articles/s"
          f"  ({stage_s / n * 1e3:.2f} ms/article)")
    # One thread, so its CPU time is its work; far steadier than the wall clock on a shared machine.
    print(f"enrich stage less the encoder, CPU time: {stage_cpu:6.1f} s")
    print(f"predicted enrich phase (encoder + stage) to bare encoder: {encode_s / (encode_s + stage_s):.2f}")
    if prof:
        print()
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(30)
        if args.profile != "-":
            prof.dump_stats(args.profile)


if __name__ == "__main__":
    main()
