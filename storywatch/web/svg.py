"""Time-series charts as plain geometry, drawn as inline SVG by the templates.

The dashboard needs no JavaScript and no build step, so charts are computed on the
server: :func:`line_chart` maps timestamped series to pixel coordinates and picks axis
ticks; the template turns the result into ``<path>`` and ``<text>`` elements (through
Jinja, so every label is escaped like any other text).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

PALETTE_SIZE = 8
"""Series colours are CSS classes ``s0`` .. ``s7`` (static/style.css)."""

_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 44, 28, 10, 26
_TIME_STEPS = (
    timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15), timedelta(minutes=30),
    timedelta(hours=1), timedelta(hours=3), timedelta(hours=6), timedelta(hours=12),
    timedelta(days=1), timedelta(days=2), timedelta(days=7), timedelta(days=30),
)  # fmt: skip


@dataclass(frozen=True)
class Series:
    """One line: ``points`` are ``(time, value)``; ``step`` draws a staircase (counts)."""

    label: str
    points: Sequence[tuple[datetime, float]]
    step: bool = True
    note: str | None = None
    """Shown after the label in the legend; default: the last value."""


@dataclass(frozen=True)
class DrawnSeries:
    label: str
    css: str
    path: str
    last_x: float
    last_y: float
    last_value: float
    note: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    series: tuple[DrawnSeries, ...]
    x_ticks: tuple[tuple[float, str], ...]
    y_ticks: tuple[tuple[float, str], ...]
    plot: tuple[float, float, float, float]
    """left, top, right, bottom of the plotting area."""
    empty: bool = False


def _nice_step(span: float, target: int = 4) -> float:
    raw = max(span / target, 1e-9)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _time_step(span_s: float, target: int = 6) -> timedelta:
    for step in _TIME_STEPS:
        if span_s / step.total_seconds() <= target:
            return step
    return _TIME_STEPS[-1]


def _fmt_value(v: float) -> str:
    return f"{v:.0f}" if v == int(v) else f"{v:.1f}"


def line_chart(series: Sequence[Series], width: int = 1080, height: int = 260, now: datetime | None = None) -> Chart:
    """Lay out ``series`` on shared axes. ``now`` extends the time axis (and each
    staircase) to the present, so a story that stopped growing shows as flat."""
    left, top = float(_MARGIN_LEFT), float(_MARGIN_TOP)
    right, bottom = float(width - _MARGIN_RIGHT), float(height - _MARGIN_BOTTOM)
    pts = [p for s in series for p in s.points]
    if not pts:
        return Chart(width, height, (), (), (), (left, top, right, bottom), empty=True)
    t0 = min(t for t, _ in pts).timestamp()
    t1 = max([t for t, _ in pts] + ([now] if now else [])).timestamp()
    if t1 - t0 < 60:
        t0, t1 = t0 - 30, t1 + 30
    vmax = max(max(v for _, v in pts), 1.0)
    ystep = max(_nice_step(vmax), 1.0)
    vtop = math.ceil(vmax / ystep) * ystep

    def x(ts: float) -> float:
        return round(left + (ts - t0) / (t1 - t0) * (right - left), 1)

    def y(v: float) -> float:
        return round(bottom - v / vtop * (bottom - top), 1)

    drawn = []
    for i, s in enumerate(series):
        ordered = sorted(s.points, key=lambda p: p[0])
        if not ordered:
            continue
        parts = [f"M{x(ordered[0][0].timestamp())},{y(ordered[0][1])}"]
        for t, v in ordered[1:]:
            parts.append(f"H{x(t.timestamp())}V{y(v)}" if s.step else f"L{x(t.timestamp())},{y(v)}")
        last_t, last_v = ordered[-1]
        end_x = x(t1) if s.step else x(last_t.timestamp())
        if s.step:
            parts.append(f"H{end_x}")
        note = s.note if s.note is not None else _fmt_value(last_v)
        drawn.append(DrawnSeries(s.label, f"s{i % PALETTE_SIZE}", "".join(parts), end_x, y(last_v), last_v, note))

    step = _time_step(t1 - t0)
    first = math.ceil(t0 / step.total_seconds()) * step.total_seconds()
    fmt = "%H:%M" if step < timedelta(days=1) else "%d %b"
    x_ticks = []
    tick = first
    while tick <= t1:
        x_ticks.append((x(tick), datetime.fromtimestamp(tick, UTC).strftime(fmt)))
        tick += step.total_seconds()
    y_ticks = []
    v = 0.0
    while v <= vtop + 1e-9:
        y_ticks.append((y(v), _fmt_value(v)))
        v += ystep
    return Chart(width, height, tuple(drawn), tuple(x_ticks), tuple(y_ticks), (left, top, right, bottom))
