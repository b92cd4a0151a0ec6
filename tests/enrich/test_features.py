"""Term extraction, online document frequencies, overlap, and the online distributions."""

from __future__ import annotations

import pytest

from enrich.calibrate import OnlineDistribution
from enrich.features import DocumentFrequency, extract_terms, overlap


@pytest.mark.parametrize(
    ("text", "entities", "plain"),
    [
        ("Quake hits Chile. Officials in Santiago count 300 dead", {"chile", "santiago", "300"}, {"quake", "count"}),
        ("The actress Tara Reid checked into Promises, her rep said", {"tara reid", "promises"}, {"rep"}),
        ("Tara Reid Finally Checks Into Rehab For Undisclosed Reasons", set(), {"tara", "reid", "rehab"}),
        ("iOS 7.1 is here, 3 fixes", {"7.1"}, {"ios"}),
        ("", set(), set()),
    ],
    ids=["sentence-start-not-entity", "names-and-joined-name", "title-case-says-nothing", "figures", "empty"],
)
def test_extract_terms(text: str, entities: set[str], plain: set[str]) -> None:
    terms = extract_terms(text)
    assert entities <= {t for t, e in terms.items() if e}
    assert plain <= {t for t, e in terms.items() if not e}
    assert not {"the", "in", "is", "her", "3"} & terms.keys()


def test_extract_terms_caps_the_count() -> None:
    text = " ".join(f"Word{i}x" for i in range(500))
    assert len(extract_terms(text, max_terms=20)) <= 20


def test_idf_ranks_rare_terms_higher() -> None:
    df = DocumentFrequency()
    for i in range(50):
        df.add({"says", f"name{i}"} | ({"lohan"} if i % 10 == 0 else set()))
    assert df.idf("says") < 0.5 * df.idf("lohan")
    assert df.idf("name3") > df.idf("lohan") > df.idf("says")
    assert df.idf("never-seen") >= df.idf("name3")


def test_document_frequency_memory_is_bounded_and_keeps_frequent_terms() -> None:
    df = DocumentFrequency(max_terms=100)
    for i in range(1000):
        df.add({"common", f"rare{i}"})
    assert len(df) <= 100
    assert df.df("common") == 1000


def test_document_frequency_state_round_trip() -> None:
    df = DocumentFrequency(max_terms=50)
    for i in range(30):
        df.add({f"t{i % 7}", "x"})
    copy = DocumentFrequency.from_state(df.to_state())
    assert copy.to_state() == df.to_state()
    assert copy.idf("t3") == df.idf("t3")


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ({"x": 1.0}, {"x": 2.0}, 1.0),
        ({"x": 1.0}, {"y": 1.0}, 0.0),
        ({}, {"y": 1.0}, 0.0),
        ({"x": 1.0, "y": 1.0}, {"x": 1.0}, 2**-0.5),
    ],
    ids=["same-direction", "disjoint", "empty", "partial"],
)
def test_overlap(a: dict[str, float], b: dict[str, float], expected: float) -> None:
    assert overlap(a, b) == pytest.approx(expected)


def test_online_distribution_uses_prior_then_data() -> None:
    d = OnlineDistribution(0.0, 1.0, prior_median=0.7, prior_spread=0.1, prior_weight=1.0)
    assert d.threshold(2.0) == pytest.approx(0.5)
    for i in range(2000):
        d.add(0.3 + 0.1 * ((i * 7919) % 101) / 100)  # spread evenly over [0.3, 0.4]
    med, spread = d.location_spread()
    assert med == pytest.approx(0.35, abs=0.01)
    assert 0.0 < spread < 0.05
    copy = OnlineDistribution(0.0, 1.0, prior_median=0.7, prior_spread=0.1, prior_weight=1.0)
    copy.load_state(d.to_state())
    assert copy.location_spread() == pytest.approx(d.location_spread())
