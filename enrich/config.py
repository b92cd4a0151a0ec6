"""Typed, frozen settings of the embedder and the story clusterer.

The core settings embed these models under ``enrich:`` in YAML; they are self-contained
so that the clusterer can be built and tested without the rest of storywatch. Every
default is the one measured in ``enrich/QUALITY.md``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class EmbedConfig(BaseModel):
    """Which sentence encoder turns an article into a vector, and from which text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = "sentence-transformers"
    """Name of the embedder implementation in ``enrich.embed.EMBEDDERS``."""
    model: str | None = None
    """Model name or local path; None = the bundled all-MiniLM-L6-v2."""
    backend: Literal["torch", "onnx"] = "torch"
    """``onnx`` runs a dynamically quantised copy built locally at first use (``cache_dir``)."""
    onnx_quantization: Literal["auto", "avx2", "avx512", "avx512_vnni", "arm64"] = "auto"
    """Dynamic int8 quantisation target of the ONNX copy; ``auto`` picks by CPU flags."""
    cache_dir: str | None = None
    """Where the quantised ONNX copy is kept; None = the user's data directory."""
    batch_size: int = Field(32, ge=1, le=4096)
    """Articles encoded per call; the caller micro-batches the stream into this size."""
    lead_chars: int = Field(400, ge=0, le=20_000)
    """Characters of body text appended to the title ("title plus lead"); 0 = title only."""
    threads: int | None = Field(None, ge=1, le=256)
    """CPU threads for the encoder; None = the library default."""
    jit: bool = True
    """Torch backend: run the transformer as a traced TorchScript graph. It gives the same
    vectors (checked at load; the eager model is kept if not), and it runs the whole forward
    pass without holding Python's GIL, so another thread can work meanwhile."""
    split: bool = True
    """Traced torch model on more than one thread: encode a batch as sub-batches side by
    side, one per thread, each on one core, rather than each matrix operation across all
    of them (``enrich.embed.EncoderWorkers``). Faster; the vectors differ from the unsplit
    ones only by rounding."""


class ClusterConfig(BaseModel):
    """How articles are grouped into stories, online, in one pass.

    An article joins the best-scoring candidate story when its embedding similarity to
    the story is *strong*, or *plausible* and backed by shared rare terms and entities;
    otherwise it starts a story. See :mod:`enrich.cluster` for the rule and
    ``enrich/QUALITY.md`` for why these values.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    similarity_z: float = Field(2.5, ge=0, le=10)
    """A candidate's cosine must be at least ``mean - similarity_z * sd`` of the cosines at which
    articles joined that story so far (its cohesion), shrunk towards the prior for young stories."""
    overlap_z: float = Field(1.0, ge=0, le=10)
    """Likewise for the IDF-weighted term overlap, unless the cosine alone is strong..."""
    evidence_terms: int = Field(36, ge=0, le=1000)
    """The overlap gate widens by sqrt(evidence_terms / terms) for an article with fewer terms
    (a headline): an overlap measured on a few words is a noisy estimate. 0 = never widen."""
    combined_z: float | None = Field(None, ge=0, le=20)
    """If set, replaces the two gates above by one: join when ``z(cosine) + z(overlap) >= -combined_z``."""
    strong_z: float = Field(1.0, ge=-10, le=10)
    """...that is, at least ``mean + strong_z * sd`` of the story's join cosines."""
    min_similarity: float = Field(0.25, ge=-1, le=1)
    """Absolute floor: below this cosine an article never joins, whatever the statistics say."""
    prior_similarity: float = Field(0.72, ge=-1, le=1)
    """Typical join cosine assumed before the stream has shown its own (MiniLM scale)."""
    prior_overlap: float = Field(0.30, ge=0, le=1)
    """Typical join overlap assumed before the stream has shown its own."""
    prior_spread: float = Field(0.12, gt=0, le=1)
    """Spread of join cosines assumed before a story has shown its own."""
    prior_weight: float = Field(40.0, ge=0, le=1e9)
    """How many joins the priors are worth."""
    entity_boost: float = Field(2.0, ge=1, le=10)
    """Weight of entity-like terms (names, figures) relative to other rare words."""
    term_chars: int = Field(1000, ge=0, le=100_000)
    """Characters of body text (after the title) scanned for terms."""
    profile_terms: int = Field(64, ge=8, le=1024)
    """Terms kept per story profile (the most frequent among its articles)."""
    max_df_terms: int = Field(200_000, ge=1000)
    """Terms tracked for document frequencies; the rarer half is forgotten beyond this."""

    candidates: int = Field(10, ge=1, le=256)
    """Nearest stories fetched from the ANN index and scored exactly."""
    hnsw_m: int = Field(12, ge=4, le=128)
    """HNSW graph degree. With the two below, chosen for a flat cost per article (bench_cluster);
    candidates are rescored exactly, so a rare ANN miss costs little."""
    hnsw_ef_construction: int = Field(40, ge=8, le=2000)
    hnsw_ef: int = Field(32, ge=8, le=2000)
    reindex_drift: float = Field(0.005, ge=0, le=1)
    """A story is re-indexed once its centroid's cosine to the indexed copy drops by this much."""
    seed: int = 0
    """Seed of the ANN index: the same input in the same order gives the same stories."""

    near_duplicate_similarity: float = Field(0.95, ge=0, le=1)
    """Cosine to a recent article of the story at or above which an article is a copy."""
    recent_vectors: int = Field(4, ge=0, le=64)
    """Recent article vectors kept per story for near-duplicate checks."""

    dormant_after_hours: float = Field(72.0, gt=0)
    """A story without articles for this long is dormant..."""
    dormant_z: float = Field(0.0, ge=-10, le=10)
    """...and takes only articles at least ``mean + dormant_z * sd`` close (story cohesion), with shared terms."""
    cool_after_gaps: float | None = Field(50.0, gt=0)
    """A story idle for more than this many of its own recent gaps between articles (its pace, see
    ``pace_window``) is cooling and, like a dormant one, takes only very close articles. Scale-free:
    seconds for a burst of wire copies, days for a slow story. None = off; needs article times."""
    evict_after_hours: float = Field(14 * 24.0, gt=0)
    """A story without articles for this long is forgotten (state and index)."""
    max_stories: int = Field(50_000, ge=10)
    """Stories kept at most; the longest-idle go first."""

    merge_z: float = Field(0.0, ge=-10, le=10)
    """Two stories whose centroids are ``median + merge_z * spread`` close, and whose terms overlap
    typically, are merged."""
    co_active_merge_z: float | None = Field(-1.5, ge=-10, le=10)
    """Merge bar (in place of ``merge_z``) for two stories that ran at the same time, provided each
    would take the other's centroid by its own cosine gate: a burst that split in two is more likely
    one story than two stories far apart in time. None = off."""
    co_active_gaps: float = Field(3.0, ge=0)
    """Two stories ran at the same time when their spans overlap or lie within this many of their
    recent gaps between articles."""
    pace_window: int = Field(32, ge=2, le=512)
    """A story's pace is its mean gap between articles over this many latest ones."""
    velocity_window_hours: float = Field(6.0, gt=0)
    """Velocity is articles per hour over this window before the story's last article."""
    key_terms: int = Field(10, ge=0, le=100)
    """Key terms and entities shown in a story's snapshot."""
    max_sources: int = Field(1000, ge=1)
    """Distinct source names remembered per story (the count saturates beyond)."""

    @model_validator(mode="after")
    def _ordered(self) -> ClusterConfig:
        if self.evict_after_hours < self.dormant_after_hours:
            raise ValueError("evict_after_hours must be at least dormant_after_hours")
        return self
