"""Cheap lexical evidence for story clustering: entity-like terms and online IDF.

Sentence embeddings place two earthquakes, or two celebrities entering rehab, close
together: they describe events *of the same kind*. What tells such events apart is who,
where and which numbers: names, places, organisations, figures. No NER model is
available offline, so :func:`extract_terms` keeps content words and marks as entities
the tokens that look like names (capitalised away from the start of a sentence) or
figures; :class:`DocumentFrequency` learns from the stream itself how rare each term
is, so that "Lohan" outweighs "rehab" and "says" weighs nothing, in any language and
any news mix, without a vocabulary shipped in advance.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping
from operator import mul
from typing import Any

_TOKEN = re.compile(r"[^\W\d_][\w'’\-]*[^\W_]|[^\W\d_]|\d[\d.,:]*\d|\d")
_SENTENCE_BREAK = re.compile(r"[.!?:\n\"“`]")

# Function words only: topical words are left to the online IDF, which is language- and
# domain-neutral. Lowercase.
STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be been before being below between both but by
    can could did do does doing down during each few for from further had has have having he her here hers herself him
    himself his how i if in into is it its itself just me more most my myself no nor not now of off on once only or
    other our ours ourselves out over own same she should so some such than that the their theirs them themselves then
    there these they this those through to too under until up very was we were what when where which while who whom why
    will with would you your yours yourself yourselves says said say new news one two via get gets got us
    """.split()
)


def _normalise(token: str) -> str:
    return token.lower().replace("’", "'").removesuffix("'s")


def _is_title_case(tokens: list[str]) -> bool:
    words = [t for t in tokens if t[0].isalpha() and t.lower() not in STOPWORDS]
    return len(words) >= 3 and sum(t[0].isupper() for t in words) >= 0.75 * len(words)


def extract_terms(text: str, max_terms: int = 64) -> dict[str, bool]:
    """Return the distinct content terms of ``text``, each flagged ``True`` if entity-like.

    A token is entity-like when it is a number with at least two digits, or capitalised
    away from the start of a sentence; a word seen both ways counts as an entity.
    Consecutive capitalised words also give a joined term (``"tara reid"``) so that a full
    name is stronger evidence than either half. In Title Case Headlines capitalisation
    says nothing, so there only figures count as entities; the online IDF still weighs
    the rare words up.

    >>> sorted(extract_terms("Quake hits Chile. Officials in Santiago count 300 dead").items())[:3]
    [('300', True), ('chile', True), ('count', False)]
    """
    matches = list(_TOKEN.finditer(text))
    title_case = _is_title_case([m.group() for m in matches])
    terms: dict[str, bool] = {}
    run: list[str] = []
    stopwords = STOPWORDS
    sentence_break = _SENTENCE_BREAK.search

    def flush() -> None:
        if 2 <= len(run) <= 4:
            terms[" ".join(run)] = True
        run.clear()

    prev_end = 0
    for m in matches:
        if len(terms) >= max_terms:
            break
        raw = m.group()
        start, end = m.span()
        if start == prev_end + 1 and text[prev_end] == " ":  # most tokens: one space apart
            sentence_start = False
        else:
            gap = text[prev_end:start]
            sentence_start = start == 0 or bool(sentence_break(gap))
            if gap.strip():
                flush()
        prev_end = end
        word = raw.lower().replace("’", "'").removesuffix("'s")  # _normalise, inlined: the hot loop
        if raw[0].isdigit():
            flush()
            if sum(c.isdigit() for c in raw) >= 2:
                terms[word] = True
            continue
        if word in stopwords or len(word) < 2:
            flush()
            continue
        capital = raw[0].isupper() and not title_case
        if capital:
            run.append(word)
        else:
            flush()
        terms[word] = terms.get(word, False) or (capital and not sentence_start)
    flush()
    return terms


