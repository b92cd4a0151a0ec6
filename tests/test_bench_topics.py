"""bench/bench_topics.py: its topic sets are valid config, and its metric counts right.

No model is loaded: the benchmark itself embeds, these tests check what its figures rest on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bench.bench_topics import ECB_GOLD, TOPICS_DIR, UCI_GOLD, Counts, evaluate
from enrich.commands import load_topics
from storywatch.settings import load_settings

SETS = [("ecbplus.yaml", ECB_GOLD, 10), ("uci-categories.yaml", UCI_GOLD, 4)]


@pytest.mark.parametrize(("name", "gold", "count"), SETS, ids=[s[0] for s in SETS])
def test_topic_set_is_valid_config(
    tmp_config: Callable[..., Path], name: str, gold: dict[str, str], count: int
) -> None:
    path = TOPICS_DIR / name
    settings = load_settings(tmp_config({"include": [str(path)]}), environ={})
    topics = settings.topics
    assert [t.name for t in topics] == [t.name for t in load_topics(path)]
    assert len(topics) == count
    assert sorted(t.name for t in topics) == sorted(gold.values())
    for t in topics:
        assert t.description.strip(), t.name
        assert 1 <= len(t.examples) <= 3, t.name
        assert t.threshold is None, f"{t.name}: the benchmark measures the default threshold"
        assert not t.require_keywords and not t.exclude_keywords, t.name


CASES = [
    # (id, gold, predicted, expected per-topic (tp, fp, fn), expected micro P, R, F1)
    ("perfect", ["a", "b", None], [["a"], ["b"], []], {"a": (1, 0, 0), "b": (1, 0, 0)}, (1.0, 1.0, 1.0)),
    ("nothing matched", ["a", "b"], [[], []], {"a": (0, 0, 1), "b": (0, 0, 1)}, (0.0, 0.0, 0.0)),
    (
        "extra match and a negative article",
        ["a", None],
        [["a", "b"], ["b"]],
        {"a": (1, 0, 0), "b": (0, 2, 0)},
        (1 / 3, 1.0, 0.5),
    ),
    (
        "wrong topic counts against both",
        ["a", "a", "b", "b"],
        [["a"], ["b"], ["b"], []],
        {"a": (1, 0, 1), "b": (1, 1, 1)},
        (2 / 3, 0.5, 4 / 7),
    ),
]


@pytest.mark.parametrize(
    ("gold", "predicted", "per_topic", "micro_prf"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_evaluate(
    gold: list[str | None],
    predicted: list[list[str]],
    per_topic: dict[str, tuple[int, int, int]],
    micro_prf: tuple[float, float, float],
) -> None:
    per, micro = evaluate(gold, predicted, ["a", "b"])
    assert {t: (c.tp, c.fp, c.fn) for t, c in per.items()} == per_topic
    assert micro.prf() == pytest.approx(micro_prf)


def test_per_topic_ratios() -> None:
    assert Counts(tp=3, fp=1, fn=2).prf() == pytest.approx((0.75, 0.6, 2 * 0.75 * 0.6 / 1.35))
    assert Counts().prf() == (0.0, 0.0, 0.0)


def test_evaluate_rejects_unknown_topics() -> None:
    with pytest.raises(ValueError, match="not in the set"):
        evaluate(["a"], [["c"]], ["a", "b"])
