"""Shared fixtures of the enrich tests: one embedding model per test session.

Loading all-MiniLM-L6-v2 takes seconds, so every enrich test that needs real
embeddings uses the session-scoped :func:`embedder` instead of loading its own.
"""

from __future__ import annotations

import os

import pytest

from enrich.config import EmbedConfig
from enrich.embed import Embedder, make_embedder


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The bundled all-MiniLM-L6-v2 (offline), loaded once per session."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return make_embedder(EmbedConfig())
