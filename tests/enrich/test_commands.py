"""The offline enrich commands and their fixed output formats."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from enrich.commands import (
    EXIT_INPUT,
    EXIT_OK,
    InputError,
    eval_clustering,
    load_topics,
    normalise,
    parse_time,
    replay,
    score_topics,
)
from enrich.embed import Embedder
from storywatch.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

ROWS: list[dict[str, Any]] = [
    {"id": "a1", "story": "nk", "title": "North Korea fires ballistic missile toward Sea of Japan",
     "text": "<p>Pyongyang launched a <b>ballistic missile</b> off its east coast, Seoul said.</p>",
     "published": "2026-03-02T06:00:00Z", "source": "World Wire", "url": "https://wire.example/nk"},
    {"id": "a2", "story": "quake", "title": "Magnitude 6.8 earthquake strikes Morocco",
     "text": "The quake struck the High Atlas south-west of Marrakesh.", "published": None,
     "source": None, "url": "https://www.ledger.example/quake"},
    {"id": "a3", "story": "nk", "title": "North Korea fires ballistic missile into Sea of Japan, Tokyo says",
     "text": "Pyongyang launched a ballistic missile off its east coast, Japan's defence ministry said.",
     "published": "Mon, 02 Mar 2026 07:10:00 +0100", "source": "Asia Desk", "url": None},
    {"id": "a4", "story": "cake", "title": None, "text": None, "published": "", "source": "", "url": ""},
    {"id": "a5", "story": "quake", "title": "Morocco earthquake death toll rises above 2,000",
     "text": "Rescuers dug through rubble in High Atlas villages after the Morocco earthquake near Marrakesh.",
     "published": "2026-03-02T08:00:00", "source": "Harbor Herald", "url": "https://herald.example/q"},
]

TOPICS_YAML = """
topics:
  - name: missile launches
    description: A country test-fires or launches ballistic or cruise missiles.
    examples: [North Korea fires ballistic missile into the sea off its east coast]
    counter_examples: [Rocket company launches communications satellites into orbit]
  - name: earthquakes
    description: A strong earthquake strikes, causing damage or casualties.
