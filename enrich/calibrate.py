"""Scale-free thresholds: judge a similarity against the stream's own distribution.

How similar two articles of one story look depends on the text: two full-text leads of
one event score about 0.8 with MiniLM, two headlines of one story about 0.7, and the
best fixed threshold moves from 0.6 to 0.4 between such streams. Instead of a fixed
cut-off the clusterer keeps the distribution of the similarities at which articles
*joined* stories, and accepts a candidate that is not much below what is typical there:
``value >= median - z * spread``, with the spread taken from the upper half (median to
upper quartile), which the cut-off itself never truncates, so the estimate does not
ratchet upwards as it feeds on its own decisions. A prior, worth ``prior_weight``
observations, carries the first articles of a stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

_Q75_Z = 0.6745  # upper quartile of a standard normal
_Q90_Z = 1.2816  # and its 90th percentile


class OnlineDistribution:
    """A decaying histogram over ``[lo, hi]`` with robust location and spread.

    >>> d = OnlineDistribution(0.0, 1.0, prior_median=0.7, prior_spread=0.1)
    >>> round(d.threshold(2.0), 2)
    0.5
    """

    def __init__(
        self,
        lo: float,
        hi: float,
        prior_median: float,
        prior_spread: float,
        prior_weight: float = 20.0,
        half_life: float = 5000.0,
        bins: int = 200,
    ) -> None:
        self.lo, self.hi, self.bins = lo, hi, bins
        self.prior_median, self.prior_spread, self.prior_weight = prior_median, prior_spread, prior_weight
        self.half_life = half_life
        self.counts = np.zeros(bins, dtype=np.float64)
        self._decay = 0.5 ** (1.0 / half_life)

    def add(self, value: float) -> None:
        self.counts *= self._decay
        pos = (min(max(value, self.lo), self.hi) - self.lo) / (self.hi - self.lo)
        self.counts[min(int(pos * self.bins), self.bins - 1)] += 1.0

    @property
    def weight(self) -> float:
        return float(self.counts.sum())

    def _quantile(self, q: float) -> float:
        cum = np.cumsum(self.counts)
        target = q * cum[-1]
        i = int(np.searchsorted(cum, target))
        before = cum[i - 1] if i > 0 else 0.0
        inside = (target - before) / self.counts[i] if self.counts[i] > 0 else 0.5
        return self.lo + (i + inside) * (self.hi - self.lo) / self.bins

    def location_spread(self) -> tuple[float, float]:
        """Median and robust spread, blended with the prior by weight."""
        w = self.weight
        if w <= 1e-9:
            return self.prior_median, self.prior_spread
        med = self._quantile(0.5)
        spread = max((self._quantile(0.75) - med) / _Q75_Z, 1e-3)
        a = w / (w + self.prior_weight)
        return a * med + (1 - a) * self.prior_median, a * spread + (1 - a) * self.prior_spread

    def threshold(self, z: float) -> float:
        """``median - z * spread``: a value this low is still typical of the distribution."""
        med, spread = self.location_spread()
        return med - z * spread

    def standardise(self, value: float) -> float:
        med, spread = self.location_spread()
        return (value - med) / spread

    def to_state(self) -> dict[str, Any]:
        nz = np.nonzero(self.counts)[0]
        return {"bins": {str(int(i)): float(self.counts[i]) for i in nz}}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.counts[:] = 0.0
        for i, v in state["bins"].items():
            self.counts[int(i)] = float(v)
