"""Benchmark: enrichment throughput through the real stage against the bare encoder,
paired block by block in one process.

``bench_replay.py`` times the whole pipeline, then the bare encoder a minute later; on a
shared machine the encoder alone has taken anything from 54 to 66 s on the same texts
within the hour, so one round's ratio moves by more than anything the stage changes.
Here the two take turns at the grain of a block of articles (512 by default, 16
micro-batches), so that both see the same machine:

1. The shared data sets are the input (ECB+ first, dealt to four wires; then the UCI
   headlines: ``bench_enrich_stage.articles``).
2. The model is loaded once (``make_embedder`` with the service's ``EmbedConfig``) and
   :class:`enrich.service.EnrichService` (default settings, SQLite store, two watched
   topics, JSON logs to a file) runs its service loop, ``step`` after ``step``, with that
   model. The topic anchors are embedded before timing starts, as at start-up.
3. Each block is published to the embedded bus (untimed), and the stage steps until it
   has processed it. The stage encodes the next micro-batch while it clusters this one
   (``enrich.embed.pipeline``); the bus holds nothing beyond the block, so its pipeline
   is empty at the block's end (the last batch of each block is clustered with nothing
   to hide it: a small handicap for the stage).
4. The bare encoder (the same model object, ``encode`` and nothing else) embeds the
   block's texts in the same micro-batches: after the block on even blocks, before it on
   odd ones, so that neither side always goes first. That the stage embedded exactly
   these batches is checked. It does so twice: one batch after another, each call
   waiting for its vectors, and with all of the block's batches queued at once
   (``bare_queued``), the encoder's best on these texts. The stage hands the encoder
   its next batch while it clusters this one, so it may beat the first; the second
   is the stricter baseline.

Printed: the stage's time (its steps and the final checkpoint), the bare encoder's two
times, the ratios of their rates (the issue's goal: at least 0.9), how long the stage's encoder
was busy, and the rest: the stage's own work that the encoding did not hide. Model load
is outside both.

With ``--unsplit-too``, a second copy of the model that encodes each batch whole (torch's
own way of using the cores; ``enrich.embed.split: false``) takes its turn beside the bare
encoder on every block: a second baseline, to measure what encoding in sub-batches gains.

Usage: ``python bench/bench_enrich_paired.py [--limit N] [--block B] [--no-pipeline] [--no-split]
[--unsplit-too] [--threads T]`` (N articles of each set).
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_enrich_stage import articles  # noqa: E402
from bench.bench_replay import TOPICS  # noqa: E402
from bench.common import write_config  # noqa: E402
from enrich.embed import BackgroundEmbedder, Embedder, article_text, make_embedder  # noqa: E402
from enrich.service import EnrichService, embed_config  # noqa: E402
from storywatch.bus.embedded import EmbeddedBus  # noqa: E402
from storywatch.clock import SystemClock  # noqa: E402
from storywatch.logs import configure  # noqa: E402
from storywatch.runtime import settle_heap  # noqa: E402
from storywatch.schema import Article  # noqa: E402
from storywatch.settings import load_settings  # noqa: E402
from storywatch.store import make_store  # noqa: E402


class TimedEmbedder:
    """The model as the stage sees it: records what each call embeds, and when it started and ended.

    Calls may overlap (``submit``: a micro-batch queues behind the last one), so the time the
    encoder was busy is the union of the calls' spans (:func:`busy`).
    """

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.calls: list[list[Any]] = []  # [texts, started, ended]

    @property
    def dim(self) -> int:
        return self.inner.dim

    def encode(self, texts: list[str]) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.inner.encode(texts)
        self.calls.append([list(texts), t0, time.perf_counter()])
        return out

    def submit(self, texts: list[str]) -> Future[np.ndarray]:
        call = [list(texts), time.perf_counter(), None]
        self.calls.append(call)
        future: Future[np.ndarray] = BackgroundEmbedder(self.inner).submit(texts)
        future.add_done_callback(lambda _: call.__setitem__(2, time.perf_counter()))
        return future


def busy(calls: list[list[Any]]) -> float:
    """Seconds covered by at least one call's span."""
    total, reach = 0.0, float("-inf")
    for _, start, end in sorted(calls, key=lambda c: c[1]):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def bare(model: Embedder, batches: list[list[str]]) -> float:
    t0 = time.perf_counter()
    for texts in batches:
        model.encode(texts)
    return time.perf_counter() - t0


def bare_queued(model: Embedder, batches: list[list[str]]) -> float:
    """The bare encoder at its best on these batches: all of them handed over at once.

    Each call of :func:`bare` waits for the batch's last sub-batch while a core may sit
    idle; queued, a worker goes on to the next batch. The stage, which hands over the next
    batch while it clusters this one, can beat :func:`bare` but not this.
    """
    background = BackgroundEmbedder(model)
    t0 = time.perf_counter()
    for future in [background.submit(texts) for texts in batches]:
        future.result()
    return time.perf_counter() - t0


