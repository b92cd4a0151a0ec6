"""Plain data of the alerts stage: planned alerts, idempotency keys and building an Alert.

An alert's key is ``rule:story_id:revision`` (the rule names the topic where it has
one: ``topic_match/floods:s-12:4``). Each (alert, channel) delivery has the key
``<alert key>|<channel>``; its store id is a short hash of that, so the CLI can show it.
Every key is a pure function of the event, so an event seen twice maps to the same
deliveries and the delivery log's insert-if-absent drops the repeat.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from storywatch.schema import Alert, ArticleRef, StorySnapshot, TopicMatch
from storywatch.text import shorten


@dataclass(frozen=True)
class Planned:
    """An alert the rules decided to send, to ``channels``.

    ``parent`` is the key of the story's first alert on each channel, under which a
    follow-up is threaded (email In-Reply-To, Slack thread_ts).
    """

    alert: Alert
    channels: tuple[str, ...]
    parent: dict[str, str] = field(default_factory=dict)


def alert_key(rule: str, story_id: str, revision: int) -> str:
    return f"{rule}:{story_id}:{revision}"


def delivery_key(key: str, channel: str) -> str:
    return f"{key}|{channel}"


def delivery_id(key: str, channel: str) -> str:
    """The short, stable id of one (alert, channel) delivery, as shown by ``alerts list``."""
    return hashlib.sha256(delivery_key(key, channel).encode()).hexdigest()[:16]


def message_id(key: str, channel: str, domain: str = "storywatch.invalid") -> str:
    """An RFC 5322 Message-ID derived from the delivery key, the same on every resend."""
    digest = hashlib.sha256(delivery_key(key, channel).encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def story_alert(
    *,
    rule: str,
    key: str,
    title: str,
    story: StorySnapshot,
    at_revision: int,
    created_at: object,
    match: TopicMatch | None = None,
    why: str = "",
    severity: str = "medium",
    follow_up: bool = False,
    channels: tuple[str, ...] = (),
    top_articles: int = 5,
    summary_chars: int = 400,
) -> Alert:
    """An :class:`Alert` showing ``story``: headline, summary, top articles and why."""
    articles: list[ArticleRef] = list(story.top_articles[:top_articles])
    return Alert(
        key=key,
        rule=rule,
        story_id=story.story_id,
        revision=at_revision,
        topic=match.topic if match else None,
        severity=severity,  # type: ignore[arg-type]
        title=shorten(title, 250),
        headline=shorten(story.headline, 300),
        summary=shorten(story.summary, summary_chars),
        why=why,
        articles=articles,
        source_count=story.source_count,
        first_seen=story.first_seen,
        follow_up=follow_up,
        channels=list(channels),
        created_at=created_at,  # type: ignore[arg-type]
    )


def match_why(match: TopicMatch) -> str:
    """Why a story matched, in words: the matcher's explanation and the score."""
    parts = [f"matched {match.topic!r} (score {match.score:.2f} ≥ {match.threshold:.2f})"]
    if match.explanation:
        parts.append(match.explanation)
    if match.keywords:
        parts.append("keywords: " + ", ".join(match.keywords))
    return "; ".join(parts)
