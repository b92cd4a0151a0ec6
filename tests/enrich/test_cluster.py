"""The story clusterer on synthetic vectors: determinism, snapshots, copies, dormancy, merges, ANN."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from enrich.cluster import Assignment, ClusterInput, StoryClusterer, story_id_for
from enrich.config import ClusterConfig
from enrich.story import Story

DIM = 32
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NAMES = ["Alvarez", "Brennan", "Castellano", "Dubois", "Eriksen", "Fontaine", "Gallagher", "Haddad"]


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def near(base: np.ndarray, cos: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at (about) cosine ``cos`` to unit vector ``base``."""
    noise = rng.normal(size=base.shape)
    noise -= (noise @ base) * base
    return unit(cos * base + np.sqrt(1 - cos * cos) * unit(noise))


def stream(n_stories: int = 6, per_story: int = 8, seed: int = 1) -> list[ClusterInput]:
    """Interleaved articles of ``n_stories`` well separated stories, one hour apart."""
    rng = np.random.default_rng(seed)
    bases = [unit(rng.normal(size=DIM)) for _ in range(n_stories)]
    out = []
    for i in range(per_story):
        for s in range(n_stories):
            name = NAMES[s % len(NAMES)]
            out.append(
                ClusterInput(
                    id=f"a{s}-{i}",
                    title=f"Report {i}: minister {name} visits Port {name}ville",
                    text=f"The minister {name} arrived on day {i}. Officials in {name}ville met the minister.",
                    embedding=near(bases[s], 0.85, rng),
                    published=T0 + timedelta(hours=len(out) * 0.1),
                    source=f"site{i % 3}",
                )
            )
    return out


def run(articles: list[ClusterInput], clusterer: StoryClusterer) -> list[Assignment]:
    return [clusterer.assign(a) for a in articles]


def test_separate_stories_are_found_with_stable_ids() -> None:
    arts = stream()
    out = run(arts, StoryClusterer(DIM))
    by_story = {a.article_id.split("-")[0]: a.story_id for a in out}
    assert len(set(by_story.values())) == 6
    for a in out:
        assert a.story_id == by_story[a.article_id.split("-")[0]]
    assert out[0].created and out[0].story_id == story_id_for("a0-0")
    assert not out[-1].created
    assert out[-1].story.article_count == 8
    assert out[-1].story.source_count == 3
    assert "alvarez" in " ".join(out[0].story.entities + out[0].story.key_terms) or out[0].story.article_count == 1


def test_same_input_same_stories() -> None:
    arts = stream(seed=3)
    first = run(arts, StoryClusterer(DIM))
    second = run(arts, StoryClusterer(DIM))
    assert first == second


def test_snapshot_restore_carries_on_identically() -> None:
    arts = stream(seed=5)
    whole = run(arts, StoryClusterer(DIM))
    c = StoryClusterer(DIM)
    head = run(arts[:20], c)
    state = json.loads(json.dumps(c.to_state()))
    restored = StoryClusterer.from_state(state)
    tail = run(arts[20:], restored)
    assert [a.story_id for a in head + tail] == [a.story_id for a in whole]
    assert (head + tail)[-1].story == whole[-1].story
    assert json.dumps(restored.to_state(), sort_keys=True) == json.dumps(
        StoryClusterer.from_state(json.loads(json.dumps(restored.to_state()))).to_state(), sort_keys=True
    )


def test_a_story_snapshot_is_cached_until_the_story_changes() -> None:
    """Story.to_state is the same object while the story is unchanged, and always up to date."""
    c = StoryClusterer(DIM, ClusterConfig(max_stories=10))
    before: dict[str, dict] = {}
    for a in stream(n_stories=8, per_story=6, seed=7):
        assignment = c.assign(a)
        for story in c._stories.values():
            state = story.to_state()
            profile = None if story.profile is None else [story.profile, story.profile_norm, story.profile_docs]
            fresh = {**story._build_content(), "profile": profile}
            assert json.dumps(state) == json.dumps(fresh)
            if story.id not in (assignment.story_id, *assignment.merged_from) and story.id in before:
                # Untouched by this article unless a candidate's term profile was refreshed.
                assert state is before[story.id] or state["profile"] != before[story.id]["profile"]
            before[story.id] = state
    story = next(iter(c._stories.values()))
    kept = story.to_state()
    story.add_fingerprint("t-new")
    assert story.to_state() is not kept and "t-new" in story.to_state()["fingerprints"]


