"""The embedder registry and the text that is embedded (no model loaded here)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from enrich.config import EmbedConfig
from enrich.embed import EMBEDDERS, article_text, cpu_quantization, make_embedder


@pytest.mark.parametrize(
    ("title", "text", "lead", "expected"),
    [
        ("Quake hits Chile", "Dozens dead.\nMore later.", 12, "Quake hits Chile. Dozens dead."),
        ("Quake hits Chile?", "Dozens dead.", 400, "Quake hits Chile? Dozens dead."),
        ("Quake  hits\nChile", "Dozens dead.", 0, "Quake hits Chile"),
        (None, "Dozens dead.", 400, "Dozens dead."),
        ("Quake", None, 400, "Quake"),
        (None, None, 400, ""),
    ],
    ids=["title-plus-lead", "keeps-punctuation", "title-only", "no-title", "no-text", "nothing"],
)
def test_article_text(title: str | None, text: str | None, lead: int, expected: str) -> None:
    assert article_text(title, text, lead) == expected


def test_registry_and_unknown_kind() -> None:
    assert "sentence-transformers" in EMBEDDERS
    with pytest.raises(ValueError, match="unknown embedder"):
        make_embedder(EmbedConfig(kind="nope"))


def test_cpu_quantization_is_a_known_target() -> None:
    assert cpu_quantization() in {"avx2", "avx512", "avx512_vnni", "arm64"}


def test_embed_config_is_frozen_and_strict() -> None:
    cfg = EmbedConfig()
    with pytest.raises(ValidationError):
        cfg.lead_chars = 5  # type: ignore[misc]
    with pytest.raises(ValidationError):
        EmbedConfig(unknown=1)  # type: ignore[call-arg]
