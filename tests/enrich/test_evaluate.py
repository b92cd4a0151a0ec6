"""BCubed precision, recall and F1, checked against hand-computed cases."""

from __future__ import annotations

import pytest

from enrich.evaluate import bcubed


@pytest.mark.parametrize(
    ("predicted", "gold", "expected"),
    [
        (["a", "a", "b"], [1, 1, 2], (1.0, 1.0, 1.0)),
        (["a", "a", "a"], [1, 1, 2], (5 / 9, 1.0, 2 * (5 / 9) / (1 + 5 / 9))),
        (["a", "b", "c"], [1, 1, 1], (1.0, 1 / 3, 0.5)),
        (["x", "x", "y", "y"], [1, 2, 1, 2], (0.5, 0.5, 0.5)),
        ([7, 7, 8], ["p", "p", "q"], (1.0, 1.0, 1.0)),
    ],
    ids=["perfect", "all-in-one", "all-singletons", "crossed", "labels-are-opaque"],
)
def test_bcubed(predicted: list[object], gold: list[object], expected: tuple[float, float, float]) -> None:
    assert bcubed(predicted, gold) == pytest.approx(expected)


def test_bcubed_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        bcubed(["a"], [1, 2])


def test_bcubed_empty() -> None:
    assert bcubed([], []) == (0.0, 0.0, 0.0)
