"""The messages on the bus: one versioned pydantic model per topic, JSON on the wire.

Every datetime is timezone-aware UTC (naive input is rejected, aware input converted).
A consumer that meets a message it cannot parse raises :class:`SchemaError`; the stage
sends the raw bytes to the dead-letter topic with the reason and carries on.

Topic names are configurable (``bus.topics`` in the settings); these are the defaults.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from storywatch.errors import SchemaError


def _to_utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC)


UTCDateTime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


class Message(BaseModel):
    """Base for bus messages. ``schema_version`` lets consumers reject what they don't know."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    topic_default: ClassVar[str] = ""
    schema_version: int = 1

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


M = TypeVar("M", bound=Message)


def decode(model: type[M], topic: str, value: bytes) -> M:
    """Parse ``value`` as ``model`` or raise :class:`SchemaError` naming the topic."""
    try:
        return model.model_validate_json(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise SchemaError(topic, f"{where}: {first.get('msg')}") from None
    except ValueError as exc:
        raise SchemaError(topic, str(exc)) from None


class Article(Message):
    """One normalised feed item (topic ``raw-articles``), keyed by ``id``.

    ``kind`` is ``"update"`` when a known article changed its title; enrich treats an
    update as new wording of the same article, not as another report.
    """

    topic_default: ClassVar[str] = "storywatch.raw-articles"
    kind: Literal["article", "update"] = "article"
    id: str
    url: str | None = None
    guid: str | None = None
    title: str = ""
    summary: str = ""
    published: UTCDateTime
    fetched_at: UTCDateTime
    source: str = ""
    source_host: str = ""
    feeds: list[str] = Field(default_factory=list)
    lang: str | None = None


class EmbeddedArticle(Message):
    """An article with its embedding (topic ``embedded-articles``), keyed by the article ``id``.

    Written by enrich workers in the ``embed`` role for the single ``cluster`` writer (see
    :mod:`enrich.service`). ``vector`` is the base64 of the little-endian float32
    embedding, ``dim`` numbers long, from ``model``; the cluster writer embeds the
    article again itself if ``model`` is not the one it is configured with.
    """

    topic_default: ClassVar[str] = "storywatch.embedded-articles"
    article: Article
    model: str
    dim: int = Field(ge=1)
    vector: str
    embedded_at: UTCDateTime


class ArticleRef(BaseModel):
    """What an alert shows of one article of a story."""

    model_config = ConfigDict(frozen=True)
    id: str
    title: str = ""
    url: str | None = None
    source: str = ""
    published: UTCDateTime | None = None


class StorySnapshot(BaseModel):
    """A story's state as of one revision, carried by every story event."""

    model_config = ConfigDict(frozen=True)
    story_id: str
    revision: int
    headline: str
    summary: str = ""
    key_terms: list[str] = Field(default_factory=list)
    entities: list[str] = Field(default_factory=list)
    first_seen: UTCDateTime
    last_seen: UTCDateTime
    article_count: int
    source_count: int
    sources: list[str] = Field(default_factory=list)
    velocity: float = 0.0
    top_articles: list[ArticleRef] = Field(default_factory=list)


class TopicMatch(BaseModel):
    """A story matched a watched topic, with the evidence an alert can show."""

    model_config = ConfigDict(frozen=True)
    topic: str
    score: float
    threshold: float
    severity: Literal["low", "medium", "high", "critical"] = "medium"
    channels: list[str] = Field(default_factory=list)
    explanation: str = ""
    keywords: list[str] = Field(default_factory=list)


StoryEventType = Literal["created", "updated", "matched", "emerging", "merged"]


class StoryEvent(Message):
    """Something happened to a story (topic ``story-events``), keyed by ``story_id``.

    - ``created``: a new story started (its first article).
    - ``updated``: the story changed materially; ``changes`` says how
      (``new_sources``, ``velocity_jump``, ``new_entities``).
    - ``matched``: the story now matches ``match`` (a watched topic).
    - ``emerging``: velocity and independent sources grew well above the rolling baseline.
    - ``merged``: ``merged_from`` was absorbed into ``story_id``.
    """

    topic_default: ClassVar[str] = "storywatch.story-events"
    type: StoryEventType
    story_id: str
    revision: int
    at: UTCDateTime
    story: StorySnapshot
    changes: list[str] = Field(default_factory=list)
    match: TopicMatch | None = None
    matches: list[TopicMatch] = Field(default_factory=list)
    merged_from: str | None = None
    article_id: str | None = None


class FeedHealth(Message):
    """A feed started failing or recovered (topic ``feed-health``), keyed by ``feed_url``."""

    topic_default: ClassVar[str] = "storywatch.feed-health"
    feed_url: str
    feed_name: str = ""
    state: Literal["failing", "recovered", "disabled"]
    error: str = ""
    failures: int = 0
    since: UTCDateTime | None = None
    at: UTCDateTime


class Alert(Message):
    """An alert the alerts stage delivered (topic ``alerts``), keyed by ``key``.

    ``key`` is the idempotency key ``rule:story_id:revision``; receivers drop repeats by it.
    """

    topic_default: ClassVar[str] = "storywatch.alerts"
    key: str
    rule: str
    story_id: str | None = None
    revision: int = 0
    topic: str | None = None
    severity: Literal["low", "medium", "high", "critical"] = "medium"
    title: str
    headline: str = ""
    summary: str = ""
    why: str = ""
    articles: list[ArticleRef] = Field(default_factory=list)
    source_count: int = 0
    first_seen: UTCDateTime | None = None
    follow_up: bool = False
    channels: list[str] = Field(default_factory=list)
    created_at: UTCDateTime


class DeadLetter(Message):
    """A message a stage could not process (topic ``dead-letters``), with the reason."""

    topic_default: ClassVar[str] = "storywatch.dead-letters"
    source_topic: str
    stage: str
    reason: str
    key: str | None = None
    value: str = Field(description="the original bytes, decoded as UTF-8 with replacement")
    at: UTCDateTime


TOPIC_MODELS: dict[str, type[Message]] = {
    "raw_articles": Article,
    "embedded_articles": EmbeddedArticle,
    "story_events": StoryEvent,
    "feed_health": FeedHealth,
    "alerts": Alert,
    "dead_letters": DeadLetter,
}


def dump(model: BaseModel) -> dict[str, Any]:
    """JSON-compatible dict of a model (datetimes as ISO strings)."""
    return model.model_dump(mode="json")
