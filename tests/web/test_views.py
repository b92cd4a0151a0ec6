"""The stories read model (:func:`storywatch.views.story_documents`) and the charts' geometry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from storywatch import views
from storywatch.schema import ArticleRef, StoryEvent, StorySnapshot, TopicMatch
from storywatch.web.svg import Series, line_chart

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def event(rev: int, articles: int, sources: int, *, kind: str = "updated", sid: str = "s1", **kw: Any) -> StoryEvent:
    at = T0 + timedelta(minutes=10 * rev)
    snap = StorySnapshot(
        story_id=sid, revision=rev, headline=f"h{rev}", first_seen=T0, last_seen=at, article_count=articles,
        source_count=sources, top_articles=[ArticleRef(id=f"{sid}-{rev}", title=f"t{rev}", published=at)],
    )  # fmt: skip
    return StoryEvent(type=kind, story_id=sid, revision=rev, at=at, story=snap, **kw)  # type: ignore[arg-type]


def apply(docs: dict[str, dict[str, Any]], ev: StoryEvent) -> None:
    docs.update(views.story_documents(ev, docs.get))


def test_read_model_accumulates_matches_history_and_articles() -> None:
    docs: dict[str, dict[str, Any]] = {}
    m = TopicMatch(topic="floods", score=0.6, threshold=0.5, explanation="closest to the description")
    apply(docs, event(1, 1, 1, kind="created"))
    apply(docs, event(2, 3, 2, kind="matched", match=m))
    apply(docs, event(3, 3, 2))  # same size: no new history point
    apply(docs, event(4, 5, 3, matches=[m.model_copy(update={"score": 0.7})]))
    doc = docs["s1"]
    assert [(h["article_count"], h["source_count"]) for h in doc["history"]] == [(1, 1), (3, 2), (5, 3)]
    assert [a["id"] for a in doc["articles"]] == ["s1-1", "s1-2", "s1-3", "s1-4"]
    assert len(doc["matches"]) == 1 and doc["matches"][0]["score"] == 0.7
    assert doc["matches"][0]["at"] == (T0 + timedelta(minutes=20)).isoformat(), "first matched time is kept"
    row = views.story_from_doc("s1", doc)
    assert row.headline == "h4" and row.matches[0].topic == "floods" and len(row.growth) == 3


def test_redelivered_older_event_changes_nothing() -> None:
    docs: dict[str, dict[str, Any]] = {}
    apply(docs, event(1, 1, 1, kind="created"))
    apply(docs, event(2, 4, 2))
    before = dict(docs["s1"])
    apply(docs, event(1, 1, 1, kind="created"))
    assert docs["s1"] == before


def test_merge_marks_the_absorbed_story() -> None:
    docs: dict[str, dict[str, Any]] = {}
    apply(docs, event(1, 1, 1, kind="created", sid="a"))
    apply(docs, event(1, 1, 1, kind="created", sid="b"))
    apply(docs, event(2, 2, 2, kind="merged", sid="a", merged_from="b"))
    assert docs["b"]["merged_into"] == "a" and docs["a"]["merged_into"] is None
    store_like = {k: v for k, v in docs.items()}
    live = [views.story_from_doc(k, d) for k, d in store_like.items() if not d.get("merged_into")]
    assert [s.story_id for s in live] == ["a"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(0, 3)), min_size=1, max_size=400))
def test_history_is_bounded_and_in_time_order(steps: list[tuple[int, int]]) -> None:
    docs: dict[str, dict[str, Any]] = {}
    articles = sources = 0
    for rev, (grow, more_sources) in enumerate(steps, 1):
        articles += grow
        sources = min(articles, sources + more_sources)
        apply(docs, event(rev, articles, sources))
    history = docs["s1"]["history"]
    assert len(history) <= 240 and len(docs["s1"]["articles"]) <= 100
    assert [h["at"] for h in history] == sorted(h["at"] for h in history)
    assert history[0]["article_count"] == steps[0][0] and history[-1]["article_count"] == articles


def test_chart_geometry() -> None:
    empty = line_chart([Series("none", [])])
    assert empty.empty
    one = line_chart([Series("a", [(T0, 3.0)])], now=T0 + timedelta(hours=2))
    assert not one.empty and one.series[0].path.startswith("M") and one.series[0].note == "3"
    pts = [(T0 + timedelta(minutes=m), float(v)) for m, v in [(0, 1), (30, 2), (90, 7)]]
    c = line_chart([Series("a", pts), Series("b", pts, step=False, note="total 7")], width=600, height=200)
    left, top, right, bottom = c.plot
    for s in c.series:
        nums = [float(n) for n in s.path.replace("M", " ").replace("H", " ").replace("V", " ").replace("L", " ")
                .replace(",", " ").split()]  # fmt: skip
        assert all(0 <= n <= 600 for n in nums)
    assert c.series[1].note == "total 7" and c.series[0].css != c.series[1].css
    assert c.y_ticks[0][1] == "0" and float(c.y_ticks[-1][1]) >= 7
    assert all(left <= x <= right for x, _ in c.x_ticks) and all(top <= y <= bottom for y, _ in c.y_ticks)