"""


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def articles(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "articles.jsonl", ROWS)


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


TIMES = [
    ("iso z", "2026-03-02T06:00:00Z", datetime(2026, 3, 2, 6, tzinfo=UTC)),
    ("iso offset", "2026-03-02T08:00:00+02:00", datetime(2026, 3, 2, 6, tzinfo=UTC)),
    ("naive is utc", "2026-03-02 06:00:00", datetime(2026, 3, 2, 6, tzinfo=UTC)),
    ("rfc 2822", "Mon, 02 Mar 2026 07:00:00 +0100", datetime(2026, 3, 2, 6, tzinfo=UTC)),
    ("unix seconds", 1772431200, datetime(2026, 3, 2, 6, tzinfo=UTC)),
    ("empty", "", None),
    ("null", None, None),
    ("garbage", "yesterday-ish", None),
]


@pytest.mark.parametrize(("value", "expected"), [t[1:] for t in TIMES], ids=[t[0] for t in TIMES])
def test_parse_time(value: Any, expected: datetime | None) -> None:
    assert parse_time(value) == expected


def test_normalise_cleans_html_and_fills_gaps_deterministically() -> None:
    arts = normalise(ROWS)
    assert arts[0].summary == "Pyongyang launched a ballistic missile off its east coast, Seoul said."
    assert arts[1].published == arts[0].published  # missing: the previous article's time
    assert arts[1].source == "ledger.example"  # no source name: the URL's host
    assert arts[2].published == datetime(2026, 3, 2, 6, 10, tzinfo=UTC) and arts[2].url is None
    assert (arts[3].title, arts[3].summary, arts[3].url) == ("", "", None)
    assert arts[3].published == arts[2].published
    assert normalise([{"id": "x"}])[0].published == datetime(2000, 1, 1, tzinfo=UTC)


def test_replay_writes_one_assignment_per_article_in_order(
    tmp_path: Path, articles: Path, embedder: Embedder
) -> None:
    out = tmp_path / "out" / "assignments.jsonl"
    assert replay(Settings(), articles, out, embedder=embedder) == EXIT_OK
    lines = read_lines(out)
    assert [sorted(line) for line in lines] == [["id", "story_id"]] * len(ROWS)
    assert [line["id"] for line in lines] == [r["id"] for r in ROWS]
    story = {line["id"]: line["story_id"] for line in lines}
    assert story["a1"] == story["a3"]
    assert story["a2"] == story["a5"]
    assert len({story["a1"], story["a2"], story["a4"]}) == 3
    # The same file gives the same stories.
    again = tmp_path / "again.jsonl"
    replay(Settings(), articles, again, embedder=embedder)
    assert read_lines(again) == lines


def test_replay_rejects_a_line_without_id(tmp_path: Path, embedder: Embedder, capsys: Any) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", [ROWS[0], {"title": "no id"}])
    assert replay(Settings(), bad, tmp_path / "o.jsonl", embedder=embedder) == EXIT_INPUT
    assert "bad.jsonl:2" in capsys.readouterr().err


def test_topics_score_format(tmp_path: Path, articles: Path, embedder: Embedder) -> None:
    topics = tmp_path / "topics.yaml"
    topics.write_text(TOPICS_YAML)
    out = tmp_path / "scores.jsonl"
    assert score_topics(Settings(), topics, articles, out, embedder=embedder) == EXIT_OK
    lines = read_lines(out)
    assert [line["id"] for line in lines] == [r["id"] for r in ROWS]
    for line in lines:
        assert sorted(line) == ["id", "matched", "scores"]
        assert sorted(line["scores"]) == ["earthquakes", "missile launches"]
        assert all(isinstance(v, float) for v in line["scores"].values())
    by_id = {line["id"]: line for line in lines}
    assert by_id["a1"]["matched"] == ["missile launches"]
    assert by_id["a5"]["matched"] == ["earthquakes"]
    assert by_id["a4"]["matched"] == []


def test_topics_file_may_be_a_bare_list(tmp_path: Path) -> None:
    p = tmp_path / "t.yaml"
    p.write_text("- name: earthquakes\n- name: floods\n  threshold: 0.5\n")
    assert [t.name for t in load_topics(p)] == ["earthquakes", "floods"]


BAD_TOPICS = [
    ("not yaml", "topics: [", "invalid YAML"),
    ("not a list", "topics: 3", "expected a list"),
    ("unknown key", "- name: x\n  treshold: 0.5\n", "topics.0.treshold"),
    ("duplicate", "- name: x\n- name: x\n", "duplicate"),
]


@pytest.mark.parametrize(("text", "message"), [b[1:] for b in BAD_TOPICS], ids=[b[0] for b in BAD_TOPICS])
def test_bad_topics_files_are_named_errors(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "t.yaml"
    p.write_text(text)
    with pytest.raises(InputError, match=message):
        load_topics(p)


def test_eval_clustering_prints_bcubed(articles: Path, embedder: Embedder) -> None:
    out = io.StringIO()
    assert eval_clustering(Settings(), articles, None, out, embedder=embedder) == EXIT_OK
    text = out.getvalue()
    for name in ("precision", "recall", "F1"):
        assert f"BCubed {name}:" in text
    assert "articles: 5" in text


def test_replay_through_the_cli(tmp_path: Path, articles: Path) -> None:
    """The fixed interface end to end: `storywatch replay --input --assignments` (no config file)."""
    out = tmp_path / "cli.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("STORYWATCH_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "storywatch", "replay", "--input", str(articles), "--assignments", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [line["id"] for line in read_lines(out)] == [r["id"] for r in ROWS]
