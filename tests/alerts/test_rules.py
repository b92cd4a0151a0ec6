"""Rule evaluation as plain functions: table-driven cases and Hypothesis over event sequences."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.rules import RuleEngine, StoryState, TopicState
from tests.alerts.conftest import T0, event, feed_health, make_settings

FILE = {"file": {"kind": "file", "path": "a.jsonl"}, "ops": {"kind": "console"}}


def engine(tmp_path: Path, **kw: object) -> RuleEngine:
    kw.setdefault("operator_channels", ["ops"])
    kw.setdefault("default_channels", ["file"])
    return RuleEngine(make_settings(tmp_path, FILE, **kw))  # type: ignore[arg-type]


def test_topic_channels_come_from_the_topic_else_the_defaults(tmp_path: Path) -> None:
    topics = [{"name": "floods", "channels": ["ops"]}, {"name": "fires"}]
    eng = engine(tmp_path, topics=topics)
    state = StoryState("s1")
    [p] = eng.on_story_event(event(), state, {})
    assert p.channels == ("ops",)
    [p] = eng.on_story_event(event(story_id="s2", topic="fires"), StoryState("s2"), {})
    assert p.channels == ("file",)


def test_alert_carries_what_a_reader_needs(tmp_path: Path) -> None:
    [p] = engine(tmp_path).on_story_event(event(sources=4), StoryState("s1"), {})
    a = p.alert
    assert a.headline == "River bursts its banks in the north" and a.summary.startswith("Heavy rain")
    assert a.topic == "floods" and "score 0.71" in a.why and "close to example 2" in a.why
    assert a.source_count == 4 and a.first_seen == T0 and len(a.articles) == 4
    assert a.articles[0].url and a.articles[0].source == "news1.example"


def test_disabled_rules_are_silent(tmp_path: Path) -> None:
    rules = {
        "match": {"enabled": False},
        "appears": {"enabled": False},
        "emerging": {"enabled": False},
        "feed_health": {"enabled": False},
    }
    eng = engine(tmp_path, rules=rules)
    assert eng.on_story_event(event(), StoryState("s1"), {}) == []
    assert eng.on_story_event(event("emerging", topic=None, sources=5), StoryState("s1"), {}) == []
    assert eng.on_feed_health(feed_health()) == []


def test_feed_health_key_is_stable_and_states_filter(tmp_path: Path) -> None:
    eng = engine(tmp_path, rules={"feed_health": {"states": ["disabled"]}})
    assert eng.on_feed_health(feed_health("failing")) == []
    [a] = eng.on_feed_health(feed_health("disabled"))
    [b] = eng.on_feed_health(feed_health("disabled"))
    assert a.alert.key == b.alert.key and a.channels == ("ops",) and a.alert.severity == "high"


def test_follow_ups_stop_at_max_per_story(tmp_path: Path) -> None:
    eng = engine(tmp_path, rules={"follow_up": {"max_per_story": 2, "min_interval_s": 0}})
    state = StoryState("s1")
    eng.on_story_event(event(), state, {})
    got = [eng.on_story_event(event("updated", revision=r, changes=["velocity_jump"]), state, {}) for r in range(2, 6)]
    assert [len(g) for g in got] == [1, 1, 0, 0]


def test_follow_up_respects_min_interval(tmp_path: Path) -> None:
    eng = engine(tmp_path, rules={"follow_up": {"min_interval_s": 1800}})
    state = StoryState("s1")
    eng.on_story_event(event(at=T0), state, {})
    soon = event("updated", revision=2, at=T0 + timedelta(minutes=10), changes=["velocity_jump"])
    later = event("updated", revision=3, at=T0 + timedelta(minutes=31), changes=["velocity_jump"])
    assert eng.on_story_event(soon, state, {}) == []
    assert len(eng.on_story_event(later, state, {})) == 1


def test_state_round_trips_through_a_document(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    state = StoryState("s1")
    topics: dict[str, TopicState] = {}
    eng.on_story_event(event(), state, topics)
    again = StoryState.from_doc("s1", state.to_doc())
    assert again == state
    assert TopicState.from_doc("floods", topics["floods"].to_doc()) == topics["floods"]


EVENT_TYPES = st.sampled_from(["created", "updated", "matched", "emerging", "merged"])
CHANGES = st.lists(st.sampled_from(["new_sources", "velocity_jump", "new_entities"]), unique=True, max_size=3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.tuples(EVENT_TYPES, st.integers(1, 12), CHANGES, st.booleans(), st.sampled_from(["floods", "fires"])),
        min_size=1,
        max_size=25,
    )
)
def test_any_event_sequence_keeps_the_invariants(tmp_path: Path, steps: list) -> None:
    """Whatever the events: one alert per (story, topic), follow-ups only after an alert
    and never more than max_per_story, unique keys, and a replayed event plans nothing."""
    topics = [{"name": "floods", "min_sources": 3}, {"name": "fires"}]
    eng = engine(tmp_path, topics=topics, rules={"follow_up": {"max_per_story": 3, "min_interval_s": 0}})
    state = StoryState("s1")
    topic_states: dict[str, TopicState] = {}
    seen_keys: set[str] = set()
    matched_topics: list[str] = []
    follow_ups = 0
    for rev, (etype, sources, changes, replay, topic) in enumerate(steps, start=1):
        ev = event(etype, revision=rev, sources=sources, changes=changes, topic=topic, merged_from="s0")
        plans = eng.on_story_event(ev, state, topic_states)
        if replay:
            assert eng.on_story_event(ev, state, topic_states) == []
        for p in plans:
            assert p.alert.key not in seen_keys
            seen_keys.add(p.alert.key)
            if p.alert.rule in ("topic_match", "topic_appears"):
                matched_topics.append(p.alert.topic or "")
                assert ev.story.source_count >= (3 if p.alert.topic == "floods" else 1)
            if p.alert.rule == "follow_up":
                follow_ups += 1
                assert p.parent, "a follow-up threads under an earlier alert"
                assert set(p.parent.values()) <= seen_keys
    assert len(matched_topics) == len(set(matched_topics))
    assert follow_ups <= 3
