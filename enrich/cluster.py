"""Online, single-pass story clustering.

Each article is assigned, as it arrives, to an existing story or starts a new one:

1. The nearest stories by centroid come from an HNSW index (hnswlib), so the cost per
   article stays flat as stories pile up; the few candidates are then scored exactly.
2. Embeddings alone cannot tell two events of the same kind apart (two earthquakes),
   and their scale depends on text length (headlines score lower than full text). So
   both the cosine and the overlap of IDF-weighted terms (:mod:`enrich.features`) are
   judged against the story's own history (the values at which its articles joined,
   shrunk towards a prior while the story is young): a candidate joins when its cosine
   is typical of the story, and either its term overlap is typical too (the gate widens
   for articles with few terms) or its cosine is unusually strong.
   Of several acceptable stories the article goes to the one it is most typical of on
   both counts (highest sum of the two standardised scores), not merely the closest.
3. Time matters when dates exist: a story idle for ``dormant_after_hours``, or for many
   times its own recent gap between articles (a burst gone cold), takes only very close
   articles; after ``evict_after_hours`` (or beyond ``max_stories``) it is forgotten.
   Stream time is the article's ``published`` time, else the injected clock.
4. A copy of an article already in the story (same normalised title or text, or a
   near-identical vector) corroborates it: it adds a source but not content.
5. When a story grows close to another, the younger is merged into the older and the
   merge is recorded; story ids never change (an id is derived from the first article).
   Two stories that ran at the same time merge at a lower bar: a burst split in two.

The whole state snapshots to a JSON-able dict (:meth:`StoryClusterer.to_state`).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import hnswlib
import numpy as np

from enrich.calibrate import OnlineDistribution
from enrich.config import ClusterConfig
from enrich.features import DocumentFrequency, extract_terms, norm, overlap, profile_weights, weighted_terms
from enrich.story import Story, StoryState, fingerprint
from storywatch.clock import Clock, utc

STATE_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ClusterInput:
    """One article as the clusterer needs it; ``embedding`` is L2-normalised."""

    id: str
    title: str
    text: str
    embedding: np.ndarray
    published: datetime | None = None
    source: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Assignment:
    """Where an article went. ``merged_from`` lists stories absorbed into ``story_id`` just now."""

    article_id: str
    story_id: str
    created: bool
    is_near_duplicate: bool
    similarity: float
    overlap: float
    story: StoryState
    merged_from: tuple[str, ...] = field(default_factory=tuple)

    @property
    def merges(self) -> list[tuple[str, str]]:
        """``(surviving, absorbed)`` pairs recorded by this assignment."""
        return [(self.story_id, m) for m in self.merged_from]


def story_id_for(article_id: str) -> str:
    """A stable story id derived from the id of the story's first article."""
    return "s-" + hashlib.blake2b(article_id.encode(), digest_size=8).hexdigest()


