"""Topic matching on labelled data: precision, recall and F1 of watched topics.

Two topic sets, written as a user would write them (``bench/topics/``), are scored by
``storywatch topics score`` (its function, :func:`enrich.commands.score_topics`, with the
shipped config ``config/storywatch.yaml`` and so the default ``enrich.topic_threshold``):

- ``ecbplus.yaml``: ECB+ topics 1 to 10 over all 982 ECB+ articles. An article's gold
  topic is its ECB+ ``topic`` if that is one of the ten; the other 33 topics' articles
  are negatives for every watched topic.
- ``uci-categories.yaml``: the four UCI News Aggregator categories over every 12th
  headline of ``uci_headlines.jsonl`` (531 headlines, fixed so that runs compare), gold
  from ``category``.

Each (article, topic) pair counts once: a match of the gold topic is a true positive, a
match of any other topic a false positive, a gold topic not matched a false negative.
Per-topic and micro-averaged precision, recall and F1 are printed at the default
threshold, with a baseline measured in the same run: the plain cosine of the article's
embedding to the topic description alone, at the same threshold; and, as a generous
reference, that baseline at whichever threshold (0.05 to 0.79) gives it the best F1 on
the data itself. The F1 of other thresholds is printed for information (the
sensitivity), not to choose one. Last, the same topics with their examples and
counter-examples removed (name and description only) show what the examples are worth.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_topics.py [--data DIR]

Data (not in the repository; see the README's "Data and credits"): "ECB+ corpus,
Cybulska and Vossen, LREC 2014" (CC BY 3.0); "News Aggregator data set, F. Gasparetti,
UCI Machine Learning Repository" (CC BY 4.0).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from enrich.commands import EXIT_OK, load_topics, normalise, read_jsonl, score_topics
from enrich.embed import Embedder, article_text, make_embedder
from enrich.service import embed_config
from storywatch.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
TOPICS_DIR = ROOT / "bench" / "topics"
DEFAULT_DATA = ROOT.parent / "shared" / "data"
SWEEP = (0.33, 0.38, 0.43, 0.48, 0.53)
ORACLE_GRID = np.round(np.arange(0.05, 0.80, 0.01), 2)
UCI_EVERY = 12

# Gold label in the data -> watched topic name in the YAML file.
ECB_GOLD = {
    "1": "celebrity checks into rehab",
    "2": "Oscars host announced",
    "3": "prison escape or notorious killer sentenced",
    "4": "death of a screen or pin-up star",
    "5": "coach fired",
    "6": "director hired for a film sequel",
    "7": "heavyweight boxing title fight",
    "8": "deadly bank bombing",
    "9": "endangered species rules changed",
    "10": "baseball free-agent contract offer",
}
UCI_GOLD = {"b": "business and economy", "t": "science and technology", "e": "entertainment", "m": "health"}


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, other: Counts) -> None:
        self.tp, self.fp, self.fn = self.tp + other.tp, self.fp + other.fp, self.fn + other.fn

    def prf(self) -> tuple[float, float, float]:
        """Precision, recall, F1; a ratio with nothing to count is 0."""
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def evaluate(
    gold: Sequence[str | None], predicted: Sequence[Iterable[str]], topics: Sequence[str]
) -> tuple[dict[str, Counts], Counts]:
    """Per-topic and micro-summed counts: ``gold[i]`` is article i's topic (None: none of
    ``topics``), ``predicted[i]`` the topics it matched.

    >>> per, micro = evaluate(["a", None], [["a", "b"], ["b"]], ["a", "b"])
    >>> micro.prf()
    (0.3333333333333333, 1.0, 0.5)
    """
    per = {t: Counts() for t in topics}
    for g, pred in zip(gold, predicted, strict=True):
        matched = set(pred)
        unknown = (matched | ({g} if g is not None else set())) - per.keys()
        if unknown:
            raise ValueError(f"topics not in the set: {sorted(unknown)}")
        for t in topics:
            if t in matched and t == g:
                per[t].tp += 1
            elif t in matched:
                per[t].fp += 1
            elif t == g:
                per[t].fn += 1
    micro = Counts()
    for c in per.values():
        micro.add(c)
    return per, micro


class CachedEncoder:
    """The embedder, each distinct text encoded once: the threshold sweep and the
    baseline re-score the same articles without re-embedding them."""

    def __init__(self, inner: Embedder):
        self.inner = inner
        self._cache: dict[str, np.ndarray] = {}

    @property
    def dim(self) -> int:
        return self.inner.dim

    def encode(self, texts: list[str]) -> np.ndarray:
        new = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if new:
            for text, vec in zip(new, self.inner.encode(new), strict=True):
                self._cache[text] = vec
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])


def with_threshold(settings: Settings, threshold: float) -> Settings:
    return settings.model_copy(
        update={"enrich": settings.enrich.model_copy(update={"topic_threshold": threshold})}
    )


def storywatch_matches(
    settings: Settings, topics_path: Path, input_path: Path, embedder: Embedder, workdir: Path
) -> list[list[str]]:
    """The topics each article matched, as ``storywatch topics score`` writes them."""
    out = workdir / "scores.jsonl"
    if score_topics(settings, topics_path, input_path, out, embedder=embedder) != EXIT_OK:
        raise SystemExit(f"topics score failed on {input_path}")
    return [row["matched"] for row in read_jsonl(out)]


def description_scores(
    settings: Settings, topics_path: Path, input_path: Path, embedder: Embedder
) -> tuple[list[str], np.ndarray]:
    """Baseline: cosine of each article's embedding (the same text the scorer embeds) to
    each topic's description alone; rows are articles, columns topics."""
    topics = load_topics(topics_path)
    articles = normalise(list(read_jsonl(input_path)))
    lead = embed_config(settings).lead_chars
    vectors = embedder.encode([article_text(a.title, a.summary, lead) for a in articles])
    anchors = embedder.encode([t.description.strip() or t.name for t in topics])
    return [t.name for t in topics], vectors @ anchors.T