def test_from_state_rejects_unknown_version() -> None:
    state = StoryClusterer(DIM).to_state()
    state["version"] = 999
    with pytest.raises(ValueError):
        StoryClusterer.from_state(state)


def test_syndicated_copy_corroborates_without_adding_content() -> None:
    rng = np.random.default_rng(0)
    v = unit(rng.normal(size=DIM))
    c = StoryClusterer(DIM)
    text = "Rescuers in Valparaiso pulled 12 people from the rubble on Sunday, officials said."
    first = c.assign(ClusterInput("w1", "Quake rescue in Valparaiso", text, v, T0, "Wire A"))
    copy = c.assign(ClusterInput("w2", "Rescue continues after quake", text, v, T0, "Paper B"))
    same_title = c.assign(ClusterInput("w3", "Quake rescue in Valparaiso!", "", near(v, 0.7, rng), T0, "Paper C"))
    assert not first.is_near_duplicate
    assert copy.is_near_duplicate and same_title.is_near_duplicate
    assert copy.story_id == same_title.story_id == first.story_id
    story = same_title.story
    assert (story.article_count, story.duplicate_count, story.source_count) == (3, 2, 3)
    assert c._stories[first.story_id].vec_count == 1  # copies left the centroid alone


def test_unrelated_article_with_same_title_is_not_a_copy() -> None:
    rng = np.random.default_rng(1)
    v = unit(rng.normal(size=DIM))
    c = StoryClusterer(DIM)
    a = c.assign(ClusterInput("l1", "Live updates", "", v, T0))
    b = c.assign(ClusterInput("l2", "Live updates", "", near(v, 0.0, rng), T0))
    assert b.created and not b.is_near_duplicate and a.story_id != b.story_id


def _pair(rng: np.random.Generator) -> tuple[ClusterInput, np.ndarray]:
    v = unit(rng.normal(size=DIM))
    return ClusterInput("d1", "Strike at Dunmore harbour", "Dockers in Dunmore walked out.", v, T0, "s1"), v


@pytest.mark.parametrize(("gap_hours", "joins"), [(1, True), (200, False)], ids=["active", "dormant"])
def test_dormant_story_takes_only_very_close_articles(gap_hours: float, joins: bool) -> None:
    rng = np.random.default_rng(2)
    first, v = _pair(rng)
    c = StoryClusterer(DIM, ClusterConfig(dormant_after_hours=72, evict_after_hours=24 * 30))
    a = c.assign(first)
    later = ClusterInput(
        "d2", "Dunmore harbour strike goes on", "Dockers in Dunmore still out.", near(v, 0.62, rng),
        T0 + timedelta(hours=gap_hours), "s2",
    )
    b = c.assign(later)
    assert (b.story_id == a.story_id) is joins
    assert b.created is not joins


def test_dormancy_uses_the_injected_clock_when_articles_have_no_date() -> None:
    from storywatch.clock import FakeClock

    rng = np.random.default_rng(2)
    clock = FakeClock(T0)
    c = StoryClusterer(DIM, ClusterConfig(dormant_after_hours=72), clock)
    first, v = _pair(rng)
    a = c.assign(ClusterInput(first.id, first.title, first.text, v))
    assert a.story.first_seen == T0
    clock.advance(hours=100)
    assert c.story(a.story_id).dormant  # type: ignore[union-attr]
    b = c.assign(ClusterInput("d2", "Dunmore harbour strike goes on", "Dockers still out.", near(v, 0.62, rng)))
    assert b.created


