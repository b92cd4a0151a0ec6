"""Offline enrich commands: score topics, replay articles into stories, evaluate clustering.

Their interfaces are fixed (other tools read the output):

- ``storywatch topics score --topics T.yaml --input A.jsonl --out S.jsonl`` writes, per
  article, ``{"id": ..., "scores": {"TOPIC": float, ...}, "matched": ["TOPIC", ...]}``.
- ``storywatch replay --input A.jsonl --assignments OUT.jsonl`` writes, per article,
  ``{"id": ..., "story_id": ...}``: the story after merges.
- ``storywatch eval clustering --input A.jsonl`` prints BCubed precision, recall, F1.

Input articles are JSON lines with ``id, title, text, published, source, url``; any
field but ``id`` may be empty or null. The ``id`` (a string or a number) is written back
exactly as given. A line that is not UTF-8, not JSON or has no usable ``id`` stops the
command (exit 2, naming the line); a text field that is not a string, a ``published``
that is not a time, a repeated id or (for ``eval clustering``) a missing ``story`` label
does not, but is warned about on stderr with the file and line (:mod:`enrich.fields`).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import yaml
from pydantic import ValidationError

from enrich.embed import Embedder, article_text, make_embedder
from enrich.fields import (
    SHOWN,
    InputWarnings,
    as_text,
    body_field,
    check_fields,
    parse_time,
    repeated_ids,
    warn_repeated_ids,
)
from enrich.service import EnrichService, embed_config
from enrich.topics import TopicMatcher
from storywatch.clock import FakeClock
from storywatch.errors import StorywatchError
from storywatch.logs import kv
from storywatch.schema import Article
from storywatch.settings import Settings
from storywatch.settings.enrich import WatchedTopic

log = logging.getLogger("storywatch.enrich")

EXIT_OK, EXIT_FAILED, EXIT_INPUT = 0, 1, 2
_FALLBACK_TIME = datetime(2000, 1, 1, tzinfo=UTC)
_SCORE_BATCH = 64


class InputError(StorywatchError):
    """A file named on the command line is unreadable, malformed or cannot be written;
    ``path`` and ``line`` say where."""

    def __init__(self, path: Path, reason: str, line: int | None = None):
        self.path = path
        self.line = line
        self.reason = reason
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {reason}")


# -- reading input ---------------------------------------------------------------------


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The objects of a JSON-lines file; blank lines are skipped, an object needs an ``id``."""
    for _, row in read_numbered(path):
        yield row


def read_numbered(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """:func:`read_jsonl` with each object's line number, for messages that name the line.

    Lines are decoded one at a time, so that a line that is not UTF-8 is named like a
    line that is not JSON.
    """
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror}") from None
    with fh:
        for n, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                reason = f"not UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line)"
                raise InputError(path, reason, n) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(path, f"not JSON: {exc.msg}", n) from None
            if not isinstance(row, dict) or row.get("id") in (None, ""):
                raise InputError(path, "expected an object with an id", n)
            if not _usable_id(row["id"]):
                raise InputError(path, f"id: expected a string or a number, got {json.dumps(row['id'])}", n)
            yield n, row


def _usable_id(value: Any) -> bool:
    """A string or a finite number: an id that can be written back as it was given."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int) and not isinstance(value, bool)


def open_output(path: Path) -> TextIO:
    """``path`` opened for writing (its missing parent directories created), or an
    :class:`InputError` saying why it cannot be.

    Commands open their output before the work, not after it: a path that cannot be
    written fails in a second instead of after the model is loaded and every article done.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("w", encoding="utf-8")
    except OSError as exc:
        raise InputError(path, f"cannot write: {exc.strerror or exc}") from None