class StoryClusterer:
    """Assigns articles to stories one at a time; see the module docstring for the rule.

    >>> c = StoryClusterer(dim=384)          # doctest: +SKIP
    >>> a = c.assign(ClusterInput(id="a1", title="...", text="", embedding=vec))  # doctest: +SKIP
    """

    def __init__(self, dim: int, config: ClusterConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or ClusterConfig()
        self.dim = dim
        self.clock = clock
        self.df = DocumentFrequency(self.config.max_df_terms)
        c = self.config
        self.join_sims = OnlineDistribution(-0.2, 1.0, c.prior_similarity, 0.12, c.prior_weight)
        self.join_overlaps = OnlineDistribution(0.0, 1.0, c.prior_overlap, 0.12, c.prior_weight)
        self.now = _EPOCH
        self._stories: OrderedDict[str, Story] = OrderedDict()
        self._by_label: dict[int, Story] = {}
        self._aliases: dict[str, str] = {}
        self.merge_count = 0
        self._next_label = 0
        self._capacity = 1024
        self._index = self._new_index(self._capacity)
        self._index_labels: set[int] = set()

    # -- index -------------------------------------------------------------------------

    def _new_index(self, capacity: int) -> hnswlib.Index:
        c = self.config
        index = hnswlib.Index(space="ip", dim=self.dim)
        index.init_index(
            max_elements=capacity, ef_construction=c.hnsw_ef_construction, M=c.hnsw_m, random_seed=c.seed,
            allow_replace_deleted=True,
        )
        index.set_ef(max(c.hnsw_ef, c.candidates))
        index.set_num_threads(1)
        return index

    def _index_put(self, story: Story, force: bool = False) -> bool:
        """Index the story's centroid; skip the update while it moved by less than ``reindex_drift``.

        Updating an HNSW node is the most expensive step of an assignment, and a big
        story's centroid barely moves; candidates are rescored on the fresh centroid.
        """
        centroid = story.centroid
        if not force and story.indexed is not None and story.label in self._index_labels:
            if float(centroid @ story.indexed) >= 1.0 - self.config.reindex_drift:
                return False
        story.indexed = centroid
        replace = story.label not in self._index_labels
        if replace and len(self._index_labels) >= self._capacity:
            self._capacity *= 2
            self._index.resize_index(self._capacity)
        self._index.add_items(centroid[None, :], [story.label], num_threads=1, replace_deleted=replace)
        self._index_labels.add(story.label)
        return True

    def _index_drop(self, story: Story) -> None:
        self._index.mark_deleted(story.label)
        self._index_labels.discard(story.label)

    def _nearest(self, vec: np.ndarray, k: int) -> list[Story]:
        n = len(self._stories)
        if n == 0:
            return []
        labels, _ = self._index.knn_query(vec[None, :], k=min(k, n), num_threads=1)  # vec: float32 (assign)
        by_label = self._by_label
        return [by_label[lab] for lab in labels[0].tolist()]

    # -- public API --------------------------------------------------------------------

    def resolve(self, story_id: str) -> str:
        """The surviving id of a story that may have been merged away."""
        while story_id in self._aliases:
            story_id = self._aliases[story_id]
        return story_id

    def __len__(self) -> int:
        return len(self._stories)

    def story(self, story_id: str) -> StoryState | None:
        s = self._stories.get(self.resolve(story_id))
        return None if s is None else self._state(s)

    def assign(self, article: ClusterInput) -> Assignment:
        """Put ``article`` in a story (maybe a new one) and return where it went."""
        c = self.config
        at = self._article_time(article.published)
        vec = np.asarray(article.embedding, dtype=np.float32).reshape(-1)
        lead = article.text[: c.term_chars] if c.term_chars else ""
        terms = _merge_flags(extract_terms(article.title), extract_terms(lead))
        weights = weighted_terms(terms, self.df, c.entity_boost)
        fps = [_tagged("t", fingerprint(article.title)), _tagged("b", fingerprint(article.text[:500]))]

        best: Story | None = None
        best_sim = best_ovl = -1.0
        best_score = (-np.inf, -np.inf, -np.inf)
        duplicate = False
        dormant_before = self._dormant_before()
        unit = abs(float(vec @ vec) - 1.0) < 1e-5  # what copy_floor assumes of the article
        for story in self._nearest(vec, c.candidates):
            sim = float(vec @ story.centroid)
            if self._is_copy(story, vec, sim, fps, unit):
                best, best_sim, best_ovl, duplicate = story, sim, 1.0, True
                break
            if sim < c.min_similarity:
                continue
            cold = story.last_seen < dormant_before or self._cooling(story, at)
            if not self._may_accept(story, sim, cold):
                continue  # the cosine alone rules it out: spare the term overlap
            ovl = overlap(weights, *self._profile(story))
            if not self._accepts(story, sim, ovl, len(weights), cold):
                continue
            # Of several acceptable stories (two same-kind events), the one this article is
            # most typical of on both counts, not merely the closest by cosine.
            score = (sum(self._standardise(story, sim, ovl)), sim, ovl)
            if score > best_score:
                best, best_sim, best_ovl, best_score = story, sim, ovl, score

        created = best is None
        if best is None:
            best = self._create(article.id)
            best_sim, best_ovl = 1.0, 1.0
        best.add_time(at, article.source, c.max_sources)
        moved = False
        if duplicate:
            best.duplicate_count += 1
        else:
            self.df.add(terms)
            if not created:
                self.join_sims.add(best_sim)
                self.join_overlaps.add(best_ovl)
            best.add_content(
                vec, terms, article.title, None if created else (best_sim, best_ovl), c.recent_vectors, c.profile_terms
            )
            moved = self._index_put(best)
        for fp in fps:
            best.add_fingerprint(fp)
        self._stories.move_to_end(best.id)
        merged = self._maybe_merge(best) if moved and not created else ()
        survivor = self._stories[self.resolve(best.id)]
        self._evict()
        return Assignment(
            article_id=article.id,
            story_id=survivor.id,
            created=created,
            is_near_duplicate=duplicate,
            similarity=best_sim,
            overlap=best_ovl,
            story=self._state(survivor),
            merged_from=merged,
        )

    # -- decisions ---------------------------------------------------------------------

    def _standardise(self, story: Story, sim: float, ovl: float) -> tuple[float, float]:
        """How typical ``sim`` and ``ovl`` are of the articles that joined ``story`` so far.

        The story's own statistics are shrunk towards the priors, worth ``prior_weight``
        joins, so that a young story is judged by the priors and an old one by itself.
        """
        c = self.config
        return (
            self._z(sim, story.sim_n, *story.cohesion, c.prior_similarity),
            self._z(ovl, story.ovl_n, *story.overlap_stats, c.prior_overlap),
        )

    def _z(self, value: float, n: int, mean: float, sd: float, prior_mean: float) -> float:
        c = self.config
        k0 = c.prior_weight
        m = (n * mean + k0 * prior_mean) / (n + k0)
        dof = max(n - 1, 0)
        var = (dof * sd * sd + k0 * c.prior_spread**2) / (dof + k0)
        return (value - m) / max(var**0.5, 1e-3)

    def _may_accept(self, story: Story, sim: float, cold: bool) -> bool:
        """False when :meth:`_accepts` must reject ``sim`` whatever the term overlap.

        Most of the nearest stories fail on the cosine alone; the overlap (a story
        profile and a sparse dot product) is the dearer half of the evidence.
        """
        c = self.config
        if c.combined_z is not None:
            return sim >= c.min_similarity
        zs = self._z(sim, story.sim_n, *story.cohesion, c.prior_similarity)
        return zs >= (c.dormant_z if cold else -c.similarity_z)

    def _accepts(self, story: Story, sim: float, ovl: float, n_terms: int, cold: bool = False) -> bool:
        """The join rule; the overlap gate widens for articles with few terms.

        ``cold``: the story is dormant or cooling, and takes only close articles.

        An overlap measured on a six-word headline is a noisy estimate: its error shrinks
        like one over the square root of the number of terms, and so does the gate.
        """
        c = self.config
        if c.evidence_terms:
            overlap_z = c.overlap_z * max(1.0, (c.evidence_terms / max(n_terms, 1)) ** 0.5)
        else:
            overlap_z = c.overlap_z
        if sim < c.min_similarity:
            return False
        zs, zo = self._standardise(story, sim, ovl)
        if cold:
            return zs >= c.dormant_z and zo >= -overlap_z
        if c.combined_z is not None:
            return zs + zo >= -c.combined_z
        if zs < -c.similarity_z:
            return False
        return zs >= c.strong_z or zo >= -overlap_z

    def _is_copy(self, story: Story, vec: np.ndarray, sim: float, fps: list[str], unit: bool = False) -> bool:
        """Same body text, or same title and plausibly the same story, or a near-identical vector.

        A title alone is not enough ("Live updates" is the title of many stories).
        ``unit``: ``vec`` has unit length, so that :meth:`Story.copy_floor` applies.
        """
        title_fp, text_fp = fps
        if text_fp and text_fp in story.fingerprints:
            return True
        if sim < self.config.min_similarity:
            return False
        if title_fp and title_fp in story.fingerprints:
            return True
        threshold = self.config.near_duplicate_similarity
        if unit and sim < story.copy_floor(threshold):
            return False  # too far from the centroid for any recent vector to be this close
        # At most a few rows: Python's max over the list beats numpy's reduction here.
        return max((story.recent_f32() @ vec).tolist(), default=-1.0) >= threshold

    def _profile(self, story: Story) -> tuple[dict[str, float], float]:
        """The story's IDF-weighted term profile and its norm.

        Cached until the story changes or the stream has grown by 5% since: IDF
        moves slowly, and recomputing every profile for every candidate dominated the cost.
        """
        docs = self.df.docs
        if story.profile is None or docs >= story.profile_docs * 1.05 + 1:
            n = max(story.vec_count, 1)
            story.profile = profile_weights(story.term_counts, n, story.entity_terms, self.df, self.config.entity_boost)
            story.profile_norm = norm(story.profile)
            story.profile_docs = docs
        return story.profile, story.profile_norm

    def _cooling(self, story: Story, at: datetime) -> bool:
        """Idle at ``at`` for more than ``cool_after_gaps`` of the story's own recent gaps.

        Dormancy after a fixed 72 h suits a story that runs for days; a burst of headlines
        that came seconds apart has gone cold after minutes. Unknown pace: not cooling.
        """
        limit = self.config.cool_after_gaps
        if limit is None:
            return False
        gap = story.recent_gap(self.config.pace_window)
        return gap is not None and (at - story.last_seen).total_seconds() > limit * gap

    def _co_active(self, a: Story, b: Story) -> bool:
        """Whether two stories ran at the same time: close in time, in units of their recent gaps."""
        gaps = [g for g in (a.recent_gap(self.config.pace_window), b.recent_gap(self.config.pace_window)) if g]
        if not gaps:
            return False
        apart = max((a.first_seen - b.last_seen).total_seconds(), (b.first_seen - a.last_seen).total_seconds(), 0.0)
        return apart <= self.config.co_active_gaps * max(gaps)

    def _dormant(self, story: Story) -> bool:
        return story.last_seen < self._dormant_before()

    def _dormant_before(self) -> datetime:
        """Stories last seen before this are dormant (stream time, or the clock if later)."""
        now = self.now if self.clock is None else max(self.now, self.clock.now())
        return now - timedelta(hours=self.config.dormant_after_hours)

    def _maybe_merge(self, story: Story) -> tuple[str, ...]:
        """Merge ``story`` with a near-identical neighbour; the older story survives."""
        c = self.config
        centroid = story.centroid
        for other in self._nearest(centroid, 3):
            if other is story or self._dormant(other):
                continue
            sim = float(centroid @ other.centroid)
            ovl = overlap(self._profile(story)[0], *self._profile(other))
            bar = c.merge_z
            if c.co_active_merge_z is not None and self._co_active(story, other):
                if min(self._standardise(s, sim, ovl)[0] for s in (story, other)) >= -c.similarity_z:
                    bar = c.co_active_merge_z
            if self.join_sims.standardise(sim) < bar or self.join_overlaps.standardise(ovl) < bar:
                continue
            keep, gone = (other, story) if other.label < story.label else (story, other)
            keep.absorb(gone, c.recent_vectors, c.profile_terms, c.max_sources)
            self._index_drop(gone)
            del self._stories[gone.id]
            del self._by_label[gone.label]
            self._aliases[gone.id] = keep.id
            self.merge_count += 1
            self._index_put(keep, force=True)
            self._stories.move_to_end(keep.id)
            return (gone.id,)
        return ()

    # -- lifecycle ---------------------------------------------------------------------

    def _article_time(self, published: datetime | None) -> datetime:
        """Stream time: the article's date if any (not ahead of the clock), else the clock."""
        wall = self.clock.now() if self.clock is not None else None
        if published is not None:
            at = utc(published)
            if wall is not None and at > wall:
                at = wall
        else:
            at = wall if wall is not None else self.now
        self.now = max(self.now, at)
        return at

    def _create(self, article_id: str) -> Story:
        sid = story_id_for(article_id)
        base, n = sid, 1
        while sid in self._stories or sid in self._aliases:
            sid, n = f"{base}-{n}", n + 1
        story = Story(sid, self._next_label, self.dim)
        self._next_label += 1
        self._stories[sid] = story
        self._by_label[story.label] = story
        return story

    def _evict(self) -> None:
        """Forget the longest-idle stories: beyond the cap, or idle past the eviction age."""
        horizon = self.now - timedelta(hours=self.config.evict_after_hours)
        while self._stories:
            story = next(iter(self._stories.values()))
            if len(self._stories) <= self.config.max_stories and story.last_seen >= horizon:
                break
            self._index_drop(story)
            del self._stories[story.id]
            del self._by_label[story.label]
        if len(self._aliases) > 2 * self.config.max_stories:
            live = self._stories.keys()
            self._aliases = {a: t for a, t in self._aliases.items() if self.resolve(t) in live}

    def _state(self, story: Story) -> StoryState:
        c = self.config
        profile = self._profile(story)[0]
        ranked = [t for _, t in sorted([(-w, t) for t, w in profile.items()])]  # by weight, then term
        entities = [t for t in ranked if t in story.entity_terms][: c.key_terms]
        key_terms = [t for t in ranked if t not in story.entity_terms][: c.key_terms]
        velocity = story.velocity(timedelta(hours=c.velocity_window_hours))
        return story.state(key_terms, entities, velocity, self._dormant(story))

    # -- snapshot ----------------------------------------------------------------------

    def to_state(self, df_counts: bool = True) -> dict[str, Any]:
        """A JSON-able snapshot; :meth:`from_state` carries on from it.

        ``df_counts=False`` leaves out the document frequencies (``df.counts``), for an
        owner that saves them apart; :meth:`from_state` then needs them put back.
        """
        return {
            "version": STATE_VERSION,
            "dim": self.dim,
            "now": self.now.isoformat(),
            "next_label": self._next_label,
            "merge_count": self.merge_count,
            "df": self.df.to_state(df_counts),
            "join_sims": self.join_sims.to_state(),
            "join_overlaps": self.join_overlaps.to_state(),
            "stories": [s.to_state() for s in self._stories.values()],
            "aliases": dict(self._aliases),
        }

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], config: ClusterConfig | None = None, clock: Clock | None = None
    ) -> StoryClusterer:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported clusterer state version {state.get('version')!r}")
        obj = cls(int(state["dim"]), config, clock)
        obj.now = datetime.fromisoformat(state["now"])
        obj._next_label = int(state["next_label"])
        obj.merge_count = int(state.get("merge_count", 0))
        obj.df = DocumentFrequency.from_state(state["df"])
        obj.join_sims.load_state(state["join_sims"])
        obj.join_overlaps.load_state(state["join_overlaps"])
        obj._aliases = {str(k): str(v) for k, v in state["aliases"].items()}
        stories = [Story.from_state(s) for s in state["stories"]]
        while obj._capacity < len(stories):
            obj._capacity *= 2
        obj._index = obj._new_index(obj._capacity)
        obj._index_labels = set()
        for story in sorted(stories, key=lambda s: s.label):
            obj._by_label[story.label] = story
            obj._index_put(story)
        for story in stories:
            obj._stories[story.id] = story
        return obj


def _merge_flags(a: dict[str, bool], b: dict[str, bool]) -> dict[str, bool]:
    """Union of two term dicts; a term is an entity if either says so."""
    out = dict(a)
    for t, e in b.items():
        out[t] = out.get(t, False) or e
    return out


def _tagged(tag: str, fp: str) -> str:
    """Title and body fingerprints live in one set: tag them so that they never collide."""
    return tag + fp if fp else ""
