"""Clustering time per article with 1,000, 10,000 and 100,000 stories in the index.

Synthetic unit vectors (all-MiniLM-L6-v2 width, drawn from a 64-dimensional subspace, as
sentence embeddings have a low intrinsic dimension; uniform 384-d noise is the worst case
of any graph index) and short synthetic titles: the point
is the cost of candidate search, scoring and state upkeep as stories pile up, which
should stay flat (HNSW search is logarithmic; everything else is per candidate).

    .venv/bin/python bench/bench_cluster.py [--sizes 1000,10000,100000] [--probe 2000]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from enrich.cluster import ClusterInput, StoryClusterer
from enrich.config import ClusterConfig

DIM = 384
T0 = datetime(2026, 1, 1, tzinfo=UTC)


INTRINSIC = 64


def _directions(n: int, rng: np.random.Generator) -> np.ndarray:
    basis = np.linalg.qr(np.random.default_rng(0).normal(size=(DIM, INTRINSIC)))[0]
    return _unit(rng.normal(size=(n, INTRINSIC)) @ basis.T)


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def fill(clusterer: StoryClusterer, n: int, rng: np.random.Generator) -> np.ndarray:
    """Create ``n`` stories (random directions: each article starts its own)."""
    bases = _directions(n, rng)
    for i in range(n):
        clusterer.assign(ClusterInput(f"seed{i}", f"Seed story {i} about Place{i % 997}", "", bases[i], T0))
    return bases


def probe(clusterer: StoryClusterer, bases: np.ndarray, m: int, rng: np.random.Generator) -> float:
    """Seconds per article for ``m`` articles: half join existing stories, half are new."""
    picks = rng.integers(0, len(bases), size=m)
    noise = _directions(m, rng)
    vecs = _unit(np.where((np.arange(m) % 2 == 0)[:, None], bases[picks] * 3 + noise, noise))
    start = time.perf_counter()
    for j in range(m):
        clusterer.assign(
            ClusterInput(f"p{j}", f"Probe {j} about Place{picks[j] % 997}", "", vecs[j], T0 + timedelta(seconds=j))
        )
    return (time.perf_counter() - start) / m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--probe", type=int, default=2000)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    for n in sizes:
        rng = np.random.default_rng(n)
        clusterer = StoryClusterer(DIM, ClusterConfig(max_stories=max(sizes) * 2))
        t0 = time.perf_counter()
        bases = fill(clusterer, n, rng)
        fill_s = time.perf_counter() - t0
        results[n] = probe(clusterer, bases, args.probe, rng)
        print(f"stories={n:>7}  fill {fill_s:7.1f} s  assign {results[n] * 1e3:6.3f} ms/article", flush=True)
    base = results[sizes[0]]
    print("ratio vs", sizes[0], ":", "  ".join(f"{n}: {results[n] / base:.2f}x" for n in sizes))


if __name__ == "__main__":
    main()
