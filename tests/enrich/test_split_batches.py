"""Encoding a batch in sub-batches side by side: the same vectors, in order, on one core each."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import torch

from enrich.config import EmbedConfig
from enrich.embed import (
    MIN_SPLIT,
    BackgroundEmbedder,
    Embedder,
    EncoderWorkers,
    SentenceTransformerEmbedder,
    _split_workers,
)
from tests.enrich.test_encoder_thread import TEXTS


@pytest.fixture(scope="module")
def unsplit() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(EmbedConfig(split=False))


def test_sub_batches_give_the_vectors_of_the_whole_batch(
    embedder: Embedder, unsplit: SentenceTransformerEmbedder
) -> None:
    assert isinstance(embedder, SentenceTransformerEmbedder)
    if torch.get_num_threads() < 2:
        pytest.skip("one core: the encoder does not split batches")
    assert embedder.workers is not None and unsplit.workers is None
    many = [f"{t} ({i})" for i, t in enumerate(TEXTS * 3)]  # more than one batch of 32
    for texts in (TEXTS, TEXTS[: 2 * MIN_SPLIT], many):
        got, want = embedder.encode(texts), unsplit.encode(texts)
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)  # rounding: each sub-batch has its own padding
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_each_worker_runs_one_torch_thread_and_the_process_default_is_kept(embedder: Embedder) -> None:
    assert isinstance(embedder, SentenceTransformerEmbedder)
    workers = embedder.workers
    if workers is None:
        pytest.skip("one core: the encoder does not split batches")
    before = torch.get_num_threads()
    seen = workers._pool.map(lambda _: (threading.current_thread().name, torch.get_num_threads()), range(8))
    assert {n for _, n in seen} == {1}
    with ThreadPoolExecutor(1) as fresh:  # a thread torch has not seen gets the process default
        assert fresh.submit(torch.get_num_threads).result() == before >= 2


class SizeDependent:
    """A model whose vectors depend on the batch they are in: sub-batches would change them."""

    def preprocess(self, texts: list[str]) -> dict[str, Any]:
        return {"n": torch.tensor([len(texts)] * len(texts), dtype=torch.float32)}

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        n = features["n"]
        return {"sentence_embedding": torch.stack([n, torch.ones_like(n)], dim=1)}

    def encode(self, texts: list[str], **kwargs: Any) -> np.ndarray:
        out = self.forward(self.preprocess(texts))["sentence_embedding"]
        return torch.nn.functional.normalize(out, dim=1).numpy()


def test_a_model_whose_vectors_change_in_sub_batches_is_not_split(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="storywatch.enrich"):
        assert _split_workers(SizeDependent(), 2) is None
    assert "not splitting batches" in caplog.text
    assert _split_workers(SizeDependent(), 1) is None  # one thread: nothing to split across


class Gated:
    """A model of numbers ("7" -> the direction (7, 1)); "999" waits for ``gate``, "-1" fails."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def preprocess(self, texts: list[str]) -> dict[str, Any]:
        return {"x": torch.tensor([float(t) for t in texts])}

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        x = features["x"]
        if (x == 999).any():
            assert self.gate.wait(timeout=60)
        if (x == -1).any():
            raise ValueError("model failure")
        return {"sentence_embedding": torch.stack([x, torch.ones_like(x)], dim=1)}


def expected(texts: list[str]) -> np.ndarray:
    rows = np.array([[float(t), 1.0] for t in texts], dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_the_next_batch_starts_on_a_worker_that_has_finished_its_part_of_this_one() -> None:
    model = Gated()
    workers = EncoderWorkers(model, 2, batch_size=32)
    try:
        first_texts = ["999"] + [str(i) for i in range(1, 2 * MIN_SPLIT)]  # two sub-batches, one held back
        second_texts = [str(i) for i in range(100, 100 + MIN_SPLIT)]  # one sub-batch
        first = workers.submit(first_texts)
        second = workers.submit(second_texts)
        # The worker that did the first call's other half took the second call's: it did
        # not wait for the held-back sub-batch.
        np.testing.assert_allclose(second.result(timeout=60), expected(second_texts), atol=1e-6)
        assert not first.done()
        model.gate.set()
        np.testing.assert_allclose(first.result(timeout=60), expected(first_texts), atol=1e-6)
        assert workers.encode(["3", "4"]).shape == (2, 2)  # and the synchronous call is the same path
    finally:
        model.gate.set()
        workers.close()


def test_a_failing_sub_batch_fails_its_call_only() -> None:
    model = Gated()
    model.gate.set()
    workers = EncoderWorkers(model, 2, batch_size=32)
    try:
        failing = workers.submit(["-1"] + [str(i) for i in range(1, 2 * MIN_SPLIT)])
        fine = workers.submit(["5", "6"])
        with pytest.raises(ValueError, match="model failure"):
            failing.result(timeout=60)
        np.testing.assert_allclose(fine.result(timeout=60), expected(["5", "6"]), atol=1e-6)
        assert workers.submit([]).result(timeout=1).shape[0] == 0
        assert workers.encode(["7"]).shape == (1, 2)  # the workers carry on
    finally:
        workers.close()


def test_the_background_embedder_hands_the_texts_to_the_models_own_submit(embedder: Embedder) -> None:
    assert isinstance(embedder, SentenceTransformerEmbedder)
    background = BackgroundEmbedder(embedder)
    futures = [background.submit(TEXTS), background.submit(TEXTS[:3]), background.submit([])]
    got = [f.result(timeout=120) for f in futures]
    np.testing.assert_allclose(got[0], embedder.encode(TEXTS), rtol=0, atol=1e-5)
    np.testing.assert_allclose(got[1], embedder.encode(TEXTS[:3]), rtol=0, atol=1e-5)
    assert got[2].shape[0] == 0
