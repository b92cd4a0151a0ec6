"""The real all-MiniLM-L6-v2 model on a small labelled sample of ECB+ (two topics, four events)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from enrich.config import ClusterConfig
from enrich.embed import Embedder, article_text
from enrich.evaluate import embed_records, evaluate_records, load_jsonl

# Topics 1 and 3 of ECB+ (see tests/enrich/data/README.md for the credit).
DATA = Path(__file__).resolve().parent / "data" / "ecbplus_topics_1_3.jsonl"


@pytest.fixture(scope="module")
def sample() -> list[dict[str, object]]:
    """Two ECB+ topics: each holds two different events of the same kind (hard negatives)."""
    records = load_jsonl(DATA)
    assert {r["topic"] for r in records} == {"1", "3"}
    random.Random(0).shuffle(records)
    return records


def test_embedder_gives_unit_vectors(embedder: Embedder) -> None:
    out = embedder.encode(["Quake hits Chile", article_text("Quake", "Dozens dead in Santiago.", 400), ""])
    assert out.shape == (3, embedder.dim) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-4)
    assert embedder.encode([]).shape == (0, embedder.dim)


def test_real_embeddings_separate_events_of_the_same_kind(embedder: Embedder, sample: list[dict]) -> None:
    vectors = embed_records(sample, embedder)
    result = evaluate_records(sample, vectors, ClusterConfig())
    assert result["gold_stories"] == 4
    assert result["f1"] >= 0.75, result
    assert result["precision"] >= 0.7, result
