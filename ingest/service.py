"""The ingest stage as a service: poll due feeds, publish new articles, then remember.

A background APScheduler job ticks every ``ingest.tick_s`` and hands the feeds whose
``next_check_at`` has passed to a bounded thread pool (per-host limits apply inside). The
tick does not wait for the polls: a feed whose poll is still in flight (a server that
trickles bytes for a minute) is skipped, and the others are polled on time. A committer
thread takes the polls as they finish; those that finish close together are committed as
one batch: deduplicate against the seen-store, publish the articles and any feed-health
changes, **flush the producer, and only then** write the seen-store and the feed states in
one store transaction. A crash before that write re-fetches and republishes (the
seen-store has not moved, consumers deduplicate by article id); it never loses articles.

Stopping (:meth:`IngestService.close`) commits the polls that have finished and abandons
those in flight by cutting their connections: an abandoned poll did not happen, its feed's
state does not move, and the feed is polled again after the restart.

Feed state lives in the store (namespace ``feeds``, keyed by the configured URL) and is
cached in memory; one ingest process per store owns it.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from ingest.dedup import NS_SEEN, SeenStore
from ingest.fetch import Fetcher
from ingest.hosts import HostLimiter
from ingest.normalise import LanguageDetector, with_language
from ingest.poll import FeedSpec, Poller, PollOutcome
from ingest.schedule import FeedState, Transition, after_failure, after_success, deferred
from ingest.urls import url_host
from storywatch.bus import Bus
from storywatch.clock import Clock
from storywatch.errors import BusError
from storywatch.logs import kv
from storywatch.observe import Metrics
from storywatch.schema import Article, FeedHealth
from storywatch.settings import Settings
from storywatch.store import Store

log = logging.getLogger("storywatch.ingest")

NS_FEEDS = "feeds"
_BATCH_WINDOW_S = 0.25
_ABANDON_WAIT_S = 5.0
"""How long close() waits for aborted polls to return (a TCP connect in progress is not
interrupted; ``connect_timeout_s`` bounds it)."""

_Finished = tuple[FeedState, "Future[PollOutcome]"]


def feed_specs(settings: Settings) -> list[FeedSpec]:
    """The configured feeds with their locations resolved (relative paths against base_dir).

    Two spellings of one location (``feeds/a.xml`` and ``./feeds/a.xml``) are one feed.
    """
    specs: dict[str, FeedSpec] = {}
    for f in settings.feeds:
        spec = FeedSpec.from_settings(f, settings.base_dir)
        specs.setdefault(spec.key, spec)
    return list(specs.values())


def load_state(store: Store, spec: FeedSpec) -> FeedState:
    doc = store.get(NS_FEEDS, spec.key)
    if doc is None:
        return FeedState(key=spec.key, url=spec.key)
    try:
        return FeedState.from_doc(doc)
    except (TypeError, ValueError):
        log.warning("unreadable feed state, starting afresh", extra=kv(feed_url=spec.key))
        return FeedState(key=spec.key, url=spec.key)


def interleave_hosts(specs: list[FeedSpec], states: dict[str, FeedState]) -> list[FeedSpec]:
    """``specs`` reordered round-robin by host, so that the pool's threads are not all
    queued behind one host's politeness limits while other hosts wait.

    >>> [s.key for s in interleave_hosts([FeedSpec("http://a/1"), FeedSpec("http://a/2"),
    ...     FeedSpec("http://b/1")], {})]
    ['http://a/1', 'http://b/1', 'http://a/2']
    """
    by_host: dict[str, list[FeedSpec]] = {}
    for spec in specs:
        st = states.get(spec.key)
        by_host.setdefault(url_host(st.url if st else spec.key), []).append(spec)
    queues = list(by_host.values())
    out: list[FeedSpec] = []
    for i in range(max((len(q) for q in queues), default=0)):
        out.extend(q[i] for q in queues if i < len(q))
    return out


class IngestService:
    """The ingest stage; implements :class:`storywatch.runtime.Service`."""

    name = "ingest"

    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        store: Store,
        clock: Clock,
        *,
        rng: random.Random | None = None,
        fetcher: Fetcher | None = None,
        langs: LanguageDetector | None = None,
        metrics: Metrics | None = None,
    ):
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.cfg = settings.ingest
        self.topics = settings.bus.topics
        self.store = store
        self.clock = clock
        self.rng = rng or random.Random(self.cfg.jitter_seed)
        self.specs = [s for s in feed_specs(settings) if s.enabled]
        self.fetcher = fetcher or Fetcher(self.cfg)
        self.limiter = HostLimiter(self.cfg.per_host_concurrency, self.cfg.per_host_min_gap_s)
        self.poller = Poller(self.cfg, self.fetcher, self.limiter, clock, langs)
        self.seen = SeenStore(store, self.cfg.seen_capacity)
        bus.ensure_topics([self.topics.raw_articles, self.topics.feed_health])
        self.producer = bus.producer()
        self._pool = ThreadPoolExecutor(self.cfg.global_concurrency, thread_name_prefix="ingest-poll")
        self._states = {spec.key: load_state(store, spec) for spec in self.specs}
        self._order = {spec.key: i for i, spec in enumerate(self.specs)}
        self._disabled_checked_at: datetime | None = None
        self._commit_lock = threading.Lock()
        self._lock = threading.Lock()  # guards _in_flight and _closed
        self._in_flight: dict[str, Future[PollOutcome]] = {}
        self._finished: queue.SimpleQueue[_Finished | None] = queue.SimpleQueue()
        self._committer: threading.Thread | None = None
        self._cond = threading.Condition()
        self._unreported = 0
        self._scheduler: Any = None
        self._closed = False

    # -- Service protocol ------------------------------------------------------------

    def start(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self._spread_overdue()
        self._committer = threading.Thread(target=self._commit_loop, name="ingest-commit", daemon=True)
        self._committer.start()
        sched = BackgroundScheduler(timezone=UTC)
        sched.add_job(
            self._tick_job,
            "interval",
            seconds=self.cfg.tick_s,
            id="ingest-tick",
            next_run_time=datetime.now(UTC),
            misfire_grace_time=max(1, int(self.cfg.tick_s)),
            coalesce=True,
            max_instances=1,
        )
        sched.start()
        self._scheduler = sched
        log.info("ingest scheduler started", extra=kv(feeds=len(self.specs), tick_s=self.cfg.tick_s))

    def _spread_overdue(self) -> None:
        """After a long stop (or on the first start) many feeds are due at once; when they
        are more than the pool can poll at a time, spread them over ``min_interval_s``
        instead of hitting every server in the first seconds."""
        now = self.clock.now()
        overdue = [st for st in self._states.values() if st.due(now)]
        if len(overdue) <= self.cfg.global_concurrency:
            return
        window = self.cfg.min_interval_s
        for st in overdue:
            self._states[st.key] = deferred(st, now + timedelta(seconds=self.rng.uniform(0, window)))
        log.info("spreading overdue feeds", extra=kv(feeds=len(overdue), window_s=window))

    def step(self, timeout: float) -> int:
        """Articles published since the last call (waits up to ``timeout`` for some)."""
        with self._cond:
            if not self._unreported:
                self._cond.wait(timeout)
            n, self._unreported = self._unreported, 0
        return n

    def drain(self) -> int:
        """Poll every enabled feed once now, ignoring the schedule; return articles published.

        The round is one batch. Feeds whose background poll is in flight are left to it.
        """
        return self._round([s for s in self.specs if self._states[s.key].status != "disabled"], window=None)

    def close(self) -> None:
        """Commit the polls that have finished; abandon those in flight, without waiting
        for their servers (their feeds' states do not move)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True  # nothing is submitted from now on
            in_flight = list(self._in_flight.values())
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)  # a tick only submits polls: it returns at once
        if in_flight:
            log.info("abandoning polls in flight", extra=kv(feeds=len(in_flight)))
        self.fetcher.abort()
        self._pool.shutdown(wait=False, cancel_futures=True)
        _, stragglers = wait(in_flight, timeout=_ABANDON_WAIT_S)
        if stragglers:
            log.warning("polls still running after abort", extra=kv(feeds=len(stragglers)))
        if self._committer is not None:
            self._finished.put(None)
            self._committer.join()
        try:
            self.producer.flush()
        finally:
            self.producer.close()
            self.fetcher.close()

    # -- rounds ----------------------------------------------------------------------

    def tick(self) -> int:
        """Poll the feeds that are due now and wait for them; return articles published."""
        return self._round(self._due(), window=_BATCH_WINDOW_S)

    def _due(self) -> list[FeedSpec]:
        now = self.clock.now()
        self._reenabled(now)
        return [s for s in self.specs if self._states[s.key].due(now)]

    def _reenabled(self, now: datetime) -> None:
        """Pick up, about once a minute, disabled feeds that ``storywatch feeds enable`` freed."""
        if self._disabled_checked_at is not None and (now - self._disabled_checked_at).total_seconds() < 60:
            return
        self._disabled_checked_at = now
        for spec in self.specs:
            if self._states[spec.key].status == "disabled":
                state = load_state(self.store, spec)
                if state.status != "disabled":
                    log.info("feed enabled again", extra=kv(feed_url=spec.key))
                    self._states[spec.key] = state

    def _tick_job(self) -> None:
        """The scheduler's tick: submit the due feeds and return; the committer thread
        commits their polls as they finish."""
        try:
            self._submit(self._due(), background=True)
        except Exception:
            log.exception("ingest tick failed")

    def _commit_loop(self) -> None:
        """Commit background polls as they finish, those finishing within
        ``_BATCH_WINDOW_S`` of the first as one batch, until close() sends None."""
        while True:
            first = self._finished.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + _BATCH_WINDOW_S
            stop = False
            # Wait for more only while other polls are running: a lone poll (the usual
            # case, one feed due) is committed at once, not a window later.
            while (left := deadline - time.monotonic()) > 0 and (self._finished.qsize() or self._others_running()):
                try:
                    nxt = self._finished.get(timeout=left)
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            try:
                self._commit_finished(batch)
            except BusError as exc:
                log.error("publishing failed; the feeds will be polled again", extra=kv(error=str(exc)))
            except Exception:
                log.exception("ingest commit failed")
            if stop:
                return

    def _others_running(self) -> bool:
        """Whether a submitted poll has not finished yet."""
        with self._lock:
            return any(not f.done() for f in self._in_flight.values())

    def state(self, key: str) -> FeedState:
        return self._states[key]

    def _round(self, specs: list[FeedSpec], window: float | None) -> int:
        """Poll ``specs`` and wait for them; commit the polls that finish within ``window``
        seconds of each other as one batch (None: the whole round is one batch, so an
        article carried by several feeds lists all of them)."""
        futures = self._submit(specs, background=False)
        published = 0
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=window)
                if done:
                    published += self._commit_finished([(futures[f], f) for f in done])
        finally:
            for f in pending:  # a commit failed: the rest are dropped when they finish
                f.add_done_callback(partial(self._release, futures[f].key))
        return published

    def _submit(self, specs: list[FeedSpec], *, background: bool) -> dict[Future[PollOutcome], FeedState]:
        """Hand ``specs`` to the pool, except those in flight already and those whose host
        is backing off (their next check moves to the end of the back-off). A background
        poll goes to the committer thread when it finishes."""
        now = self.clock.now()
        futures: dict[Future[PollOutcome], FeedState] = {}
        postponed: dict[str, FeedState] = {}
        with self._lock:
            if self._closed:
                return futures
            idle = [s for s in specs if s.key not in self._in_flight]
            for spec in interleave_hosts(idle, self._states):
                state = self._states[spec.key]
                blocked = self.limiter.blocked_until(url_host(state.url), now)
                if blocked is not None:
                    postponed[spec.key] = deferred(state, blocked)
                    continue
                fut = self._pool.submit(self.poller.poll, spec, state, is_known=self._is_known)
                self._in_flight[spec.key] = fut
                futures[fut] = state
                if background:
                    fut.add_done_callback(partial(self._to_committer, state))
        if postponed:
            with self._commit_lock:
                self._save_states(postponed)
        return futures

    def _to_committer(self, state: FeedState, fut: Future[PollOutcome]) -> None:
        self._finished.put((state, fut))

    def _release(self, key: str, fut: Future[PollOutcome]) -> None:
        with self._lock:
            if self._in_flight.get(key) is fut:
                del self._in_flight[key]

    def _commit_finished(self, finished: list[_Finished]) -> int:
        """Commit finished polls in config order, leaving out abandoned ones; then the
        feeds may be submitted again."""
        try:
            batch = []
            for state, fut in finished:
                if fut.cancelled():
                    continue
                out = fut.result()
                if out.abandoned:
                    log.info("poll abandoned", extra=kv(feed_url=state.key))
                    continue
                batch.append((state, out))
            batch.sort(key=lambda p: self._order[p[0].key])
            return self._commit(batch) if batch else 0
        finally:
            for state, fut in finished:
                self._release(state.key, fut)

    def _is_known(self, article_id: str) -> bool:
        return self.store.get(NS_SEEN, article_id) is not None

    def _commit(self, polled: list[tuple[FeedState, PollOutcome]]) -> int:
        with self._commit_lock:
            now = self.clock.now()
            items = [i for _, out in polled for i in out.items]
            decisions = self.seen.decide(items, now)
            declared = {i.article.id: i.declared_lang for i in items}
            for art in decisions.publish:
                art = with_language(art, declared.get(art.id), self.poller.langs)
                self.producer.publish(self.topics.raw_articles, art.id, art.to_bytes())
            new_states: dict[str, FeedState] = {}
            for state, out in polled:
                tr = self._transition(state, out)
                new_states[state.key] = tr.state
                if tr.health:
                    self._publish_health(out.spec, tr, now)
                if tr.host_backoff_s:
                    until = now + timedelta(seconds=tr.host_backoff_s)
                    self.limiter.back_off(url_host(out.url), until)
                self._log_poll(out, tr)
            self.producer.flush()
            with self.store.transaction():
                self.seen.commit(decisions)
                self._save_states(new_states)
            self._count(polled, decisions.publish, len(items))
        n = len(decisions.publish)
        if n:
            with self._cond:
                self._unreported += n
                self._cond.notify_all()
        return n

    def _count(self, polled: list[tuple[FeedState, PollOutcome]], published: list[Article], items: int) -> None:
        m = self.metrics
        for _, out in polled:
            feed = out.spec.name or out.spec.key
            if out.error is not None:
                m.polls.labels(feed=feed, outcome="error").inc()
                m.poll_errors.labels(feed=feed, error=type(out.error).__name__).inc()
            else:
                m.polls.labels(feed=feed, outcome="not_modified" if out.status == 304 else "ok").inc()
        m.articles_in.inc(len(published))
        m.articles_deduped.inc(max(0, items - len(published)))
        for art in published:
            m.latency.labels(hop="published_to_fetched").observe(
                max(0.0, (art.fetched_at - art.published).total_seconds())
            )

    def _transition(self, state: FeedState, out: PollOutcome) -> Transition:
        spec = out.spec
        if out.error is not None:
            return after_failure(state, out.error, out.fetched_at, self.cfg, self.rng)
        res = out.result
        assert res is not None
        if out.parsed is not None:
            state = replace(state, last_warning="; ".join(out.parsed.warnings)[:500] or None)
        if out.body_sha is not None:
            state = replace(state, body_sha=out.body_sha)
        if out.entry_marks is not None:
            state = replace(state, entry_marks=out.entry_marks)
        return after_success(
            state,
            out.fetched_at,
            self.cfg,
            self.rng,
            configured_s=spec.interval_s,
            etag=res.validators.etag,
            last_modified=res.validators.last_modified,
            url=res.permanent_url or state.url,
            ttl_s=out.parsed.ttl_s if out.parsed else None,
            max_age_s=res.max_age_s,
            retry_after_s=res.retry_after_s,
        )

    def _save_states(self, states: dict[str, FeedState]) -> None:
        with self.store.transaction():
            for key, st in states.items():
                self.store.put(NS_FEEDS, key, st.to_doc(), tag=st.status)
        self._states.update(states)

    def _publish_health(self, spec: FeedSpec, tr: Transition, now: datetime) -> None:
        st = tr.state
        assert tr.health is not None
        msg = FeedHealth(
            feed_url=spec.key,
            feed_name=spec.name,
            state=tr.health,
            error=st.last_error or "",
            failures=st.error_count,
            since=st.failing_since,
            at=now,
        )
        self.producer.publish(self.topics.feed_health, spec.key, msg.to_bytes())
        log.warning("feed health changed", extra=kv(feed_url=spec.key, state=tr.health, error=st.last_error or ""))

    def _log_poll(self, out: PollOutcome, tr: Transition) -> None:
        fields = kv(
            feed_url=out.spec.key,
            status=out.status,
            entries=len(out.items),
            elapsed_ms=round(out.elapsed_s * 1000),
            next_check_at=tr.state.next_check_at.isoformat() if tr.state.next_check_at else None,
        )
        if out.error is not None:
            fields["sw_fields"]["error"] = f"{type(out.error).__name__}: {out.error.message}"
            log.warning("feed poll failed", extra=fields)
        elif out.parsed is not None and out.parsed.warnings:
            fields["sw_fields"]["warning"] = "; ".join(out.parsed.warnings)[:300]
            log.info("feed polled with warnings", extra=fields)
        else:
            log.debug("feed polled", extra=fields)
        if out.result is not None and out.result.permanent_url and out.result.permanent_url != out.url:
            moved = kv(feed_url=out.spec.key, old_url=out.url, new_url=out.result.permanent_url)
            log.info("feed moved permanently", extra=moved)