class DocumentFrequency:
    """Online document frequencies with a memory cap, for IDF weights learnt from the stream.

    When more than ``max_terms`` terms are tracked, the rarer half is forgotten (ties by
    term, so the result is deterministic). Forgotten terms look new again, which errs on
    the side of calling a term rare: they were rare. Snapshot with :meth:`to_state`.
    """

    def __init__(self, max_terms: int = 200_000, prior_docs: int = 100) -> None:
        self.max_terms = max_terms
        self.prior_docs = prior_docs
        self.docs = 0
        self._df: dict[str, int] = {}
        self.touched: set[str] | None = set()
        """Terms counted since the owner last reset this to an empty set (None: pruned, any)."""

    def add(self, terms: Iterable[str]) -> None:
        """Count one document containing ``terms`` (distinct)."""
        self.docs += 1
        df = self._df
        for t in terms:
            df[t] = df.get(t, 0) + 1
        if self.touched is not None:
            self.touched.update(terms)
        if len(df) > self.max_terms:
            self._prune()

    def _prune(self) -> None:
        keep = sorted(self._df.items(), key=lambda kv: (-kv[1], kv[0]))[: self.max_terms // 2]
        self._df = dict(keep)
        self.touched = None

    def df(self, term: str) -> int:
        return self._df.get(term, 0)

    def idf(self, term: str) -> float:
        """Smoothed inverse document frequency, ``log((N + prior + 1) / (df + 1))``.

        The prior counts ``prior_docs`` imaginary documents without the term: every term
        is taken to be rare until the stream shows otherwise, so that the first articles
        of a stream can already be matched on their names.
        """
        return math.log((self.docs + self.prior_docs + 1) / (self._df.get(term, 0) + 1))

    def __len__(self) -> int:
        return len(self._df)

    def to_state(self, counts: bool = True) -> dict[str, Any]:
        """The state; without the counts (``counts=False``) when the owner saves :attr:`counts` apart."""
        state: dict[str, Any] = {"max_terms": self.max_terms, "prior_docs": self.prior_docs, "docs": self.docs}
        if counts:
            state["df"] = dict(self._df)
        return state

    @property
    def counts(self) -> Mapping[str, int]:
        """The live document frequency of each term (read-only)."""
        return self._df

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> DocumentFrequency:
        obj = cls(int(state["max_terms"]), int(state.get("prior_docs", 100)))
        obj.docs = int(state["docs"])
        obj._df = {str(k): int(v) for k, v in state["df"].items()}
        return obj


def weighted_terms(terms: Mapping[str, bool], df: DocumentFrequency, entity_boost: float = 2.0) -> dict[str, float]:
    """IDF weight of each term, multiplied by ``entity_boost`` for entity-like terms.

    :meth:`DocumentFrequency.idf` inlined (the same arithmetic): this runs for every
    term of every article.
    """
    total, counts, log = df.docs + df.prior_docs + 1, df._df, math.log
    return {t: log(total / (counts.get(t, 0) + 1)) * (entity_boost if ent else 1.0) for t, ent in terms.items()}


def profile_weights(
    term_counts: Mapping[str, int], articles: int, entities: Collection[str], df: DocumentFrequency, entity_boost: float
) -> dict[str, float]:
    """A story's term profile: each term's share of its ``articles`` times its weight.

    The same arithmetic as ``(k / articles) * df.idf(t) * boost``, with the IDF inlined.
    """
    total, counts, log = df.docs + df.prior_docs + 1, df._df, math.log
    return {
        t: (k / articles) * log(total / (counts.get(t, 0) + 1)) * (entity_boost if t in entities else 1.0)
        for t, k in term_counts.items()
    }


def norm(weights: Mapping[str, float]) -> float:
    values = weights.values()
    return math.sqrt(sum(map(mul, values, values)))


def overlap(article: Mapping[str, float], profile: Mapping[str, float], profile_norm: float | None = None) -> float:
    """Cosine of two sparse weight vectors, in [0, 1]; 0 when either is empty."""
    if not article or not profile:
        return 0.0
    small, large = (article, profile) if len(article) <= len(profile) else (profile, article)
    dot = sum([w * large[t] for t, w in small.items() if t in large])
    if dot <= 0.0:
        return 0.0
    na = norm(article)
    nb = norm(profile) if profile_norm is None else profile_norm
    return dot / (na * nb) if na and nb else 0.0
