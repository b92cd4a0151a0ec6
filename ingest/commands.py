"""Operator commands: ``storywatch feeds check``, ``feeds import`` and ``feeds enable``.

``check_feeds`` polls every configured feed once with the same fetcher, parser and
normaliser as the service, but publishes nothing and writes nothing: it is safe to run
beside a live ingest process.
"""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import yaml

from ingest.dedup import SeenStore
from ingest.fetch import Fetcher
from ingest.hosts import HostLimiter
from ingest.poll import Poller, PollOutcome
from ingest.schedule import FeedState
from ingest.service import NS_FEEDS, feed_specs, load_state
from ingest.urls import canonical_url
from storywatch.clock import Clock, SystemClock
from storywatch.errors import ConfigError, FeedParseError
from storywatch.settings import Settings, read_config
from storywatch.settings.ingest import feed_url_problem
from storywatch.store import Store


def check_feeds(
    settings: Settings, store: Store, as_json: bool, out: TextIO, *, clock: Clock | None = None
) -> int:
    """Poll every configured feed once; print one result per feed; 0 if all are fine, else 1."""
    clock = clock or SystemClock()
    cfg = settings.ingest
    fetcher = Fetcher(cfg)
    poller = Poller(cfg, fetcher, HostLimiter(cfg.per_host_concurrency, cfg.per_host_min_gap_s), clock)
    seen = SeenStore(store, cfg.seen_capacity)
    specs = feed_specs(settings)

    stored = {spec.key: load_state(store, spec) for spec in specs}

    def one(spec: Any) -> PollOutcome:
        # No validators: a 304 would tell nothing about what the feed holds now. No full
        # text either: a check should not fetch every article page.
        return poller.poll(replace(spec, full_text=False), FeedState(key=spec.key, url=stored[spec.key].url))

    failed = 0
    try:
        with ThreadPoolExecutor(cfg.global_concurrency) as pool:
            for outcome in pool.map(one, specs):
                new = seen.decide(outcome.items, clock.now()).new_count if outcome.items else 0
                row = _row(outcome, new)
                row["state"] = stored[outcome.spec.key].status
                row["enabled"] = outcome.spec.enabled
                failed += not row["ok"]
                out.write((json.dumps(row) if as_json else _text(row)) + "\n")
                out.flush()
    finally:
        fetcher.close()
    if not as_json:
        out.write(f"{len(specs) - failed} of {len(specs)} feeds OK\n")
    return 1 if failed else 0


def _row(o: PollOutcome, new: int) -> dict[str, Any]:
    err = o.error
    warnings = o.parsed.warnings if o.parsed else []
    return {
        "feed": o.spec.key,
        "name": o.spec.name or (o.parsed.title if o.parsed else ""),
        "url": o.url,
        "ok": err is None,
        "status": o.status,
        "entries": len(o.items),
        "new": new,
        "elapsed_s": round(o.elapsed_s, 3),
        "error": type(err).__name__ if err else None,
        "message": err.message if err else ("; ".join(warnings) or "ok"),
        "suggestion": err.suggestion if isinstance(err, FeedParseError) else None,
        "moved_to": o.result.permanent_url if o.result and o.result.permanent_url != o.url else None,
        "warnings": warnings,
    }


def _text(row: dict[str, Any]) -> str:
    label = row["name"] or row["feed"]
    status = row["status"] if row["status"] is not None else "-"
    if row["ok"]:
        counts = f"{row['entries']:>4} entries {row['new']:>4} new"
        line = f"OK    {status!s:>3}  {counts}  {row['elapsed_s']:6.2f}s  {label}"
        if row["warnings"]:
            line += f"\n      warning: {'; '.join(row['warnings'])}"
        if row["moved_to"]:
            line += f"\n      moved permanently to {row['moved_to']}; update the config"
        if row.get("state") in ("failing", "disabled"):
            line += f"\n      the ingest service has this feed as {row['state']}"
        return line
    line = f"FAIL  {status!s:>3}  {row['error']}: {row['message']}  ({label}, {row['elapsed_s']:.2f}s)"
    if row["suggestion"]:
        line += f"\n      try: {row['suggestion']}"
    return line


def read_opml(path: Path) -> list[dict[str, str]]:
    """The feeds (``xmlUrl`` outlines, at any depth) of an OPML file, as ``{url, name}``."""
    data = path.read_bytes()
    if re.search(rb"<!ENTITY", data[:65536], re.IGNORECASE):
        raise ValueError("the OPML file declares XML entities; refusing to parse it")
    root = ET.fromstring(data)
    feeds = []
    for node in root.iter("outline"):
        url = (node.get("xmlUrl") or node.get("xmlurl") or "").strip()
        if url:
            name = (node.get("title") or node.get("text") or "").strip()
            feeds.append({"url": url, "name": name} if name else {"url": url})
    return feeds


