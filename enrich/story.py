"""One story's running state, and the plain snapshot handed to callers.

A story is summarised, never stored whole: a centroid (sum of its articles' unit
vectors), counts of the terms its articles use, a few recent vectors and title
fingerprints for near-duplicate checks, recent times for velocity, and running
statistics of how close its articles came to it when they joined (its cohesion).
Memory per story is bounded whatever its size.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import numpy as np

from enrich.packing import pack_array, unpack_array

_NON_WORD = re.compile(r"[\W_]+")
_MAX_FINGERPRINTS = 64
_MAX_TIMES = 512
# Attributes that are not the story's state but derived from it (or index bookkeeping):
# setting them leaves the cached snapshot and pace alone.
_DERIVED = frozenset({"_centroid", "indexed", "_snapshot", "_content", "_gaps", "_recent32", "_copy_floor"})
# The term profile is refreshed as the stream's IDF moves, far more often than the rest
# of an idle story changes: refreshing it leaves the rest of the snapshot cached.
_PROFILE = frozenset({"profile", "profile_norm", "profile_docs"})
# The caches that any change to the state drops (the centroid is dropped where it moves).
_NO_CACHES: dict[str, None] = dict.fromkeys(("_snapshot", "_content", "_gaps", "_recent32", "_copy_floor"))


def fingerprint(text: str) -> str:
    """A short hash of ``text`` with case, punctuation and spacing ignored ('' for empty text)."""
    norm = _NON_WORD.sub(" ", text.lower()).strip()
    return hashlib.blake2b(norm.encode(), digest_size=8).hexdigest() if norm else ""


@dataclass(frozen=True)
class StoryState:
    """What a caller sees of a story after an assignment (plain data, safe to keep)."""

    story_id: str
    headline: str
    key_terms: tuple[str, ...]
    entities: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime
    article_count: int
    duplicate_count: int
    source_count: int
    sources: tuple[str, ...]
    velocity: float
    cohesion: float
    dormant: bool


class Story:
    """Mutable running state of one story; owned by :class:`enrich.cluster.StoryClusterer`.

    Its snapshot (:meth:`to_state`) and pace (:meth:`recent_gap`) are cached until the
    story changes: a snapshot of thousands of stories, most of them idle since the last
    one, is taken every few seconds in a backfill, and the pace is asked for every candidate.
    Any assignment to an attribute of the state, from here or from the clusterer, drops
    the caches; so does every method here that changes a container in place.
    """

    # Caches (see _DERIVED), set to None by _changed() on the first assignment in __init__.
    _snapshot: dict[str, Any] | None
    _content: dict[str, Any] | None
    _gaps: dict[int, float | None] | None
    _recent32: np.ndarray | None
    _copy_floor: tuple[float, float] | None  # (threshold, floor), see copy_floor()

    # Through __dict__: an assignment here is the hot path of clustering, and a Story has
    # no properties with setters to bypass.
    def __setattr__(self, name: str, value: Any) -> None:
        attrs = self.__dict__
        if name in _PROFILE:
            attrs["_snapshot"] = None
        elif name not in _DERIVED:
            attrs.update(_NO_CACHES)
        attrs[name] = value

    def _changed(self) -> None:
        self.__dict__.update(_NO_CACHES)

    def __init__(self, story_id: str, label: int, dim: int) -> None:
        self.id = story_id
        self.label = label
        self.vec_sum = np.zeros(dim, dtype=np.float64)
        self.vec_count = 0
        self._centroid: np.ndarray | None = None
        self.indexed: np.ndarray | None = None
        self.recent: deque[np.ndarray] = deque()
        self.fingerprints: deque[str] = deque()
        self.term_counts: dict[str, int] = {}
        self.entity_terms: set[str] = set()
        self.headline = ""
        self.headline_vec: np.ndarray | None = None
        self.first_seen = datetime.max.replace(tzinfo=UTC)
        self.last_seen = datetime.min.replace(tzinfo=UTC)
        self.article_count = 0
        self.duplicate_count = 0
        self.sources: dict[str, int] = {}
        self.times: deque[datetime] = deque()
        self.sim_n = 0
        self.sim_mean = 0.0
        self.sim_m2 = 0.0
        self.ovl_n = 0
        self.ovl_mean = 0.0
        self.ovl_m2 = 0.0
        self.profile: dict[str, float] | None = None
        self.profile_norm = 0.0
        self.profile_docs = 0

    @property
    def centroid(self) -> np.ndarray:
        """The unit-length mean of the story's article vectors (cached until it changes)."""
        if self._centroid is None:
            norm = float(np.linalg.norm(self.vec_sum))
            out = self.vec_sum / norm if norm > 0 else self.vec_sum
            self._centroid = out.astype(np.float32)
        return self._centroid

    def recent_f32(self) -> np.ndarray:
        """The recent vectors (kept as float16) as rows of a float32 matrix, for the near-copy check."""
        if self._recent32 is None:
            self._recent32 = np.array(self.recent, dtype=np.float32).reshape(len(self.recent), len(self.vec_sum))
        return self._recent32

    def copy_floor(self, threshold: float) -> float:
        """A cosine to the centroid below which no unit vector is a near copy of a recent one.

        The angle between an article and a recent vector is at least the article's angle
        to the centroid less the recent vector's. So if the article is further from the
        centroid than the widest recent vector plus ``acos(threshold)``, no recent vector
        reaches ``threshold`` and the near-copy check need not multiply them out: the
        case of most candidates, whose recent vector is their only article. The bound
        allows for the rows' float16 rounding (their norm) and 1e-3 rad more; it is -2.0
        (skip nothing) when it cannot help. Cached until the story changes.
        """
        if self._copy_floor is None or self._copy_floor[0] != threshold:
            self._copy_floor = (threshold, self._floor(threshold))
        return self._copy_floor[1]

    def _floor(self, threshold: float) -> float:
        # In float64 (an angle near zero is ill-conditioned), with a few small numpy
        # calls and the rest on Python floats: at most a handful of rows, recomputed
        # whenever the story changes.
        rows = self.recent_f32().astype(np.float64)
        if not len(rows):
            return 2.0  # nothing recent: the check finds no copy, whatever the cosine
        centroid = self.centroid.astype(np.float64)
        dots = (rows @ centroid).tolist()
        squares = np.einsum("ij,ij->i", rows, rows).tolist()
        centroid_norm = math.sqrt(float(centroid @ centroid))
        if threshold <= 0 or centroid_norm <= 0 or min(squares) <= 0:
            return -2.0
        cosines = (dot / (math.sqrt(sq) * centroid_norm) for dot, sq in zip(dots, squares, strict=True))
        widest = math.acos(max(-1.0, min(1.0, min(cosines))))
        angle = widest + math.acos(min(1.0, threshold / math.sqrt(max(squares)))) + 1e-3
        return math.cos(angle) if angle < math.pi else -2.0

    @property
    def cohesion(self) -> tuple[float, float]:
        """Mean and standard deviation of the similarities at which articles joined."""
        if self.sim_n < 2:
            return self.sim_mean, 0.0
        return self.sim_mean, math.sqrt(self.sim_m2 / (self.sim_n - 1))

    @property
    def overlap_stats(self) -> tuple[float, float]:
        """Mean and standard deviation of the term overlaps at which articles joined."""
        if self.ovl_n < 2:
            return self.ovl_mean, 0.0
        return self.ovl_mean, math.sqrt(self.ovl_m2 / (self.ovl_n - 1))

    def add_time(self, at: datetime, source: str | None, max_sources: int) -> None:
        self._changed()
        self.article_count += 1
        self.first_seen = min(self.first_seen, at)
        self.last_seen = max(self.last_seen, at)
        self.times.append(at)
        if len(self.times) > _MAX_TIMES:
            self.times.popleft()
        if source:
            if source in self.sources:
                self.sources[source] += 1
            elif len(self.sources) < max_sources:
                self.sources[source] = 1

    def add_content(
        self,
        vec: np.ndarray,
        terms: dict[str, bool],
        title: str,
        joined: tuple[float, float] | None,
        recent_vectors: int,
        profile_terms: int,
    ) -> None:
        """Fold a new (not duplicate) article into the centroid, profile and cohesion."""
        self._changed()
        self.vec_sum += vec
        self.vec_count += 1
        self._centroid = None
        self.profile = None
        if recent_vectors:
            self.recent.append(vec.astype(np.float16))
            while len(self.recent) > recent_vectors:
                self.recent.popleft()
        for t, ent in terms.items():
            self.term_counts[t] = self.term_counts.get(t, 0) + 1
            if ent:
                self.entity_terms.add(t)
        if len(self.term_counts) > 2 * profile_terms:
            self.prune_terms(profile_terms)
        if joined is not None:
            self.sim_n, self.sim_mean, self.sim_m2 = _welford(self.sim_n, self.sim_mean, self.sim_m2, joined[0])
            self.ovl_n, self.ovl_mean, self.ovl_m2 = _welford(self.ovl_n, self.ovl_mean, self.ovl_m2, joined[1])
        self.consider_headline(title, vec)

    def prune_terms(self, keep: int) -> None:
        self._changed()
        top = sorted(self.term_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:keep]
        self.term_counts = dict(top)
        self.entity_terms &= self.term_counts.keys()

    def consider_headline(self, title: str, vec: np.ndarray | None) -> None:
        """Keep as headline the title whose article is closest to the current centroid."""
        if not title.strip():
            return
        if self.headline_vec is None or vec is None:
            if not self.headline:
                self.headline, self.headline_vec = title.strip(), vec
            return
        c = self.vec_sum
        if float(vec @ c) > float(self.headline_vec.astype(np.float64) @ c):
            self.headline, self.headline_vec = title.strip(), vec

    def add_fingerprint(self, fp: str) -> None:
        if fp and fp not in self.fingerprints:
            self._changed()
            self.fingerprints.append(fp)
            if len(self.fingerprints) > _MAX_FINGERPRINTS:
                self.fingerprints.popleft()

    def recent_gap(self, window: int) -> float | None:
        """Mean seconds between the story's latest ``window`` articles (its pace).

        None while that is unknown: fewer than two articles, or all at one instant (a stream
        without dates and without a clock).
        """
        gaps = self._gaps
        if gaps is None:
            gaps = self._gaps = {}
        elif window in gaps:
            return gaps[window]
        recent = list(islice(reversed(self.times), window))
        if len(recent) < 2:
            gaps[window] = None
            return None
        gap = (max(recent) - min(recent)).total_seconds() / (len(recent) - 1)
        gaps[window] = gap if gap > 0 else None
        return gaps[window]

    def velocity(self, window: timedelta) -> float:
        """Articles per hour published in ``window`` before the story's latest article."""
        start = self.last_seen - window
        recent = sum(1 for t in self.times if t > start)
        return recent / (window.total_seconds() / 3600.0)

    def absorb(self, other: Story, recent_vectors: int, profile_terms: int, max_sources: int) -> None:
        """Fold ``other`` into this story (a merge); ``other`` is then discarded."""
        self._changed()
        self.vec_sum += other.vec_sum
        self.vec_count += other.vec_count
        self._centroid = None
        self.profile = None
        self.recent.extend(other.recent)
        while len(self.recent) > recent_vectors:
            self.recent.popleft()
        for fp in other.fingerprints:
            self.add_fingerprint(fp)
        for t, n in other.term_counts.items():
            self.term_counts[t] = self.term_counts.get(t, 0) + n
        self.entity_terms |= other.entity_terms
        if len(self.term_counts) > 2 * profile_terms:
            self.prune_terms(profile_terms)
        self.first_seen = min(self.first_seen, other.first_seen)
        self.last_seen = max(self.last_seen, other.last_seen)
        self.article_count += other.article_count
        self.duplicate_count += other.duplicate_count
        for s, n in other.sources.items():
            if s in self.sources:
                self.sources[s] += n
            elif len(self.sources) < max_sources:
                self.sources[s] = n
        self.times = deque(sorted([*self.times, *other.times])[-_MAX_TIMES:])
        self.sim_n, self.sim_mean, self.sim_m2 = _pool(
            (self.sim_n, self.sim_mean, self.sim_m2), (other.sim_n, other.sim_mean, other.sim_m2)
        )
        self.ovl_n, self.ovl_mean, self.ovl_m2 = _pool(
            (self.ovl_n, self.ovl_mean, self.ovl_m2), (other.ovl_n, other.ovl_mean, other.ovl_m2)
        )
        self.consider_headline(other.headline, other.headline_vec)

    def state(self, key_terms: list[str], entities: list[str], velocity: float, dormant: bool) -> StoryState:
        return StoryState(
            story_id=self.id,
            headline=self.headline,
            key_terms=tuple(key_terms),
            entities=tuple(entities),
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            article_count=self.article_count,
            duplicate_count=self.duplicate_count,
            source_count=len(self.sources),
            sources=tuple(sorted(self.sources, key=lambda s: (-self.sources[s], s))),
            velocity=velocity,
            cohesion=self.cohesion[0],
            dormant=dormant,
        )

    def to_state(self) -> dict[str, Any]:
        """A JSON-able snapshot, the same object until the story changes: do not modify it."""
        if self._snapshot is None:
            self._snapshot = self._build_state()
        return self._snapshot

    def _build_state(self) -> dict[str, Any]:
        if self._content is None:
            self._content = self._build_content()
        return {
            **self._content,
            "profile": None if self.profile is None else [self.profile, self.profile_norm, self.profile_docs],
        }

    def _build_content(self) -> dict[str, Any]:
        """The snapshot but the term profile."""
        return {
            "id": self.id,
            "label": self.label,
            "vec_sum": pack_array(self.vec_sum),
            "vec_count": self.vec_count,
            "recent": [pack_array(v) for v in self.recent],
            "fingerprints": list(self.fingerprints),
            "term_counts": dict(self.term_counts),
            "entity_terms": sorted(self.entity_terms),
            "headline": self.headline,
            "headline_vec": None if self.headline_vec is None else pack_array(self.headline_vec),
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "article_count": self.article_count,
            "duplicate_count": self.duplicate_count,
            "sources": dict(self.sources),
            "times": [t.isoformat() for t in self.times],
            "sim": [self.sim_n, self.sim_mean, self.sim_m2],
            "ovl": [self.ovl_n, self.ovl_mean, self.ovl_m2],
        }

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> Story:
        vec_sum = unpack_array(s["vec_sum"])
        story = cls(str(s["id"]), int(s["label"]), vec_sum.shape[0])
        story.vec_sum = vec_sum
        story.vec_count = int(s["vec_count"])
        story.recent = deque(unpack_array(v, np.float16) for v in s["recent"])
        story.fingerprints = deque(s["fingerprints"])
        story.term_counts = {str(k): int(v) for k, v in s["term_counts"].items()}
        story.entity_terms = set(s["entity_terms"])
        story.headline = s["headline"]
        hv = s["headline_vec"]
        story.headline_vec = None if hv is None else unpack_array(hv, np.float32)
        story.first_seen = datetime.fromisoformat(s["first_seen"])
        story.last_seen = datetime.fromisoformat(s["last_seen"])
        story.article_count = int(s["article_count"])
        story.duplicate_count = int(s["duplicate_count"])
        story.sources = {str(k): int(v) for k, v in s["sources"].items()}
        story.times = deque(datetime.fromisoformat(t) for t in s["times"])
        story.sim_n, story.sim_mean, story.sim_m2 = int(s["sim"][0]), float(s["sim"][1]), float(s["sim"][2])
        story.ovl_n, story.ovl_mean, story.ovl_m2 = int(s["ovl"][0]), float(s["ovl"][1]), float(s["ovl"][2])
        if s.get("profile") is not None:
            weights, pnorm, docs = s["profile"]
            story.profile = {str(k): float(v) for k, v in weights.items()}
            story.profile_norm, story.profile_docs = float(pnorm), int(docs)
        return story


def _welford(n: int, mean: float, m2: float, x: float) -> tuple[int, float, float]:
    n += 1
    delta = x - mean
    mean += delta / n
    return n, mean, m2 + delta * (x - mean)


def _pool(a: tuple[int, float, float], b: tuple[int, float, float]) -> tuple[int, float, float]:
    """Combine two running (count, mean, M2) statistics."""
    n = a[0] + b[0]
    if not n:
        return 0, 0.0, 0.0
    delta = b[1] - a[1]
    return n, a[1] + delta * b[0] / n, a[2] + b[2] + delta * delta * a[0] * b[0] / n
