"""Settings of the enrich stage and the watched topics."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from storywatch.settings.base import Named, Section

Severity = Literal["low", "medium", "high", "critical"]


class EmbedSettings(Section):
    model: str | None = Field(None, description="model name or path; None = the bundled all-MiniLM-L6-v2")
    backend: Literal["torch", "onnx"] = "torch"
    batch_size: int = Field(32, ge=1, le=4096)
    batch_ms: int = Field(200, ge=0)
    text: Literal["title", "title_lead", "title_text"] = "title_lead"
    lead_chars: int = Field(400, ge=0)
    threads: int | None = Field(None, ge=1, le=256)
    """CPU threads of the encoder; None = every core. Give each of several embed workers
    on one host its share (two workers on two cores: 1 each), or they contend."""
    pipeline: bool = True
    """Encode the next micro-batch (in the background, on the encoder's own threads) while
    this one is clustered and published. The stories are the same either way; False does
    one thing at a time."""
    split: bool = True
    """Torch backend on more than one core: encode a micro-batch as sub-batches side by side,
    one core each, rather than each matrix operation across all cores. The stage ran about
    1.24 times as fast on 2 cores; the vectors differ only by rounding."""


class TopicMatchSettings(Section):
    """How an article's text is scored against a watched topic (see :mod:`enrich.topics`).

    The score is the cosine similarity to the centroid of the topic's name, description
    and examples (or to the closest of them, less ``anchor_slack``), raised for broad
    topics whose anchors disagree (``coherence_*``), lowered when the
    article is about as close (within ``counter_margin``) or closer to a counter-example
    than to the closest anchor; keyword gates subtract ``gate_penalty``.
    """

    anchor_slack: float = Field(0.15, ge=0, le=2)
    """An article this much closer to one anchor than the threshold matches on it alone."""
    coherence_ref: float = Field(0.5, ge=-1, le=1)
    """Topics whose anchors agree less than this (leave-one-out similarity) count as broad..."""
    coherence_weight: float = Field(2.0, ge=0, le=5)
    """...and their scores rise by this times the shortfall (the breadth allowance)..."""
    max_allowance: float = Field(0.3, ge=0, le=1)
    """...at most this much."""

    counter_margin: float = Field(0.05, ge=0, le=1)
    """A counter-example within this much of the best positive similarity starts to penalise."""
    counter_weight: float = Field(1.0, ge=0, le=5)
    """How strongly a closer counter-example lowers the score."""
    gate_penalty: float = Field(1.0, ge=0, le=2)
    """Subtracted from the score of an article a keyword gate rejects (it ranks below the rest)."""


class EventSettings(Section):
    """When a story change is material enough for a new revision (see :mod:`enrich.events`)."""

    source_step: int = Field(2, ge=1)
    """An ``updated`` event with ``new_sources`` once independent sources grew by this many."""
    velocity_window_s: float = Field(6 * 3600.0, gt=0)
    """Velocity is articles per hour published within this window before the newest one."""
    velocity_jump_factor: float = Field(2.0, gt=1)
    """``velocity_jump`` when velocity reaches this multiple of the last published velocity..."""
    velocity_jump_min: float = Field(1.0, ge=0)
    """...and is at least this many articles per hour."""
    entities_step: int = Field(3, ge=1)
    """``new_entities`` when at least this many key entities appeared since the last revision."""
    top_articles: int = Field(5, ge=1, le=50)
    """Articles carried in each story snapshot (distinct sources first)."""
    story_ttl_s: float = Field(21 * 24 * 3600.0, gt=0)
    """Forget the event state of stories without an article for this long; keep it above
    ``enrich.cluster.evict_after_hours``, or a story the clusterer still knows would start
    its revisions again."""
    emerging_factor: float = Field(3.0, gt=1)
    """``emerging`` when velocity and independent sources reach this multiple of the baseline..."""
    emerging_min_sources: int = Field(3, ge=1)
    """...with at least this many independent sources..."""
    emerging_min_velocity: float = Field(2.0, ge=0)
    """...and at least this many articles per hour..."""
    emerging_warmup: int = Field(50, ge=0)
    """...once the baseline has seen this many articles."""
    baseline_half_life: int = Field(200, ge=1)
    """The rolling baseline forgets half its weight over this many articles."""


class EnrichSettings(Section):
    embed: EmbedSettings = EmbedSettings.model_validate({})
    cluster: dict[str, Any] = Field(default_factory=dict)
    topic_threshold: float = Field(0.43, ge=-1, le=1)
    """Default score a story needs to match a watched topic (cosine scale). With
    all-MiniLM-L6-v2, 0.43 gives F1 0.85 on 10 event topics over the 982 ECB+ articles and
    0.65 on four broad news categories over 531 UCI headlines (``bench/bench_topics.py``)."""
    snapshot_every: int = Field(1000, ge=1)
    """Snapshot the enrich state (and commit the bus offsets) after at most this many
    articles: a bound on what a restart has to embed again."""
    snapshot_interval_s: float = Field(10.0, gt=0)
    """Snapshot at most this many seconds after the first article it would cover, and at
    once when the stream goes quiet. In a backfill the interval, not the count, sets the
    pace: fewer, larger snapshots write each busy story once, not once per snapshot."""
    role: Literal["all", "embed", "cluster"] = "all"
    """all: embed and cluster in one process. To scale out, run any number of ``embed``
    workers (stateless: raw articles in, embedded articles out) and one ``cluster`` writer
    (the story state: embedded articles in, story events out). ``storywatch enrich --role``
    overrides it."""
    group: str = Field("storywatch-enrich", min_length=1)
    """Consumer group of the story writer (roles all and cluster: one active member)."""
    embed_group: str = Field("storywatch-enrich-embed", min_length=1)
    """Consumer group of the embed workers (role embed: as many members as partitions)."""
    lease_s: float = Field(30.0, ge=2, le=3600)
    """The story writer holds a lease in the store, renewed as it works: a second writer
    waits as a standby and takes over this long after the holder stops renewing (at once
    if the holder was a process on this host that is gone)."""
    state_namespace: str = Field("enrich", min_length=1)
    """Store namespace of the enrich snapshot."""
    topics: TopicMatchSettings = TopicMatchSettings.model_validate({})
    events: EventSettings = EventSettings.model_validate({})


class WatchedTopic(Named):
    """A topic as a user writes it; see config/topics.yaml for a commented example.

    Keywords match case-insensitively on word boundaries (``"missile"`` does not match
    ``"missiles"``; list both). ``require_keywords``: at least one must occur;
    ``exclude_keywords``: none may occur.
    """

    description: str = ""
    examples: list[str] = Field(default_factory=list)
    counter_examples: list[str] = Field(default_factory=list)
    require_keywords: list[str] = Field(default_factory=list)
    exclude_keywords: list[str] = Field(default_factory=list)
    threshold: float | None = Field(None, ge=-1, le=1)
    """Score needed to match; None = ``enrich.topic_threshold``."""
    min_sources: int = Field(1, ge=1)
    min_articles: int = Field(1, ge=1)
    severity: Severity = "medium"
    channels: list[str] = Field(default_factory=list)

    @field_validator("examples", "counter_examples", "require_keywords", "exclude_keywords")
    @classmethod
    def _drop_blank(cls, v: list[str]) -> list[str]:
        return [s.strip() for s in v if s and s.strip()]

