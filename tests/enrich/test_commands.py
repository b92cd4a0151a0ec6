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


# -- input that is accepted with a warning ---------------------------------------------


def test_valid_files_give_no_warnings(tmp_path: Path, articles: Path, embedder: Embedder, capsys: Any) -> None:
    """Null and empty fields are valid (the README: any may be empty or null except id)."""
    topics = tmp_path / "topics.yaml"
    topics.write_text(TOPICS_YAML)
    assert replay(Settings(), articles, tmp_path / "a.jsonl", embedder=embedder) == EXIT_OK
    assert score_topics(Settings(), topics, articles, tmp_path / "s.jsonl", embedder=embedder) == EXIT_OK
    assert eval_clustering(Settings(), articles, None, io.StringIO(), embedder=embedder) == EXIT_OK
    assert capsys.readouterr().err == ""


def test_the_id_is_written_back_as_given(tmp_path: Path, embedder: Embedder, capsys: Any) -> None:
    """A numeric id comes back as the same number from both commands, not as a string."""
    rows = [{**ROWS[0], "id": 123}, {**ROWS[1], "id": "123x"}, {**ROWS[4], "id": 4.5}]
    data = write_jsonl(tmp_path / "numeric.jsonl", rows)
    topics = tmp_path / "topics.yaml"
    topics.write_text(TOPICS_YAML)
    assert replay(Settings(), data, tmp_path / "a.jsonl", embedder=embedder) == EXIT_OK
    assert score_topics(Settings(), topics, data, tmp_path / "s.jsonl", embedder=embedder) == EXIT_OK
    for out in ("a.jsonl", "s.jsonl"):
        ids = [line["id"] for line in read_lines(tmp_path / out)]
        assert ids == [123, "123x", 4.5] and isinstance(ids[0], int), out
    assert capsys.readouterr().err == ""


BAD_IDS = [("true", True), ("object", {"a": 1}), ("list", [1]), ("false", False)]


@pytest.mark.parametrize("ident", [b[1] for b in BAD_IDS], ids=[b[0] for b in BAD_IDS])
def test_an_id_that_is_not_a_string_or_number_is_an_error(
    tmp_path: Path, embedder: Embedder, capsys: Any, ident: Any
) -> None:
    data = write_jsonl(tmp_path / "bad.jsonl", [ROWS[0], {**ROWS[1], "id": ident}])
    assert replay(Settings(), data, tmp_path / "o.jsonl", embedder=embedder) == EXIT_INPUT
    assert f"{data}:2: id: expected a string or a number" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_wrong_field_types_are_warned_with_file_and_line(tmp_path: Path, embedder: Embedder, capsys: Any) -> None:
    rows = [
        ROWS[0],
        {**ROWS[1], "title": ["Magnitude 6.8", "earthquake strikes Morocco"], "published": "yesterday"},
        {**ROWS[2], "text": 42, "source": {"name": "Asia Desk"}},
        ROWS[4],
    ]
    data = write_jsonl(tmp_path / "types.jsonl", rows)
    out = tmp_path / "a.jsonl"
    assert replay(Settings(), data, out, embedder=embedder) == EXIT_OK
    err = capsys.readouterr().err
    assert f"{data}:2: title: expected a string, got a list; its items are joined" in err
    assert f"{data}:2: published: not a time ('yesterday'); the previous article's time is used" in err
    assert f"{data}:3: text: expected a string, got a number; used as text" in err
    assert f"{data}:3: source: expected a string, got an object; ignored" in err
    assert len(err.splitlines()) == 4
    # What the warnings say is what was done, and the file is still replayed whole.
    arts = normalise(rows)
    assert arts[1].title == "Magnitude 6.8 earthquake strikes Morocco"
    assert arts[1].published == arts[0].published
    assert (arts[2].summary, arts[2].source) == ("42", "")
    story = {line["id"]: line["story_id"] for line in read_lines(out)}
    assert len(story) == 4 and story["a2"] == story["a5"]


