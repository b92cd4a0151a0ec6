"""What the end-to-end benchmarks share: storywatch stages as child processes, and a small
hand-written SVG line chart (no plotting library in the dependencies)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import yaml

ROOT = Path(__file__).resolve().parents[1]

Series = tuple[str, Sequence[tuple[float, float]]]
MISSILE_TOPIC: dict[str, Any] = {
    "name": "missile launches",
    "description": "A country test-fires or launches ballistic, cruise or hypersonic missiles.",
    "examples": [
        "North Korea fires ballistic missile into the sea off its east coast",
        "Iran test-fires new medium-range ballistic missile",
    ],
    "counter_examples": ["Rocket company launches communications satellites into orbit"],
    "severity": "high",
}
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"]


def write_config(tmp: Path, sections: dict[str, Any], bus: dict[str, Any] | None = None) -> Path:
    """Write ``tmp/storywatch.yaml``: an embedded bus and a SQLite store in ``tmp``, alerts
    to the file channel ``tmp/alerts.jsonl`` (also the operator channel), then ``sections``
    (an ``alerts`` section is merged into the channel settings)."""
    alerts = {
        "channels": {"file": {"kind": "file", "path": str(tmp / "alerts.jsonl")}},
        "default_channels": ["file"],
        "operator_channels": ["file"],
    }
    cfg: dict[str, Any] = {
        "bus": {"kind": "embedded", "path": str(tmp / "bus.db"), **(bus or {})},
        "store": {"path": str(tmp / "state.db")},
    }
    cfg |= {k: v for k, v in sections.items() if k != "alerts"}
    cfg["alerts"] = alerts | sections.get("alerts", {})
    path = tmp / "storywatch.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@dataclass
class Stages:
    """storywatch commands (``run``, ``ingest``, ``enrich``, ``alerts``) as child processes,
    each writing its log to ``STAGE.log`` in a work directory."""

    workdir: Path
    names: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, stage: str, config: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{stage}.log").open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "storywatch", stage, "--config", str(config)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.names.append(stage)
        self.procs.append(proc)
        return proc

    def log(self, stage: str) -> str:
        return (self.workdir / f"{stage}.log").read_text(errors="replace")

    def check(self) -> None:
        """Raise, with the end of its log, if a stage has exited."""
        for name, proc in zip(self.names, self.procs, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}")

    def tail(self, chars: int = 2000) -> str:
        return "\n".join(f"--- {name}\n{self.log(name)[-chars:]}" for name in self.names)

    def stop(self, timeout: float = 60.0) -> list[int | None]:
        """SIGTERM every stage, as an operator would; SIGKILL what is still up after ``timeout``."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return [proc.returncode for proc in self.procs]


def line_chart(
    path: Path,
    title: str,
    series: Sequence[Series],
    x_label: str,
    y_label: str,
    dashed: Callable[[str], bool] = lambda label: False,
) -> None:
    """Write an SVG line chart: one polyline per ``(label, points)``, axes from zero."""
    w, h, left, right, top, bottom = 780, 420, 60, 220, 40, 45
    pw, ph = w - left - right, h - top - bottom
    x_max = max((x for _, pts in series for x, _ in pts), default=1.0) or 1.0
    y_max = max((y for _, pts in series for _, y in pts), default=1.0) or 1.0
    y_step = _nice_step(y_max / 5)
    y_top = y_step * (int(y_max / y_step) + 1)
    x_step = _nice_step(x_max / 10)

    def xy(x: float, y: float) -> str:
        return f"{left + x / x_max * pw:.1f},{top + ph - y / y_top * ph:.1f}"

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{left}" y="22" font-size="14">{escape(title)}</text>',
    ]
    y = 0.0
    while y <= y_top + 1e-9:
        py = top + ph - y / y_top * ph
        out.append(f'<line x1="{left}" y1="{py:.1f}" x2="{left + pw}" y2="{py:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{py + 4:.1f}" text-anchor="end">{y:g}</text>')
        y += y_step
    x = 0.0
    while x <= x_max + 1e-9:
        px = left + x / x_max * pw
        out.append(f'<line x1="{px:.1f}" y1="{top + ph}" x2="{px:.1f}" y2="{top + ph + 4}" stroke="#333"/>')
        out.append(f'<text x="{px:.1f}" y="{top + ph + 18}" text-anchor="middle">{x:g}</text>')
        x += x_step
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    out.append(f'<text x="{left + pw / 2}" y="{h - 8}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(
        f'<text x="16" y="{top + ph / 2}" transform="rotate(-90 16 {top + ph / 2})" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    for i, (label, pts) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        dash = ' stroke-dasharray="6 3"' if dashed(label) else ""
        points = " ".join(xy(x, y) for x, y in pts)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5"{dash} points="{points}"/>')
        ly = top + 10 + 18 * i
        out.append(
            f'<line x1="{left + pw + 12}" y1="{ly}" x2="{left + pw + 36}" y2="{ly}" stroke="{colour}" '
            f'stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{left + pw + 42}" y="{ly + 4}">{escape(label)}</text>')
    out.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def _nice_step(raw: float) -> float:
    """The smallest of 1, 2 or 5 times a power of ten that is at least ``raw``."""
    power = 10.0 ** int(f"{raw:e}".split("e")[1])
    for mult in (1, 2, 5, 10):
        if mult * power >= raw:
            return mult * power
    return 10 * power
