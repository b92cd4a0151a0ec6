"""The alert rules: which story events and feed-health changes become alerts, and where to.

Plain functions over plain data: :class:`RuleEngine` takes an event and the state the
service loaded (one :class:`StoryState` per story, one :class:`TopicState` per watched
topic), updates the state in place and returns the :class:`Planned` alerts. Nothing
here reads the clock: every time comes from the event, so replaying an event gives the
same keys and the same decisions.

Rules, in the order they are tried for a story event:

- ``topic_match/<topic>``: the story matches a watched topic and has at least the
  topic's ``min_articles`` and ``min_sources``. A match below those is remembered, and
  the alert goes out with the first later event at which the story crosses them.
- ``topic_appears/<topic>``: the same, but for the topic's first match after
  ``rules.appears.quiet_period_s`` without one; it replaces the plain match alert.
- ``emerging``: an ``emerging`` event, watched or not, once per story.
- ``follow_up``: an already alerted story changed materially (``updated`` with a
  configured change, or ``merged``); threaded under the story's first alert.
- ``feed_health``: a feed failed, recovered or was disabled (operator channels).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from alerts.model import Planned, alert_key, match_why, story_alert
from storywatch.schema import Alert, FeedHealth, StoryEvent, TopicMatch
from storywatch.settings import Settings
from storywatch.settings.enrich import WatchedTopic

_SEVERITY_ORDER = {"low": 0, "medium": 1, "high": 2, "critical": 3}
_SEEN_KEEP = 64


@dataclass
class StoryState:
    """What the alerts stage remembers of one story (JSON in the store).

    ``roots`` maps each channel to the key of the story's first alert on it (the thread
    root); ``alerted_topics`` the topics already alerted; ``pending`` matches waiting for
    min_sources/min_articles; ``seen`` recent event ids, so a redelivered event is a no-op.
    """

    story_id: str
    alerted_topics: list[str] = field(default_factory=list)
    emerging: bool = False
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    roots: dict[str, str] = field(default_factory=dict)
    last_sources: int = 0
    last_alert_at: str | None = None
    follow_ups: int = 0
    severity: str = "low"
    seen: list[str] = field(default_factory=list)
    merged_into: str | None = None
    updated_at: str | None = None

    @property
    def alerted(self) -> bool:
        return bool(self.roots)

    def to_doc(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_doc(cls, story_id: str, doc: dict[str, Any] | None) -> StoryState:
        if not doc:
            return cls(story_id=story_id)
        known = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        known["story_id"] = story_id
        return cls(**known)


@dataclass
class TopicState:
    """When a watched topic last had a matching story (for the appears rule)."""

    name: str
    last_match_at: str | None = None

    def to_doc(self) -> dict[str, Any]:
        return {"last_match_at": self.last_match_at}

    @classmethod
    def from_doc(cls, name: str, doc: dict[str, Any] | None) -> TopicState:
        return cls(name=name, last_match_at=(doc or {}).get("last_match_at"))


def event_id(ev: StoryEvent) -> str:
    return f"{ev.type}:{ev.revision}:{ev.merged_from or ''}:{ev.match.topic if ev.match else ''}"


class RuleEngine:
    """Evaluates the configured rules; see the module docstring."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.cfg = settings.alerts
        self.topics: dict[str, WatchedTopic] = {t.name: t for t in settings.topics}

    # -- routing -------------------------------------------------------------------

    def topic_channels(self, match: TopicMatch) -> tuple[str, ...]:
        topic = self.topics.get(match.topic)
        chosen = (topic.channels if topic else []) or match.channels or self.cfg.default_channels
        return tuple(c for c in chosen if c in self.cfg.channels)

    def _severity(self, match: TopicMatch) -> str:
        topic = self.topics.get(match.topic)
        return topic.severity if topic else match.severity

    def _alert(self, ev: StoryEvent, rule: str, title: str, **kw: Any) -> Alert:
        return story_alert(
            rule=rule.split("/", 1)[0],
            key=alert_key(rule, ev.story_id, ev.revision),
            title=title,
            story=ev.story,
            at_revision=ev.revision,
            created_at=ev.at,
            top_articles=self.cfg.top_articles,
            summary_chars=self.cfg.summary_chars,
            **kw,
        )

    # -- story events --------------------------------------------------------------

    def topics_of(self, ev: StoryEvent) -> list[str]:
        """Topics whose state this event may read or change (for the service to load)."""
        names = [m.topic for m in ([ev.match] if ev.match else []) + list(ev.matches)]
        return sorted(set(names))

    def on_story_event(
        self,
        ev: StoryEvent,
        state: StoryState,
        topics: dict[str, TopicState],
        absorbed: StoryState | None = None,
    ) -> list[Planned]:
        """Plan the alerts for ``ev`` and update ``state`` (and ``topics``) in place.

        ``absorbed`` is the state of ``ev.merged_from`` for a ``merged`` event; its
        alert history moves to the surviving story.
        """
        eid = event_id(ev)
        if eid in state.seen:
            return []
        state.seen = [*state.seen, eid][-_SEEN_KEEP:]
        state.updated_at = max(state.updated_at or "", ev.at.isoformat())
        out: list[Planned] = []
        if ev.type == "merged" and absorbed is not None:
            self._absorb(state, absorbed)
        matches = [m for m in ([ev.match] if ev.match else []) + list(ev.matches)]
        for m in matches:
            if m.topic not in state.alerted_topics:
                state.pending[m.topic] = m.model_dump(mode="json")
        out.extend(self._pending_matches(ev, state, topics))
        if ev.type == "emerging":
            out.extend(self._emerging(ev, state))
        if not out and ev.type in ("updated", "merged"):
            out.extend(self._follow_up(ev, state))
        for p in out:
            self._remember(state, p, ev)
        return out

    def _absorb(self, state: StoryState, absorbed: StoryState) -> None:
        for ch, root in absorbed.roots.items():
            state.roots.setdefault(ch, root)
        state.alerted_topics = sorted(set(state.alerted_topics) | set(absorbed.alerted_topics))
        for t, m in absorbed.pending.items():
            state.pending.setdefault(t, m)
        state.emerging = state.emerging or absorbed.emerging
        state.follow_ups = max(state.follow_ups, absorbed.follow_ups)
        state.last_sources = max(state.last_sources, absorbed.last_sources)
        if _SEVERITY_ORDER.get(absorbed.severity, 0) > _SEVERITY_ORDER.get(state.severity, 0):
            state.severity = absorbed.severity
        absorbed.merged_into = state.story_id

    def _pending_matches(self, ev: StoryEvent, state: StoryState, topics: dict[str, TopicState]) -> list[Planned]:
        rules = self.cfg.rules
        out = []
        for name in sorted(state.pending):
            m = TopicMatch.model_validate(state.pending[name])
            topic = self.topics.get(name)
            min_sources = topic.min_sources if topic else 1
            min_articles = topic.min_articles if topic else 1
            if ev.story.source_count < min_sources or ev.story.article_count < min_articles:
                continue
            del state.pending[name]
            state.alerted_topics = sorted({*state.alerted_topics, name})
            ts = topics.setdefault(name, TopicState(name))
            quiet = _quiet_for(ts.last_match_at, ev.at, rules.appears.quiet_period_s)
            ts.last_match_at = ev.at.isoformat()
            severity = self._severity(m)
            if rules.appears.enabled and quiet:
                rule, title = f"topic_appears/{name}", f"New on {name}: {ev.story.headline}"
            elif rules.match.enabled:
                rule, title = f"topic_match/{name}", f"{name}: {ev.story.headline}"
            else:
                continue
            channels = self.topic_channels(m)
            if not channels:
                continue
            alert = self._alert(ev, rule, title, match=m, why=match_why(m), severity=severity, channels=channels)
            out.append(Planned(alert, channels, self._parents(state, channels)))
        return out

    def _emerging(self, ev: StoryEvent, state: StoryState) -> list[Planned]:
        rule = self.cfg.rules.emerging
        if not rule.enabled or state.emerging or ev.story.source_count < rule.min_sources:
            return []
        state.emerging = True
        channels = tuple(rule.channels or self.cfg.default_channels)
        if not channels:
            return []
        watched = [m.topic for m in ([ev.match] if ev.match else []) + list(ev.matches)]
        why = (
            f"emerging: {ev.story.source_count} sources, velocity {ev.story.velocity:.1f} articles/h "
            "well above the baseline"
        )
        if watched:
            why += "; watched topic(s): " + ", ".join(sorted(set(watched)))
        alert = self._alert(
            ev,
            "emerging",
            f"Emerging story: {ev.story.headline}",
            why=why,
            severity=rule.severity,
            channels=channels,
        )
        return [Planned(alert, channels, self._parents(state, channels))]

    def _follow_up(self, ev: StoryEvent, state: StoryState) -> list[Planned]:
        rule = self.cfg.rules.follow_up
        if not rule.enabled or not state.alerted or state.follow_ups >= rule.max_per_story:
            return []
        reasons = []
        if ev.type == "merged" and "merged" in rule.on:
            reasons.append(f"merged with story {ev.merged_from}" if ev.merged_from else "merged")
        grown = ev.story.source_count - state.last_sources
        if "new_sources" in ev.changes and "new_sources" in rule.on and grown >= rule.source_step:
            reasons.append(f"{grown} new sources (now {ev.story.source_count})")
        for change, words in (
            ("velocity_jump", "coverage is accelerating"),
            ("new_entities", "new entities"),
        ):
            if change in ev.changes and change in rule.on:
                if change == "new_entities" and ev.story.entities:
                    words += ": " + ", ".join(ev.story.entities[:5])
                reasons.append(words)
        if not reasons:
            return []
        # min_interval_s 0 means no minimum, even for an event stamped before the last alert.
        if state.last_alert_at is not None and rule.min_interval_s > 0:
            elapsed = (ev.at - datetime.fromisoformat(state.last_alert_at)).total_seconds()
            if elapsed < rule.min_interval_s:
                return []
        channels = tuple(c for c in sorted(state.roots) if c in self.cfg.channels)
        if not channels:
            return []
        state.follow_ups += 1
        alert = self._alert(
            ev,
            "follow_up",
            f"Update: {ev.story.headline}",
            why="; ".join(reasons),
            severity=state.severity,
            follow_up=True,
            channels=channels,
        )
        return [Planned(alert, channels, self._parents(state, channels))]

    @staticmethod
    def _parents(state: StoryState, channels: tuple[str, ...]) -> dict[str, str]:
        return {c: state.roots[c] for c in channels if c in state.roots}

    @staticmethod
    def _remember(state: StoryState, planned: Planned, ev: StoryEvent) -> None:
        for ch in planned.channels:
            state.roots.setdefault(ch, planned.alert.key)
        state.last_sources = max(state.last_sources, ev.story.source_count)
        state.last_alert_at = ev.at.isoformat()
        if _SEVERITY_ORDER.get(planned.alert.severity, 0) > _SEVERITY_ORDER.get(state.severity, 0):
            state.severity = planned.alert.severity

    # -- feed health ---------------------------------------------------------------

    def on_feed_health(self, ev: FeedHealth) -> list[Planned]:
        rule = self.cfg.rules.feed_health
        channels = tuple(self.cfg.operator_channels)
        if not rule.enabled or ev.state not in rule.states or not channels:
            return []
        name = ev.feed_name or ev.feed_url
        feed = hashlib.sha256(ev.feed_url.encode()).hexdigest()[:12]
        key = f"feed_health:{feed}:{ev.state}@{int(ev.at.timestamp())}"
        words = {"failing": "is failing", "recovered": "recovered", "disabled": "was disabled"}[ev.state]
        why = f"{ev.failures} consecutive failures" if ev.failures else ""
        if ev.error:
            why = f"{why}; last error: {ev.error}" if why else f"last error: {ev.error}"
        alert = Alert(
            key=key,
            rule="feed_health",
            severity="high" if ev.state == "disabled" else "medium" if ev.state == "failing" else "low",
            title=f"Feed {name} {words}",
            headline=f"Feed {name} {words}",
            summary=ev.feed_url,
            why=why,
            first_seen=ev.since,
            channels=list(channels),
            created_at=ev.at,
        )
        return [Planned(alert, channels)]


def _quiet_for(last: str | None, at: datetime, period_s: float) -> bool:
    if last is None:
        return True
    return (at - datetime.fromisoformat(last)).total_seconds() >= period_s