def test_topics_score_warns_only_about_the_fields_it_reads(tmp_path: Path, embedder: Embedder, capsys: Any) -> None:
    rows = [{**ROWS[0], "published": "yesterday", "url": 7}, {**ROWS[1], "title": ["a", "b"]}]
    data = write_jsonl(tmp_path / "types.jsonl", rows)
    topics = tmp_path / "topics.yaml"
    topics.write_text(TOPICS_YAML)
    assert score_topics(Settings(), topics, data, tmp_path / "s.jsonl", embedder=embedder) == EXIT_OK
    err = capsys.readouterr().err
    assert err == f"storywatch: warning: {data}:2: title: expected a string, got a list; its items are joined\n"


def test_many_bad_lines_show_the_first_few_and_a_count(tmp_path: Path, capsys: Any) -> None:
    from enrich.fields import SHOWN, InputWarnings, check_fields

    numbered = [(n, {"id": str(n), "published": "soon"}) for n in range(1, 11)]
    warnings = InputWarnings(tmp_path / "x.jsonl")
    check_fields(warnings, numbered, ("title", "published"))
    warnings.close()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == SHOWN + 1
    assert err[0].endswith("x.jsonl:1: published: not a time ('soon'); the previous article's time is used")
    assert err[-1].endswith(f"x.jsonl: 10 lines in all with an unreadable published time (the first {SHOWN} shown)")


def test_eval_clustering_warns_about_unlabelled_articles(tmp_path: Path, embedder: Embedder, capsys: Any) -> None:
    rows = [*ROWS[:3], {k: v for k, v in ROWS[3].items() if k != "story"}, ROWS[4], {**ROWS[0], "id": "b1"}]
    data = write_jsonl(tmp_path / "partly.jsonl", rows)
    out = io.StringIO()
    assert eval_clustering(Settings(), data, None, out, embedder=embedder) == EXIT_OK
    assert "articles: 5" in out.getvalue()  # the labelled ones are still scored
    err = capsys.readouterr().err
    assert f"{data}: articles without a 'story' label are not scored: 1 of 6 (line 4)" in err


def test_repeated_ids_are_warned_about(tmp_path: Path, embedder: Embedder, capsys: Any) -> None:
    """replay: one line per input line, a repeat gets its article's story; topics score:
    every line scored; eval clustering: only the first line of an id scored."""
    rows = [*ROWS, {**ROWS[1], "title": "Morocco quake: rescuers search villages"}, {**ROWS[0], "id": "a3"}]
    data = write_jsonl(tmp_path / "repeats.jsonl", rows)
    topics = tmp_path / "topics.yaml"
    topics.write_text(TOPICS_YAML)
    where = f'{data}: 2 lines repeat the id of an earlier line: "a2" (line 6), "a3" (line 7); '

    assert replay(Settings(), data, tmp_path / "a.jsonl", embedder=embedder) == EXIT_OK
    assert where + "each is taken as that article delivered again and gets its story" in capsys.readouterr().err
    lines = read_lines(tmp_path / "a.jsonl")
    assert [line["id"] for line in lines] == [r["id"] for r in rows]
    assert lines[5]["story_id"] == lines[1]["story_id"] and lines[6]["story_id"] == lines[2]["story_id"]

    assert score_topics(Settings(), topics, data, tmp_path / "s.jsonl", embedder=embedder) == EXIT_OK
    assert where + "each line is scored" in capsys.readouterr().err
    assert [line["id"] for line in read_lines(tmp_path / "s.jsonl")] == [r["id"] for r in rows]

    out = io.StringIO()
    assert eval_clustering(Settings(), data, None, out, embedder=embedder) == EXIT_OK
    assert where + "only the first line of each is scored" in capsys.readouterr().err
    assert "articles: 5" in out.getvalue()


def test_fields_doctests() -> None:
    import doctest

    import enrich.fields

    assert doctest.testmod(enrich.fields).failed == 0
