"""Settings of the enrich stage and the watched topics."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from storywatch.settings.base import Named, Section

Severity = Literal["low", "medium", "high", "critical"]


class EmbedSettings(Section):
    model: str | None = Field(None, description="model name or path; None = the bundled all-MiniLM-L6-v2")
    backend: Literal["torch", "onnx"] = "torch"
    batch_size: int = Field(32, ge=1, le=4096)
    batch_ms: int = Field(200, ge=0)
    text: Literal["title", "title_lead", "title_text"] = "title_lead"
    lead_chars: int = Field(400, ge=0)


class EnrichSettings(Section):
    embed: EmbedSettings = EmbedSettings()
    cluster: dict[str, Any] = Field(default_factory=dict)
    topic_threshold: float = Field(0.45, ge=-1, le=1)
    snapshot_every: int = Field(200, ge=1)


class WatchedTopic(Named):
    """A topic as a user writes it; see config/topics.yaml for a commented example."""

    description: str = ""
    examples: list[str] = Field(default_factory=list)
    counter_examples: list[str] = Field(default_factory=list)
    require_keywords: list[str] = Field(default_factory=list)
    exclude_keywords: list[str] = Field(default_factory=list)
    threshold: float | None = Field(None, ge=-1, le=1)
    min_sources: int = Field(1, ge=1)
    min_articles: int = Field(1, ge=1)
    severity: Severity = "medium"
    channels: list[str] = Field(default_factory=list)
