"""Story events as pure logic: revisions move only on material changes."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enrich.cluster import Assignment
from enrich.events import ArticleInfo, StoryEvents
from enrich.story import StoryState
from enrich.topics import TopicScore
from storywatch.schema import StoryEvent
from storywatch.settings.enrich import EventSettings, WatchedTopic

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TOPICS = [
    WatchedTopic(name="missiles", min_sources=2, severity="high", channels=[]),
    WatchedTopic(name="quakes"),
]


def state(sid: str = "s1", **kw: Any) -> StoryState:
    base: dict[str, Any] = {
        "story_id": sid,
        "headline": "North Korea fires missile",
        "key_terms": (),
        "entities": (),
        "first_seen": T0,
        "last_seen": T0,
        "article_count": 1,
        "duplicate_count": 0,
        "source_count": 1,
        "sources": ("a",),
        "velocity": 0.2,
        "cohesion": 1.0,
        "dormant": False,
    }
    base.update(kw)
    return StoryState(**base)


def assignment(story: StoryState, n: int, *, created: bool = False, dup: bool = False,
               merged: tuple[str, ...] = ()) -> Assignment:
    return Assignment(
        article_id=f"a{n}", story_id=story.story_id, created=created, is_near_duplicate=dup,
        similarity=0.8, overlap=0.5, story=story, merged_from=merged,
    )


def info(n: int, source: str, title: str = "t", minutes: int = 0) -> ArticleInfo:
    at = T0 + timedelta(minutes=minutes or n)
    return ArticleInfo(id=f"a{n}", title=f"{title} {n}", at=at, source=source, published=at, url=f"https://x/{n}")


def score(topic: str, value: float) -> TopicScore:
    return TopicScore(topic=topic, score=value, threshold=0.45, similarity=value, closest="the description")


def kinds(events: list[StoryEvent]) -> list[str]:
    return [e.type for e in events]


def feed(ev: StoryEvents, steps: list[tuple[Assignment, ArticleInfo, list[TopicScore]]]) -> list[list[StoryEvent]]:
    return [ev.on_assignment(a, i, s) for a, i, s in steps]


def test_created_then_quiet_until_sources_grow_by_a_step() -> None:
    ev = StoryEvents(EventSettings(source_step=2), TOPICS)
    out = feed(ev, [
        (assignment(state(), 1, created=True), info(1, "a"), []),
        (assignment(state(article_count=2), 2), info(2, "a"), []),
        (assignment(state(article_count=3, source_count=2), 3), info(3, "b"), []),
        (assignment(state(article_count=4, source_count=3), 4), info(4, "c"), []),
    ])
    assert [kinds(o) for o in out] == [["created"], [], [], ["updated"]]
    assert out[0][0].revision == 1 and out[0][0].story.revision == 1
    assert out[3][0].revision == 2 and out[3][0].changes == ["new_sources"]
    assert [r.source for r in out[3][0].story.top_articles] == ["a", "a", "b", "c"]


def test_near_duplicates_are_not_independent_sources() -> None:
    ev = StoryEvents(EventSettings(source_step=1), TOPICS)
    out = feed(ev, [
        (assignment(state(), 1, created=True), info(1, "wire"), []),
        (assignment(state(article_count=2, source_count=2), 2, dup=True), info(2, "copy1"), []),
        (assignment(state(article_count=3, source_count=3), 3, dup=True), info(3, "copy2"), []),
        (assignment(state(article_count=4, source_count=4), 4), info(4, "own"), []),
    ])
    assert [kinds(o) for o in out] == [["created"], [], [], ["updated"]]


def test_match_is_announced_once_per_topic_with_its_evidence() -> None:
    ev = StoryEvents(EventSettings(), TOPICS)
    out = feed(ev, [
        (assignment(state(), 1, created=True), info(1, "a"), [score("missiles", 0.3), score("quakes", 0.1)]),
        (assignment(state(article_count=2), 2), info(2, "a"), [score("missiles", 0.6), score("quakes", 0.1)]),
        (assignment(state(article_count=3), 3), info(3, "a"), [score("missiles", 0.7), score("quakes", 0.1)]),
    ])
    assert [kinds(o) for o in out] == [["created"], ["matched"], []]
    m = out[1][0]
    assert m.match is not None and m.match.topic == "missiles" and m.match.severity == "high"
    assert m.match.score == 0.6 and "the description" in m.match.explanation
    assert [x.topic for x in m.matches] == ["missiles"]
    assert m.revision == 2


def test_created_and_matched_share_the_first_revision() -> None:
    ev = StoryEvents(EventSettings(), TOPICS)
    out = ev.on_assignment(assignment(state(), 1, created=True), info(1, "a"), [score("quakes", 0.8)])
    assert kinds(out) == ["created", "matched"]
    assert {e.revision for e in out} == {1}


def test_reaching_min_sources_of_a_matched_topic_is_an_update() -> None:
    """alerts holds a match below min_sources; the story reaching it must produce an event."""
    ev = StoryEvents(EventSettings(source_step=5), TOPICS)
    out = feed(ev, [
        (assignment(state(), 1, created=True), info(1, "a"), [score("missiles", 0.8)]),
        (assignment(state(article_count=2, source_count=2), 2), info(2, "b"), []),
        (assignment(state(article_count=3, source_count=3), 3), info(3, "c"), []),
    ])
    assert [kinds(o) for o in out] == [["created", "matched"], ["updated"], []]
    assert out[1][0].changes == ["new_sources"] and out[1][0].story.source_count == 2


def test_velocity_jump_and_new_entities() -> None:
    ev = StoryEvents(EventSettings(velocity_jump_factor=2, velocity_jump_min=1.0, entities_step=2), TOPICS)
    out = feed(ev, [
        (assignment(state(entities=("pyongyang",)), 1, created=True), info(1, "a"), []),
        (assignment(state(velocity=0.9, entities=("pyongyang", "tokyo")), 2), info(2, "a"), []),
        (assignment(state(velocity=1.5, entities=("pyongyang", "tokyo")), 3), info(3, "a"), []),
        (assignment(state(velocity=1.6, entities=("pyongyang", "tokyo", "seoul", "un")), 4), info(4, "a"), []),
        (assignment(state(velocity=2.0, entities=("pyongyang", "seoul", "un", "kim")), 5), info(5, "a"), []),
    ])
    assert [o[0].changes if o else [] for o in out] == [[], [], ["velocity_jump"], ["new_entities"], []]


def test_merge_moves_the_absorbed_ledger_and_keeps_revisions_rising() -> None:
    ev = StoryEvents(EventSettings(), TOPICS)
    a, b = state("A"), state("B", headline="Missile over Japan")
    feed(ev, [
        (assignment(a, 1, created=True), info(1, "x"), [score("missiles", 0.9)]),
        (assignment(b, 2, created=True), info(2, "y"), []),
        (assignment(replace(b, article_count=2), 3), info(3, "y"), [score("quakes", 0.9)]),
    ])
    merged = ev.on_assignment(
        assignment(replace(a, article_count=4, source_count=2), 4, merged=("B",)), info(4, "x"), []
    )
    # Reaching two sources readies the absorbed story's "missiles" match as well.
    assert kinds(merged) == ["merged", "updated"] and merged[1].changes == ["new_sources"]
    assert merged[0].merged_from == "B" and merged[0].story_id == "A"
    assert merged[0].revision == 3
    assert sorted(m.topic for m in merged[0].matches) == ["missiles", "quakes"]
    assert ev.story_of("a2") == "A" and "B" not in ev.ledgers


def test_emerging_needs_a_baseline_and_fires_once() -> None:
    cfg = EventSettings(emerging_warmup=20, emerging_factor=3, emerging_min_sources=3, emerging_min_velocity=2)
    ev = StoryEvents(cfg, TOPICS)
    for n in range(30):  # background: singleton stories
        s = state(f"bg{n}", velocity=0.17)
        ev.on_assignment(assignment(s, 100 + n, created=True), info(100 + n, f"src{n}"), [])
    hot: list[list[StoryEvent]] = []
    for n in range(6):
        s = state("hot", article_count=n + 1, source_count=n + 1, velocity=0.5 * (n + 1))
        hot.append(ev.on_assignment(assignment(s, n, created=n == 0), info(n, f"h{n}"), []))
    fired = [i for i, o in enumerate(hot) if "emerging" in kinds(o)]
    assert fired == [3]  # 4 sources, 2 articles/h: both above 3x the baseline and the minimums


def test_title_update_changes_the_shown_title_without_an_event() -> None:
    ev = StoryEvents(EventSettings(source_step=1), TOPICS)
    first = ev.on_assignment(assignment(state(headline="t 1"), 1, created=True), info(1, "a"), [])
    assert first[0].story.headline == "t 1"
    assert ev.on_title_update("a1", "Corrected headline") is True
    assert ev.on_title_update("unknown", "x") is False
    out = ev.on_assignment(assignment(state(headline="t 1", source_count=2), 2), info(2, "b"), [])
    assert out[0].story.headline == "Corrected headline"
    assert out[0].story.top_articles[0].title == "Corrected headline"


def test_state_round_trips_through_json_and_gives_the_same_events() -> None:
    steps = [
        (assignment(state(), 1, created=True), info(1, "a"), [score("missiles", 0.5)]),
        (assignment(state(article_count=2, source_count=2), 2), info(2, "b"), []),
        (assignment(state(article_count=3, source_count=3, velocity=2.0), 3), info(3, "c"), [score("quakes", 0.6)]),
        (assignment(state(article_count=4, source_count=4, velocity=3.0), 4), info(4, "d"), []),
    ]
    straight = StoryEvents(EventSettings(), TOPICS)
    expected = feed(straight, steps)
    first = StoryEvents(EventSettings(), TOPICS)
    feed(first, steps[:2])
    restored = StoryEvents(EventSettings(), TOPICS)
    restored.load_state(json.loads(json.dumps(first.to_state())))
    assert feed(restored, steps[2:]) == expected[2:]
    assert restored.to_state() == json.loads(json.dumps(straight.to_state()))


def test_unknown_state_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version"):
        StoryEvents(EventSettings(), TOPICS).load_state({"version": 99})


def test_a_match_on_an_already_large_story_is_one_event() -> None:
    ev = StoryEvents(EventSettings(source_step=5), TOPICS)
    feed(ev, [(assignment(state(), 1, created=True), info(1, "a"), [])])
    out = ev.on_assignment(
        assignment(state(article_count=3, source_count=3), 2), info(2, "b"), [score("missiles", 0.9)]
    )
    assert kinds(out) == ["matched"]


ENTITIES = ["pyongyang", "tokyo", "seoul", "un", "kim", "japan", "korea"]


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 6),
            st.booleans(),
            st.floats(0, 8, allow_nan=False),
            st.lists(st.sampled_from(ENTITIES), max_size=4, unique=True),
            st.floats(0, 1, allow_nan=False),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_revisions_rise_by_one_and_only_on_material_change(
    steps: list[tuple[int, bool, float, list[str], float]],
) -> None:
    cfg = EventSettings()
    ev = StoryEvents(cfg, TOPICS)
    sources: set[str] = set()
    revision = 0
    counts: dict[str, int] = {}
    source_updates = 0
    for i, (src, dup, velocity, entities, value) in enumerate(steps):
        sources.add(f"s{src}")
        s = state(article_count=i + 1, source_count=len(sources), velocity=velocity, entities=tuple(entities))
        out = ev.on_assignment(
            assignment(s, i, created=i == 0, dup=dup and i > 0), info(i, f"s{src}"), [score("missiles", value)]
        )
        if i == 0:
            assert kinds(out)[0] == "created"
        if out:
            assert {e.revision for e in out} == {revision + 1}
            revision += 1
        for e in out:
            counts[e.type] = counts.get(e.type, 0) + 1
            if e.type == "updated":
                assert e.changes and set(e.changes) <= {"new_sources", "new_articles", "velocity_jump", "new_entities"}
                source_updates += "new_sources" in e.changes
    assert counts.get("created") == 1
    assert counts.get("matched", 0) <= 1
    assert counts.get("emerging", 0) <= 1
    # Source follow-ups come per source_step new sources (plus once per topic reaching min_sources).
    assert source_updates <= len(sources) // cfg.source_step + len(TOPICS)