def load_topics(path: Path) -> list[WatchedTopic]:
    """Watched topics from YAML: a ``topics:`` list (as in the config) or a bare list."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise InputError(path, f"invalid YAML: {exc}") from None
    if isinstance(data, dict):
        data = data.get("topics")
    if not isinstance(data, list):
        raise InputError(path, "expected a list of topics, or a mapping with a 'topics' list")
    topics = []
    for i, item in enumerate(data):
        try:
            topics.append(WatchedTopic.model_validate(item))
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            raise InputError(path, f"topics.{i}.{key}: {err['msg']}") from None
    names = [t.name for t in topics]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(path, f"duplicate topic names {dupes}")
    return topics


def _text(value: Any) -> str:
    """Visible text of a field that may hold HTML, whitespace collapsed."""
    s = as_text(value)[0]
    if "<" in s or "&" in s:
        from selectolax.lexbor import LexborHTMLParser

        tree = LexborHTMLParser(s.replace("<br", " <br").replace("</p>", "</p> "))
        for node in tree.css("script, style"):
            node.decompose()
        root = tree.body or tree.root
        s = root.text(separator="") if root is not None else s
    return " ".join(s.split())


def normalise(rows: list[dict[str, Any]]) -> list[Article]:
    """Minimal ingest normalisation: HTML to text, times to UTC, a source for every article.

    A missing or unusable ``published`` takes the previous article's time (the first
    usable one for leading articles), so the same file always gives the same times.
    """
    first = next((t for t in (parse_time(r.get("published")) for r in rows) if t is not None), _FALLBACK_TIME)
    previous = first
    out = []
    for row in rows:
        published = parse_time(row.get("published")) or previous
        previous = published
        url = as_text(row.get("url"))[0].strip() or None
        host = (urlsplit(url).hostname or "").removeprefix("www.") if url else ""
        out.append(
            Article(
                id=str(row["id"]),
                url=url or None,
                title=_text(row.get("title")),
                summary=_text(row.get(body_field(row))),
                published=published,
                fetched_at=published,
                source=_text(row.get("source")) or host,
                source_host=host,
            )
        )
    return out


# -- topics score ----------------------------------------------------------------------


def score_topics(
    settings: Settings,
    topics_path: Path,
    input_path: Path,
    out_path: Path,
    *,
    embedder: Embedder | None = None,
) -> int:
    """Score every article of ``input_path`` against the topics of ``topics_path``.

    One output line per input line, in order: an id that repeats is scored again on each
    of its lines (and warned about, as is a title or text that is not a string).
    """
    try:
        topics = load_topics(topics_path)
        numbered = list(read_numbered(input_path))
        out = open_output(out_path)
    except InputError as exc:
        print(f"storywatch: {exc}", file=sys.stderr)
        return EXIT_INPUT
    warnings = InputWarnings(input_path)
    check_fields(warnings, numbered, ("title", "body"))
    warn_repeated_ids(warnings, list(repeated_ids(numbered)), "each line is scored")
    warnings.close()
    rows = [row for _, row in numbered]
    with out:
        ecfg = embed_config(settings)
        embedder = embedder or make_embedder(ecfg)
        matcher = TopicMatcher(
            topics, embedder, default_threshold=settings.enrich.topic_threshold, settings=settings.enrich.topics
        )
        for start in range(0, len(rows), _SCORE_BATCH):
            batch = rows[start : start + _SCORE_BATCH]
            titles = [_text(r.get("title")) for r in batch]
            bodies = [_text(r.get(body_field(r))) for r in batch]
            texts = [article_text(t, b, ecfg.lead_chars) for t, b in zip(titles, bodies, strict=True)]
            vectors = embedder.encode(texts)
            for i, row in enumerate(batch):
                scores = matcher.score(f"{titles[i]}\n{bodies[i]}", vectors[i])
                line = {
                    "id": row["id"],
                    "scores": {s.topic: round(s.score, 4) for s in scores},
                    "matched": [s.topic for s in scores if s.matched],
                }
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
    return EXIT_OK


# -- replay ----------------------------------------------------------------------------


def replay(
    settings: Settings, input_path: Path, assignments_path: Path, *, embedder: Embedder | None = None
) -> int:
    """Normalise the articles, run them through the enrich service on a temporary embedded
    bus and store, in file order, and write each article's final story.

    One output line per input line, in order, with the id as given. An id that repeats is
    the same article delivered again, as the live pipeline takes it: it is not clustered
    a second time (a new title counts as a retitle), and each of its lines gets the
    story of that article. Repeated ids are warned about, as are text fields that are not
    strings and ``published`` values that are not times.
    """
    try:
        numbered = list(read_numbered(input_path))
        out = open_output(assignments_path)
    except InputError as exc:
        print(f"storywatch: {exc}", file=sys.stderr)
        return EXIT_INPUT
    warnings = InputWarnings(input_path)
    check_fields(warnings, numbered, ("title", "body", "published", "source", "url"))
    warn_repeated_ids(
        warnings, list(repeated_ids(numbered)), "each is taken as that article delivered again and gets its story"
    )
    warnings.close()
    with out:
        return _replay(settings, [row for _, row in numbered], out, embedder)


def _replay(settings: Settings, rows: list[dict[str, Any]], out: TextIO, embedder: Embedder | None) -> int:
    from storywatch.bus.embedded import EmbeddedBus
    from storywatch.store.sqlite import SQLiteStore

    articles = normalise(rows)
    # One snapshot at the end: a replay has no crash to recover from.
    settings = settings.model_copy(
        update={"enrich": settings.enrich.model_copy(update={"snapshot_every": 10**12})}
    )
    latest = max((a.published for a in articles), default=_FALLBACK_TIME)
    clock = FakeClock(latest + timedelta(days=1))
    assigned: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="storywatch-replay-") as tmp:
        bus = EmbeddedBus(Path(tmp) / "bus.db")
        store = SQLiteStore(Path(tmp) / "state.db")
        try:
            topic = settings.bus.topics.raw_articles
            bus.ensure_topics([topic, settings.bus.topics.story_events, settings.bus.topics.dead_letters])
            producer = bus.producer()
            for a in articles:
                producer.publish(topic, a.id, a.to_bytes())
            producer.flush()
            service = EnrichService(
                settings, bus, store, clock, embedder=embedder, on_assign=assigned.__setitem__, role="all"
            )
            try:
                service.drain()
            finally:
                service.close()
            final = {sid: service.resolve(sid) for sid in set(assigned.values())}
        finally:
            bus.close()
            store.close()
    missing = 0
    for row, a in zip(rows, articles, strict=True):
        sid = assigned.get(a.id)
        if sid is None:  # dead-lettered: its own story, so the output stays complete
            missing += 1
            sid = "unassigned-" + a.id
        out.write(json.dumps({"id": row["id"], "story_id": final.get(sid, sid)}, ensure_ascii=False) + "\n")
    if missing:
        log.warning("articles could not be enriched", extra=kv(articles=missing))
    return EXIT_OK


# -- eval clustering -------------------------------------------------------------------


def eval_clustering(
    settings: Settings,
    input_path: Path,
    shuffle_seed: int | None,
    out: TextIO,
    *,
    embedder: Embedder | None = None,
) -> int:
    """BCubed precision, recall and F1 of the clusterer on a file labelled with ``story``.

    Articles without a ``story`` label are not scored, and of an id that repeats only the
    first labelled line is (a repeat would count twice); both are warned about, with
    how many lines.
    """
    from enrich.evaluate import evaluate_file
    from enrich.service import cluster_config

    ecfg = embed_config(settings)
    try:
        numbered = list(read_numbered(input_path))
    except InputError as exc:
        print(f"storywatch: {exc}", file=sys.stderr)
        return EXIT_INPUT
    warnings = InputWarnings(input_path)
    labelled = [(n, r) for n, r in numbered if r.get("story") is not None]
    if not labelled:
        print(f"storywatch: {input_path}: no articles with a 'story' label", file=sys.stderr)
        return EXIT_FAILED
    unlabelled = [n for n, r in numbered if r.get("story") is None]
    if unlabelled:
        lines = ", ".join(str(n) for n in unlabelled[:SHOWN]) + (", ..." if len(unlabelled) > SHOWN else "")
        where = "line" if len(unlabelled) == 1 else "lines"
        warnings.file(
            f"articles without a 'story' label are not scored: {len(unlabelled)} of {len(numbered)} ({where} {lines})"
        )
    repeats = list(repeated_ids(labelled))
    warn_repeated_ids(warnings, repeats, "only the first line of each is scored")
    skip = {n for n, _ in repeats}
    labelled = [(n, r) for n, r in labelled if n not in skip]
    check_fields(warnings, labelled, ("title", "body", "published", "source", "url"))
    warnings.close()
    rows = [r for _, r in labelled]
    # Same normalisation as replay (HTML, any date format), handed over as plain ISO JSONL.
    with tempfile.TemporaryDirectory(prefix="storywatch-eval-") as tmp:
        clean = Path(tmp) / "articles.jsonl"
        with clean.open("w", encoding="utf-8") as fh:
            for row, art in zip(rows, normalise(rows), strict=True):
                rec = {
                    "id": art.id, "story": row["story"], "title": art.title, "text": art.summary,
                    "published": art.published.isoformat(), "source": art.source, "url": art.url,
                }
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        result = evaluate_file(
            clean, cluster_config(settings), embedder or make_embedder(ecfg), shuffle_seed, ecfg.lead_chars
        )
    result["input"] = str(input_path)
    out.write(
        f"BCubed precision: {result['precision']:.4f}\n"
        f"BCubed recall:    {result['recall']:.4f}\n"
        f"BCubed F1:        {result['f1']:.4f}\n"
        f"articles: {result['articles']}  gold stories: {result['gold_stories']}  "
        f"predicted stories: {result['predicted_stories']}\n"
    )
    return EXIT_OK