def test_the_cosine_pre_gate_never_rules_out_a_join_the_full_rule_accepts() -> None:
    """``_may_accept`` spares the term overlap; it must only reject what ``_accepts`` rejects."""
    rng = np.random.default_rng(4)
    c = StoryClusterer(DIM)
    run(stream(n_stories=4, per_story=6), c)
    stories = list(c._stories.values())
    checked = 0
    for _ in range(3000):
        story = stories[int(rng.integers(len(stories)))]
        sim, ovl = float(rng.uniform(0.0, 1.0)), float(rng.uniform(0.0, 1.0))
        cold, n_terms = bool(rng.integers(2)), int(rng.integers(1, 64))
        if c._accepts(story, sim, ovl, n_terms, cold):
            assert c._may_accept(story, sim, cold)
            checked += 1
    assert checked > 100


@pytest.mark.parametrize("dim", [8, 384])
@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.95, 0.999])
def test_the_copy_floor_never_skips_a_near_copy(dim: int, threshold: float) -> None:
    """Below ``Story.copy_floor`` no recent vector may reach the threshold: checked at the edge."""
    rng = np.random.default_rng(dim)
    skipped = copies = 0
    for _ in range(400):
        story = Story("s", 0, dim)
        base = rng.normal(size=dim)
        for _ in range(int(rng.integers(1, 5))):
            v = base + rng.normal(size=dim) * float(rng.uniform(0.0, 1.0))
            story.add_content((v / np.linalg.norm(v)).astype(np.float32), {}, "", None, 4, 64)
        floor = story.copy_floor(threshold)
        for _ in range(20):
            # Articles around one recent vector, from identical to far off.
            r = story.recent_f32()[int(rng.integers(len(story.recent)))].astype(np.float64)
            a = r / np.linalg.norm(r) + rng.normal(size=dim) * float(rng.uniform(0.0, 3.0)) / dim**0.5
            a = (a / np.linalg.norm(a)).astype(np.float32)
            best = max((story.recent_f32() @ a).tolist())
            copies += best >= threshold
            if float(a @ story.centroid) < floor:
                skipped += 1
                assert best < threshold
    assert skipped > 100 and copies > 100


@pytest.mark.parametrize(("cool_after_gaps", "joins"), [(None, True), (50.0, False)], ids=["off", "cooled"])
def test_burst_story_cools_after_many_of_its_own_gaps(cool_after_gaps: float | None, joins: bool) -> None:
    rng = np.random.default_rng(2)
    first, v = _pair(rng)
    c = StoryClusterer(DIM, ClusterConfig(cool_after_gaps=cool_after_gaps))
    a = c.assign(first)
    for i in (1, 2):  # a burst: one article a second
        text = f"Dockers in Dunmore out, minute {i}."
        c.assign(ClusterInput(f"d1{i}", first.title, text, near(v, 0.9, rng), T0 + timedelta(seconds=i)))
    later = ClusterInput(
        "d2", "Dunmore harbour strike goes on", "Dockers in Dunmore still out.", near(v, 0.62, rng),
        T0 + timedelta(hours=1), "s2",
    )
    assert (c.assign(later).story_id == a.story_id) is joins


@pytest.mark.parametrize(("b_after_seconds", "merges"), [(5, True), (3600, False)], ids=["co-active", "apart"])
def test_co_active_stories_merge_at_a_lower_bar(b_after_seconds: int, merges: bool) -> None:
    rng = np.random.default_rng(6)
    a_vec = unit(rng.normal(size=DIM))
    b_vec = near(a_vec, 0.2, rng)
    c = StoryClusterer(DIM, ClusterConfig(merge_z=10.0, co_active_merge_z=-10.0))
    text = "Flooding in Marrow Valley forced 300 families from their homes."
    a = c.assign(ClusterInput("m1", "Marrow Valley floods", text, a_vec, T0))
    b_at = T0 + timedelta(seconds=b_after_seconds)
    b = c.assign(ClusterInput("m2", "Marrow Valley evacuated", text[:40] + " Families left.", b_vec, b_at))
    assert b.created and b.story_id != a.story_id
    mid = unit(a_vec + b_vec)
    merged = [
        c.assign(ClusterInput(f"m{i}", "Marrow Valley flood", "Marrow Valley floods.", mid, T0 + timedelta(seconds=t)))
        for i, t in ((3, 10), (4, 20))
    ]
    assert any(m.merged_from for m in merged) is merges
    assert (c.resolve(b.story_id) == a.story_id) is merges