def import_opml(opml_path: Path, config_path: Path, into: Path | None = None) -> int:
    """Add the OPML file's feeds to the config at ``config_path``, in the file that defines
    ``feeds:`` (the main file or one of its includes), keeping existing entries.

    ``into`` may only name that file, or, when no file defines ``feeds:`` yet, the main
    file or one of its includes: a second ``feeds:`` section would make the config invalid.
    Feeds whose URL the config already has (in any of its files) are left out; so are
    URLs the fetcher cannot read (``ftp:``, ``javascript:``, ``http://`` without a host),
    each reported. A name another feed already has gets the feed's host added, or is
    dropped (the feed then shows its own title). A config that does not exist yet is
    created with just the feeds. Returns 0; 1 for an unreadable OPML file; 2, writing
    nothing, for a config that cannot be read or an ``into`` that is not the feeds file.
    """
    try:
        found = read_opml(Path(opml_path))
    except (OSError, ValueError, ET.ParseError) as exc:
        print(f"storywatch: cannot read OPML {opml_path}: {exc}", file=sys.stderr)
        return 1
    try:
        target, text, data, existing = _import_target(Path(config_path), into)
    except ConfigError as exc:
        for file, key, msg in exc.problems:
            print(f"storywatch: {file}: {key + ': ' if key else ''}{msg}", file=sys.stderr)
        return 2
    have = {_dedupe_key(str(f.get("url", ""))) for f in existing if isinstance(f, dict)}
    names = {_name_key(str(f.get("name") or "")) for f in existing if isinstance(f, dict)} - {""}
    added: list[dict[str, str]] = []
    unsupported = []
    for feed in found:
        problem = feed_url_problem(feed["url"])
        if problem:
            unsupported.append((feed, problem))
            continue
        key = _dedupe_key(feed["url"])
        if key in have:
            continue
        have.add(key)
        added.append(_unique_name(feed, names))
    for feed, problem in unsupported:
        print(f"skipped {feed.get('name') or feed['url']}: {problem}")
    if added:
        target.write_text(_append_feeds(text, data, added), encoding="utf-8")
    present = len(found) - len(added) - len(unsupported)
    print(f"added {len(added)} feeds to {target} ({present} already present, {len(unsupported)} unsupported)")
    return 0


def _import_target(config_path: Path, into: Path | None) -> tuple[Path, str, dict[str, Any], list[Any]]:
    """The file to add feeds to, its text and own sections, and the whole config's feeds.

    Raises ConfigError (so nothing is written) when the config cannot be read or ``into``
    is not a file the feeds can go in.
    """
    if into is not None and into.is_dir():
        raise ConfigError([(str(into), "", "is a directory; --into takes the YAML file that defines feeds:")])
    if not config_path.exists():
        if into is not None and into.resolve() != config_path.resolve():
            raise ConfigError([(str(config_path), "", "config file not found; --into can only name a file of it")])
        return config_path, "", {}, []
    cfg = read_config(config_path)
    feeds = cfg.data.get("feeds")
    if feeds is not None and not isinstance(feeds, list):
        raise ConfigError([(cfg.origin["feeds"], "feeds", "expected a list of feeds")])
    defined = Path(cfg.origin["feeds"]) if "feeds" in cfg.origin else None
    target = defined or config_path
    if into is not None:
        if defined is not None and into.resolve() != defined.resolve():
            raise ConfigError(
                [(str(into), "", f"feeds: is defined in {defined}; import into that file (or leave out --into)")]
            )
        if into.resolve() not in cfg.files:
            raise ConfigError([(str(into), "", f"is not a file of the config {config_path}; include it first")])
        target = into
    text = target.read_text(encoding="utf-8")
    # The loader read this file already: it is a mapping of sections (or empty).
    return target, text, yaml.safe_load(text) or {}, list(feeds or [])


def _name_key(name: str) -> str:
    return " ".join(name.casefold().split())


def _unique_name(feed: dict[str, str], names: set[str]) -> dict[str, str]:
    """``feed`` with a name no other feed has: as given, with its host added, or none."""
    name = feed.get("name", "")
    if not name:
        return feed
    for candidate in (name, f"{name} ({urlsplit(feed['url']).hostname or 'local'})"):
        if _name_key(candidate) not in names:
            names.add(_name_key(candidate))
            return {**feed, "name": candidate}
    return {"url": feed["url"]}


def _dedupe_key(url: str) -> str:
    return canonical_url(url) or url.strip()


def _append_feeds(text: str, data: dict[str, Any], added: list[dict[str, str]]) -> str:
    """Append to the ``feeds:`` block as text when it is the file's last block, or add the
    block at the end of a file without one (so comments survive); otherwise rewrite the
    file as YAML."""
    lines = text.rstrip("\n").splitlines()
    top = [i for i, line in enumerate(lines) if re.match(r"^[A-Za-z_][\w-]*\s*:", line)]
    chunk = yaml.safe_dump(added, sort_keys=False, allow_unicode=True, width=1000)
    if "feeds" not in data:
        block = "\n".join("  " + line for line in chunk.rstrip("\n").splitlines())
        return "\n".join([*lines, "feeds:", block]) + "\n"
    if top and re.match(r"^feeds\s*:\s*$", lines[top[-1]]):
        items = [line for line in lines[top[-1] + 1 :] if re.match(r"^\s*-\s", line)]
        indent = re.match(r"^(\s*)-", items[0]).group(1) if items else "  "  # type: ignore[union-attr]
        block = "\n".join(indent + line for line in chunk.rstrip("\n").splitlines())
        return "\n".join(lines) + "\n" + block + "\n"
    data = dict(data)
    data["feeds"] = list(data.get("feeds") or []) + added
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)


def enable_feed(settings: Settings, store: Store, which: str, out: TextIO) -> int:
    """Give a feed that a 410 disabled (or that keeps failing) a fresh start.

    ``which`` is the feed's name or URL. The state in the store is reset (errors, back-off,
    disabled), keeping the validators; a running ingest stage polls it within a minute.
    Returns 0, or 1 when no configured feed matches.
    """
    specs = [s for s in feed_specs(settings) if which in (s.key, s.name)]
    if not specs:
        print(f"no configured feed is named or located {which!r}; `storywatch status` lists them", file=out)
        return 1
    for spec in specs:
        state = load_state(store, spec)
        fresh = replace(
            state, status="new", error_count=0, failing_since=None, next_check_at=None, last_error=None
        )
        store.put(NS_FEEDS, spec.key, fresh.to_doc(), tag=fresh.status)
        print(f"enabled {spec.key} (was {state.status}); the ingest stage polls it within a minute", file=out)
    return 0
