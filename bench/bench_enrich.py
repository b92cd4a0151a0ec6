"""Enrich throughput: articles per second through embed + cluster vs. the bare encoder.

Streams a labelled JSONL set (default: the UCI headlines in shared/data) in micro-batches
the way the enrich service does: encode a batch ("title plus lead"), then assign its
articles one by one in order. The gap to the bare encoder is the clusterer's overhead.

    .venv/bin/python bench/bench_enrich.py [--input FILE] [--limit 2000] [--backend torch|onnx]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from enrich.cluster import ClusterInput, StoryClusterer
from enrich.config import ClusterConfig, EmbedConfig
from enrich.embed import article_text, make_embedder
from enrich.evaluate import _published, load_jsonl

DEFAULT_INPUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "uci_headlines.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    config = EmbedConfig(backend=args.backend, batch_size=args.batch)
    records = load_jsonl(args.input)[: args.limit]
    texts = [article_text(r.get("title"), r.get("text"), config.lead_chars) for r in records]
    embedder = make_embedder(config)
    embedder.encode(texts[:8])  # warm-up

    start = time.perf_counter()
    for i in range(0, len(texts), args.batch):
        embedder.encode(texts[i : i + args.batch])
    bare = time.perf_counter() - start

    clusterer = StoryClusterer(embedder.dim, ClusterConfig())
    start = time.perf_counter()
    cluster_s = 0.0
    for i in range(0, len(records), args.batch):
        batch = records[i : i + args.batch]
        vectors = embedder.encode(texts[i : i + args.batch])
        t0 = time.perf_counter()
        for rec, vec in zip(batch, vectors, strict=True):
            clusterer.assign(
                ClusterInput(
                    id=str(rec["id"]), title=rec.get("title") or "", text=rec.get("text") or "", embedding=vec,
                    published=_published(rec.get("published")), source=rec.get("source"), url=rec.get("url"),
                )
            )
        cluster_s += time.perf_counter() - t0
    full = time.perf_counter() - start

    n = len(records)
    print(f"{n} articles, backend={args.backend}, batch={args.batch}")
    print(f"bare encoder     {n / bare:8.1f} articles/s")
    print(f"embed + cluster  {n / full:8.1f} articles/s  ({full / bare:.2f}x the encoder's time)")
    print(f"cluster only     {n / cluster_s:8.1f} articles/s  ({cluster_s / n * 1e3:.2f} ms/article)")


if __name__ == "__main__":
    main()