def test_eviction_bounds_the_state() -> None:
    rng = np.random.default_rng(4)
    c = StoryClusterer(DIM, ClusterConfig(max_stories=10, dormant_after_hours=1, evict_after_hours=5))
    for i in range(40):
        c.assign(ClusterInput(f"e{i}", f"Item {i}", "", unit(rng.normal(size=DIM)), T0 + timedelta(minutes=i)))
    assert len(c) == 10
    c.assign(ClusterInput("late", "Late", "", unit(rng.normal(size=DIM)), T0 + timedelta(hours=10)))
    assert len(c) == 1
    assert len(json.dumps(c.to_state())) < 50_000


def test_merge_records_survivor_and_absorbed() -> None:
    rng = np.random.default_rng(6)
    a_vec = unit(rng.normal(size=DIM))
    b_vec = near(a_vec, 0.2, rng)  # too far to join: a second story
    c = StoryClusterer(DIM, ClusterConfig(merge_z=-10.0))
    text = "Flooding in Marrow Valley forced 300 families from their homes."
    a = c.assign(ClusterInput("m1", "Marrow Valley floods", text, a_vec, T0))
    b = c.assign(ClusterInput("m2", "Marrow Valley evacuated", text[:40] + " Families left.", b_vec, T0))
    assert b.created and b.story_id != a.story_id
    mid = unit(a_vec + b_vec)
    merged = [c.assign(ClusterInput(f"m{i}", "Marrow Valley flood", "Marrow Valley floods.", mid, T0)) for i in (3, 4)]
    hit = next(m for m in merged if m.merged_from)
    assert hit.story_id == a.story_id  # the older story survives
    assert hit.merges == [(a.story_id, b.story_id)]
    assert c.resolve(b.story_id) == a.story_id
    assert c.story(b.story_id).story_id == a.story_id  # type: ignore[union-attr]
    assert merged[-1].story.article_count == 4


def test_ann_path_finds_the_right_story_among_thousands() -> None:
    rng = np.random.default_rng(8)
    n = 2500  # beyond the index's first capacity, so it is resized on the way
    dim = 128  # wide enough that random directions are never close
    bases = rng.normal(size=(n, dim)).astype(np.float32)
    bases /= np.linalg.norm(bases, axis=1, keepdims=True)
    c = StoryClusterer(dim, ClusterConfig(candidates=5, min_similarity=0.7))
    ids = [c.assign(ClusterInput(f"b{i}", "", "", bases[i], T0)).story_id for i in range(n)]
    assert len(c) == n
    hits = 0
    for i in range(0, n, 50):
        a = c.assign(ClusterInput(f"q{i}", "", "", near(bases[i], 0.97, rng), T0))
        hits += a.story_id == ids[i]
    assert hits >= 48  # approximate search, all but a rare miss


def test_index_reuses_evicted_slots() -> None:
    rng = np.random.default_rng(9)
    c = StoryClusterer(DIM, ClusterConfig(max_stories=50))
    for i in range(3000):
        c.assign(ClusterInput(f"r{i}", "", "", unit(rng.normal(size=DIM)), T0 + timedelta(seconds=i)))
    assert len(c) == 50
    assert c._capacity == 1024
    v = unit(rng.normal(size=DIM))
    first = c.assign(ClusterInput("x1", "", "", v, T0 + timedelta(hours=1)))
    again = c.assign(ClusterInput("x2", "", "", near(v, 0.99, rng), T0 + timedelta(hours=1)))
    assert again.story_id == first.story_id


def test_velocity_counts_recent_articles_per_hour() -> None:
    rng = np.random.default_rng(10)
    v = unit(rng.normal(size=DIM))
    c = StoryClusterer(DIM, ClusterConfig(velocity_window_hours=2))
    out = None
    for i in range(6):
        out = c.assign(
            ClusterInput(f"v{i}", f"Story {i}", f"text {i}", near(v, 0.96, rng), T0 + timedelta(minutes=20 * i))
        )
    assert out is not None and out.story.article_count == 6
    assert out.story.velocity == pytest.approx(6 / 2)
    assert out.story.first_seen == T0 and out.story.last_seen == T0 + timedelta(minutes=100)
