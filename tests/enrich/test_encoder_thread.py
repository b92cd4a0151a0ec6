"""The traced model and the encoder thread: the same vectors as the eager model, in order."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import pytest

from enrich.config import EmbedConfig
from enrich.embed import BackgroundEmbedder, Embedder, SentenceTransformerEmbedder, _trace_forward, _TracedForward

LONG = " ".join(["The rescue teams searched the collapsed buildings of the old town through the night."] * 40)
TEXTS = [
    "Quake hits Chile",
    "Officials in Santiago count the dead as rescuers search the collapsed buildings",
    LONG,  # beyond the model's 256 tokens: truncated
    "",
    *[f"Storm {i} makes landfall; {i * 1000} homes without power" for i in range(33)],  # more than one batch
]


def test_the_traced_model_gives_the_eager_models_vectors(embedder: Embedder) -> None:
    assert isinstance(embedder, SentenceTransformerEmbedder) and embedder.traced
    eager = SentenceTransformerEmbedder(EmbedConfig(jit=False))
    assert not eager.traced
    for texts in (TEXTS, TEXTS[:1], TEXTS[2:3]):
        np.testing.assert_allclose(embedder.encode(texts), eager.encode(texts), rtol=0, atol=1e-6)


class Untraceable:
    """A model whose tokenizer fails: tracing gives up and the eager forward stays."""

    def __init__(self) -> None:
        self.forward = self.eager

    def eager(self, features: dict[str, Any]) -> dict[str, Any]:
        return features

    def preprocess(self, texts: list[str]) -> dict[str, Any]:
        raise RuntimeError("no tokenizer here")


def test_a_model_that_cannot_be_traced_runs_eagerly(caplog: pytest.LogCaptureFixture) -> None:
    model = Untraceable()
    with caplog.at_level(logging.WARNING, logger="storywatch.enrich"):
        assert _trace_forward(model) is False
    assert model.forward == model.eager
    assert "cannot trace the embedding model" in caplog.text


def test_features_unlike_the_traced_ones_go_to_the_eager_forward() -> None:
    calls: list[str] = []

    def graph(*tensors: Any) -> str:
        calls.append("graph")
        return "traced"

    def eager(features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        calls.append("eager")
        return {**features, "sentence_embedding": "eager"}

    forward = _TracedForward(graph, ("input_ids", "attention_mask"), {"modality": "text"}, eager)
    text = {"input_ids": 1, "attention_mask": 2, "modality": "text"}
    assert forward(text)["sentence_embedding"] == "traced"
    assert forward({**text, "modality": "image"})["sentence_embedding"] == "eager"
    assert forward({"input_ids": 1, "modality": "text"})["sentence_embedding"] == "eager"
    assert forward({**text, "token_type_ids": 0})["sentence_embedding"] == "eager"
    assert forward(text, task="query")["sentence_embedding"] == "eager"
    assert calls == ["graph", "eager", "eager", "eager", "eager"]


class Recording:
    """Records on which thread, and in which order, the texts were encoded."""

    dim = 2

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        if texts == ["boom"]:
            raise ValueError("model failure")
        self.calls.append((threading.current_thread().name, texts))
        return np.ones((len(texts), 2), dtype=np.float32)


def test_the_background_embedder_encodes_in_order_on_one_thread_and_reports_errors() -> None:
    inner = Recording()
    background = BackgroundEmbedder(inner)
    assert background.dim == 2
    first, second = background.submit(["a", "b"]), background.submit(["c"])
    assert background.encode(["d"]).shape == (1, 2)
    assert first.result().shape == (2, 2) and second.result().shape == (1, 2)
    assert [texts for _, texts in inner.calls] == [["a", "b"], ["c"], ["d"]]
    assert {name for name, _ in inner.calls} != {threading.current_thread().name}
    assert len({name for name, _ in inner.calls}) == 1
    with pytest.raises(ValueError, match="model failure"):
        background.encode(["boom"])
    assert background.encode(["e"]).shape == (1, 2)  # the thread carries on