def run(
    tmp: Path, arts: list[Article], block: int, embed: dict[str, Any], unsplit_too: bool
) -> dict[str, float]:
    config = {"log": {"level": "INFO", "format": "json"}, "topics": TOPICS, "enrich": {"embed": embed}}
    settings = load_settings(write_config(tmp, config))
    ecfg = embed_config(settings)
    bus = EmbeddedBus(tmp / "bus.db")
    topic = settings.bus.topics.raw_articles
    bus.ensure_topics([topic, settings.bus.topics.story_events, settings.bus.topics.dead_letters])
    producer = bus.producer()
    store = make_store(settings.resolved_store())
    model = make_embedder(ecfg)
    # The same model encoding each batch whole (torch splits each operation across the cores).
    unsplit = make_embedder(ecfg.model_copy(update={"split": False})) if unsplit_too else None
    settle_heap()  # as the service does once its model is loaded
    timed = TimedEmbedder(model)
    service = EnrichService(settings, bus, store, SystemClock(), embedder=timed)
    service.start()
    service._model()  # start-up: the topic anchors are embedded here, outside the timing
    timed.calls.clear()
    texts = [article_text(a.title, a.summary, ecfg.lead_chars) for a in arts]
    size = ecfg.batch_size
    stage_s = bare_s = queued_s = unsplit_s = stage_encoder_s = 0.0
    done = steps = 0
    for n, start in enumerate(range(0, len(arts), block)):
        # The block goes on the bus untimed; the stage's pipeline empties at its end.
        for art in arts[start : start + block]:
            producer.publish(topic, art.id, art.to_bytes())
        producer.flush()
        batches = [texts[i : min(i + size, start + block, len(arts))] for i in range(start, start + block, size)]
        batches = [b for b in batches if b]
        before = n % 2 == 1
        if before:
            bare_s += bare(model, batches)
            queued_s += bare_queued(model, batches)
            if unsplit is not None:
                unsplit_s += bare(unsplit, batches)
        t0 = time.perf_counter()
        handled = 0
        while handled < sum(map(len, batches)):
            took = service.step(0.0)
            if not took:
                raise RuntimeError(f"block {n}: the stage took nothing with articles left")
            handled += took
            steps += 1
        stage_s += time.perf_counter() - t0
        embedded = [c[0] for c in timed.calls]
        if embedded != batches:
            raise RuntimeError(f"block {n}: the stage embedded other texts or batches than the block's")
        if not before:
            if unsplit is not None:
                unsplit_s += bare(unsplit, batches)
            queued_s += bare_queued(model, batches)
            bare_s += bare(model, batches)
        done += handled
        stage_encoder_s += busy(timed.calls)
        timed.calls.clear()
    t0 = time.perf_counter()
    service.checkpoint()  # what the last steps left unsaved, as drain and close do
    stage_s += time.perf_counter() - t0
    service.close()
    store.close()
    bus.close()
    return {
        "articles": done, "steps": steps, "stage": stage_s, "bare": bare_s, "queued": queued_s, "unsplit": unsplit_s,
        "stage_encoder": stage_encoder_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="articles of each data set (default: all)")
    ap.add_argument("--block", type=int, default=512, help="articles per turn of each side (default: 512)")
    ap.add_argument(
        "--no-pipeline", action="store_true", help="enrich.embed.pipeline: false (encode, then cluster, in turn)"
    )
    ap.add_argument("--threads", type=int, default=None, help="enrich.embed.threads (default: every core)")
    ap.add_argument("--no-split", action="store_true", help="enrich.embed.split: false (each batch encoded whole)")
    ap.add_argument(
        "--unsplit-too", action="store_true",
        help="also time the model encoding each batch whole, as a second baseline (a second copy of the model)",
    )
    args = ap.parse_args()
    embed = {"pipeline": not args.no_pipeline, "threads": args.threads, "split": not args.no_split}
    arts = articles(args.limit)
    with tempfile.TemporaryDirectory(prefix="sw-enrich-paired-") as tmpdir:
        tmp = Path(tmpdir)
        configure("INFO", "json")  # as `storywatch run` logs, but to a file
        with (tmp / "enrich.log").open("w", encoding="utf-8") as log_file:
            handler = logging.getLogger().handlers[0]
            assert isinstance(handler, logging.StreamHandler)
            handler.setStream(log_file)
            r = run(tmp, arts, args.block, embed, args.unsplit_too)
            handler.setStream(sys.stderr)
    n, stage, bare_s, enc = r["articles"], r["stage"], r["bare"], r["stage_encoder"]
    print(f"{n:,} articles in {r['steps']:,} steps (micro-batches), pipeline {'off' if args.no_pipeline else 'on'}, "
          f"split {'off' if args.no_split else 'on'}, encoder threads {args.threads or 'all'}")
    print(f"enrich stage (steps + final checkpoint): {stage:6.1f} s  {n / stage:6.1f} articles/s")
    print(f"bare encoder, same texts and batches:    {bare_s:6.1f} s  {n / bare_s:6.1f} articles/s")
    print(f"  the stage's encoder was busy {enc:.1f} s of it; not hidden behind it: {stage - enc:.1f} s")
    print(f"ratio, stage to bare encoder: {bare_s / stage:.3f}")
    queued = r["queued"]
    print(f"bare encoder, each block's batches queued at once: {queued:6.1f} s  {n / queued:6.1f} articles/s")
    print(f"ratio, stage to that: {queued / stage:.3f}")
    if args.unsplit_too:
        unsplit_s = r["unsplit"]
        print(f"bare encoder, each batch whole (split off): {unsplit_s:6.1f} s  {n / unsplit_s:6.1f} articles/s")
        print(f"ratio, stage to that: {unsplit_s / stage:.3f}; bare encoder to that: {unsplit_s / bare_s:.3f}")


if __name__ == "__main__":
    main()