def without_examples(topics_path: Path, workdir: Path) -> Path:
    """A copy of the topics file with only each topic's name and description (and the rest)."""
    doc = yaml.safe_load(topics_path.read_text(encoding="utf-8"))
    for topic in doc["topics"]:
        topic.pop("examples", None)
        topic.pop("counter_examples", None)
    out = workdir / f"{topics_path.stem}-no-examples.yaml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return out


def above(names: list[str], scores: np.ndarray, threshold: float) -> list[list[str]]:
    return [[names[j] for j in np.flatnonzero(row >= threshold)] for row in scores]


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a (baseline F1 0)"


def fmt(counts: Counts) -> str:
    p, r, f = counts.prf()
    return f"{p:.3f} | {r:.3f} | {f:.3f}"


def bench_set(
    title: str, settings: Settings, topics_path: Path, input_path: Path, gold: list[str | None], embedder: Embedder
) -> None:
    threshold = settings.enrich.topic_threshold
    names = [t.name for t in load_topics(topics_path)]
    base_names, base_scores = description_scores(settings, topics_path, input_path, embedder)
    with tempfile.TemporaryDirectory(prefix="storywatch-bench-topics-") as tmp:
        matches = storywatch_matches(settings, topics_path, input_path, embedder, Path(tmp))
        sweep = {
            t: storywatch_matches(with_threshold(settings, t), topics_path, input_path, embedder, Path(tmp))
            for t in SWEEP
        }
        bare = storywatch_matches(settings, without_examples(topics_path, Path(tmp)), input_path, embedder, Path(tmp))
    per, micro = evaluate(gold, matches, names)
    base_per, base_micro = evaluate(gold, above(base_names, base_scores, threshold), names)
    print(f"## {title}\n")
    print(f"`{topics_path.relative_to(ROOT)}` over {len(gold)} articles of `{input_path.name}`, "
          f"{sum(g is not None for g in gold)} with a gold topic; threshold {threshold:g}.\n")
    print("| topic | gold | matched | P | R | F1 | baseline F1 |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        c = per[name]
        print(f"| {name} | {c.tp + c.fn} | {c.tp + c.fp} | {fmt(c)} | {base_per[name].prf()[2]:.3f} |")
    print(f"| **micro** | {micro.tp + micro.fn} | {micro.tp + micro.fp} | {fmt(micro)} | {base_micro.prf()[2]:.3f} |")
    f1, base_f1 = micro.prf()[2], base_micro.prf()[2]
    best_t, best = max(
        ((float(t), evaluate(gold, above(base_names, base_scores, t), names)[1]) for t in ORACLE_GRID),
        key=lambda tc: tc[1].prf()[2],
    )
    print(f"\nstorywatch micro P / R / F1: {fmt(micro).replace(' |', ' /')}")
    print(f"baseline (cosine to the description alone) micro P / R / F1: {fmt(base_micro).replace(' |', ' /')}")
    print(f"storywatch F1 / baseline F1: {ratio(f1, base_f1)}")
    print(f"baseline at its best threshold on this data ({best_t:.2f}, chosen on the answers, which favours it): "
          f"P / R / F1 {fmt(best).replace(' |', ' /')}; storywatch F1 / that: {ratio(f1, best.prf()[2])}\n")
    print("Sensitivity (information only; the default is not chosen from this):\n")
    print("| threshold | P | R | F1 | baseline F1 |")
    print("|---|---|---|---|---|")
    for t, m in sweep.items():
        _, c = evaluate(gold, m, names)
        _, b = evaluate(gold, above(base_names, base_scores, t), names)
        mark = " (default)" if abs(t - threshold) < 1e-9 else ""
        print(f"| {t:g}{mark} | {fmt(c)} | {b.prf()[2]:.3f} |")
    bare_per, bare_micro = evaluate(gold, bare, names)
    print("\nThe same topics with name and description only (examples and counter-examples removed), "
          f"threshold {threshold:g}: micro P / R / F1 {fmt(bare_micro).replace(' |', ' /')}; per topic F1 "
          + ", ".join(f"{bare_per[n].prf()[2]:.3f}" for n in names) + ".")
    print()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="directory of ecbplus.jsonl, uci_headlines.jsonl")
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "storywatch.yaml")
    args = ap.parse_args(argv)
    settings = load_settings(args.config)
    embedder = CachedEncoder(make_embedder(embed_config(settings)))
    print("# Topic matching: storywatch topics score on labelled data\n")
    print(f"`python bench/bench_topics.py`; config `{args.config.name}`, "
          f"embedder {settings.enrich.embed.model or 'all-MiniLM-L6-v2 (bundled)'}, "
          f"backend {settings.enrich.embed.backend}, text {settings.enrich.embed.text}.\n")

    ecb_path = args.data / "ecbplus.jsonl"
    ecb_gold = [ECB_GOLD.get(str(r.get("topic"))) for r in read_jsonl(ecb_path)]
    bench_set("ECB+: ten event topics", settings, TOPICS_DIR / "ecbplus.yaml", ecb_path, ecb_gold, embedder)

    uci_rows = list(read_jsonl(args.data / "uci_headlines.jsonl"))[::UCI_EVERY]
    uci_gold: list[str | None] = [UCI_GOLD[r["category"]] for r in uci_rows]
    with tempfile.TemporaryDirectory(prefix="storywatch-bench-topics-") as tmp:
        uci_path = Path(tmp) / f"uci_headlines_every{UCI_EVERY}.jsonl"
        uci_path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in uci_rows), encoding="utf-8")
        bench_set(f"UCI: four broad categories, every {UCI_EVERY}th headline", settings,
                  TOPICS_DIR / "uci-categories.yaml", uci_path, uci_gold, embedder)

    print('Data: "ECB+ corpus, Cybulska and Vossen, LREC 2014" (CC BY 3.0); "News Aggregator data set, '
          'F. Gasparetti, UCI Machine Learning Repository" (CC BY 4.0).')
    return 0


if __name__ == "__main__":
    sys.exit(main())
