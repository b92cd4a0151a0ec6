"""Clustering quality on labelled article streams: BCubed precision, recall and F1.

BCubed scores every article: precision is the share of its predicted story that has its
gold label, recall the share of its gold story that landed in its predicted story. It
is the usual measure for news-stream clustering because, unlike pairwise scores, it is
not dominated by the largest stories.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from enrich.cluster import ClusterInput, StoryClusterer
from enrich.config import ClusterConfig
from enrich.embed import Embedder, article_text


def bcubed(predicted: Sequence[Hashable], gold: Sequence[Hashable]) -> tuple[float, float, float]:
    """BCubed ``(precision, recall, f1)`` of a predicted clustering against gold labels.

    >>> bcubed(["a", "a", "b"], [1, 1, 1])
    (1.0, 0.5555555555555556, 0.7142857142857143)
    """
    if len(predicted) != len(gold):
        raise ValueError("predicted and gold differ in length")
    n = len(gold)
    if n == 0:
        return 0.0, 0.0, 0.0
    cells = Counter(zip(predicted, gold, strict=True))
    pred_sizes = Counter(predicted)
    gold_sizes = Counter(gold)
    precision = sum(k * k / pred_sizes[p] for (p, _), k in cells.items()) / n
    recall = sum(k * k / gold_sizes[g] for (_, g), k in cells.items()) / n
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def load_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _published(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def cluster_records(
    records: Sequence[Mapping[str, Any]],
    embeddings: np.ndarray,
    config: ClusterConfig | None = None,
) -> tuple[list[str], StoryClusterer]:
    """Assign ``records`` in order; return each one's final story id (after merges)."""
    clusterer = StoryClusterer(int(embeddings.shape[1]), config)
    ids = []
    for rec, vec in zip(records, embeddings, strict=True):
        a = clusterer.assign(
            ClusterInput(
                id=str(rec["id"]),
                title=rec.get("title") or "",
                text=rec.get("text") or "",
                embedding=vec,
                published=_published(rec.get("published")),
                source=rec.get("source") or None,
                url=rec.get("url") or None,
            )
        )
        ids.append(a.story_id)
    return [clusterer.resolve(s) for s in ids], clusterer


def embed_records(
    records: Iterable[Mapping[str, Any]], embedder: Embedder, lead_chars: int = 400, batch_size: int = 64
) -> np.ndarray:
    """Embed "title plus lead" of each record, in micro-batches."""
    texts = [article_text(r.get("title"), r.get("text"), lead_chars) for r in records]
    parts = [embedder.encode(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, embedder.dim), dtype=np.float32)


def evaluate_records(
    records: Sequence[Mapping[str, Any]], embeddings: np.ndarray, config: ClusterConfig | None = None
) -> dict[str, Any]:
    """Cluster pre-embedded records and score them against their ``story`` labels."""
    start = time.perf_counter()
    predicted, clusterer = cluster_records(records, embeddings, config)
    gold = [str(r["story"]) for r in records]
    p, r, f1 = bcubed(predicted, gold)
    return {
        "articles": len(records),
        "gold_stories": len(set(gold)),
        "predicted_stories": len(set(predicted)),
        "merges": clusterer.merge_count,
        "precision": round(p, 4),
        "recall": round(r, 4),
        "f1": round(f1, 4),
        "cluster_seconds": round(time.perf_counter() - start, 3),
    }


def evaluate_file(
    path: str | Path,
    config: ClusterConfig | None,
    embedder: Embedder,
    shuffle_seed: int | None = None,
    lead_chars: int = 400,
) -> dict[str, Any]:
    """Stream a labelled JSONL file (gold label in ``story``) through embed and cluster.

    With ``shuffle_seed`` the articles are shuffled first (dates, if any, still apply).
    """
    records = [r for r in load_jsonl(path) if r.get("story") is not None]
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(records)
    start = time.perf_counter()
    embeddings = embed_records(records, embedder, lead_chars)
    embed_seconds = time.perf_counter() - start
    result = evaluate_records(records, embeddings, config)
    result["embed_seconds"] = round(embed_seconds, 3)
    result["input"] = str(path)
    result["shuffle_seed"] = shuffle_seed
    return result
