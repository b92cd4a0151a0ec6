"""The enrich stage as a service: articles in, story events out.

One step polls a micro-batch of articles (up to ``enrich.embed.batch_size``, waiting at
most ``batch_ms`` more to fill it), embeds them in one encode call, then in order:
assigns each to a story (:class:`enrich.cluster.StoryClusterer`), scores it against the
watched topics (:class:`enrich.topics.TopicMatcher`) and derives the story events
(:class:`enrich.events.StoryEvents`), which are published keyed by ``story_id``.

Pipeline (``enrich.embed.pipeline``): every encode runs in the background
(:class:`enrich.embed.BackgroundEmbedder`: on the encoder's worker threads, or on the
process's encoder thread), and while a step clusters its batch, the next batch that the
bus already holds is polled and encoded. Stories and events are the same
either way; only the order of dead letters against story events may differ. A batch
polled ahead is past the consumer's position, so it is processed before any snapshot
and commit, and none is polled ahead of a batch that makes a snapshot due.

After publishing an event it also updates the story's document in ``enrich.stories``
(:func:`storywatch.views.story_documents`), the read model of the dashboard.

Restart safety: ``snapshot_interval_s`` after the first article not yet covered, or after
``snapshot_every`` articles if sooner (and when idle, on drain and on close),
the service flushes its events, then writes in ONE store transaction the clusterer and
event state *and the offsets it covers*, and only then commits the bus offsets. Each story
of the clusterer and each story's event ledger is a document of its own (``story:ID``,
``ledger:ID``), rewritten only when it changed since the last snapshot: the state of
every story, idle or not, was most of a backfill's enrich time when it was written
whole every few hundred articles. The two maps that grow with the stream, the
document frequencies and the article -> story map, are saved as changes
(:class:`enrich.maplog.MapLog`, ``df:`` and ``articles:``). After a crash the
bus may redeliver records the snapshot already covers (crash between the snapshot and
the commit): they are skipped by offset. Records after the snapshot are processed again
from the snapshot's state, and since assignment is deterministic they get the same
stories, revisions and events (at-least-once, with identical duplicates that the alerts
stage drops by event id).

Roles (``enrich.role``, or ``storywatch enrich --role``). Embedding is stateless and is
most of the work; assignment to stories is stateful and cheap (about 1 ms an article
against 7 for the encoder). So the stage splits there:

- ``all`` (the default): one process embeds and clusters.
- ``embed``: any number of workers in the group ``enrich.embed_group`` share the
  partitions of ``raw-articles``, embed micro-batches and publish each article with its
  vector (:class:`storywatch.schema.EmbeddedArticle`) to ``embedded-articles``, keyed by
  article id. They keep no state: commit after the batch is published.
- ``cluster``: the story writer consumes ``embedded-articles`` and does everything else.

The story state is one sequence over all partitions, advanced by one writer at a time
(roles all and cluster). The writer holds a lease in the store
(:class:`storywatch.lease.Lease`): a second writer started by mistake, or as a hot
standby, does not join the consumer group until the lease is free, and a writer that
finds its lease taken over drops its state without writing it and becomes a standby.
"""

from __future__ import annotations

import base64
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np
from pydantic import ValidationError

from enrich.cluster import ClusterInput, StoryClusterer
from enrich.config import ClusterConfig, EmbedConfig
from enrich.embed import BackgroundEmbedder, Embedder, article_text, make_embedder
from enrich.events import ArticleInfo, StoryEvents
from enrich.maplog import MapLog
from enrich.packing import unpack_floats
from enrich.story import StoryState
from enrich.topics import TopicMatcher
from storywatch.bus import Bus, Consumer, Producer, Record
from storywatch.clock import Clock
from storywatch.errors import BusError, ConfigError, SchemaError, StoreError
from storywatch.lease import Lease
from storywatch.logs import kv
from storywatch.observe import LagProbe, Metrics
from storywatch.runtime import settle_heap
from storywatch.schema import Article, DeadLetter, EmbeddedArticle, StoryEventType, decode
from storywatch.settings import Settings
from storywatch.store import Store
from storywatch.text import shorten
from storywatch.views import NS_STORIES, story_documents

log = logging.getLogger("storywatch.enrich")

STATE_KEY = "state"
LEASE_KEY = "writer"
DEFAULT_MODEL = "all-MiniLM-L6-v2"
SNAPSHOT_VERSION = 4
STORY_KEY_PREFIX = "story:"
LEDGER_KEY_PREFIX = "ledger:"
DF_KEY_PREFIX = "df:"
ARTICLES_KEY_PREFIX = "articles:"
_TEXT_CHARS = {"title": 0, "title_text": 20_000}
_LEAD_CHARS = 300
_JOIN_WAIT_S = 30.0
_STORY_DOCS_KEPT = 4096

AssignHook = Callable[[str, str], None]
"""Called with ``(article_id, story_id)`` after each assignment (replay records them)."""

Decoded = list[tuple[Record, Article, np.ndarray | None]]


@dataclass
class _Batch:
    """A micro-batch taken from the bus: decoded, and its vectors on their way."""

    records: list[Record]
    articles: Decoded
    encoding: list[int]
    """Positions in ``articles`` whose vectors ``vectors`` will give, in order."""
    vectors: Future[np.ndarray] | None


def embed_config(settings: Settings) -> EmbedConfig:
    """The embedder's :class:`EmbedConfig` from the ``enrich.embed`` settings."""
    e = settings.enrich.embed
    return EmbedConfig.model_validate(
        {
            "model": e.model,
            "backend": e.backend,
            "batch_size": e.batch_size,
            "lead_chars": _TEXT_CHARS.get(e.text, e.lead_chars),
            "threads": e.threads,
            "split": e.split,
        }
    )


def cluster_config(settings: Settings) -> ClusterConfig:
    """:class:`ClusterConfig` from the free-form ``enrich.cluster`` mapping."""
    try:
        return ClusterConfig(**settings.enrich.cluster)
    except ValidationError as exc:
        problems = [
            ("config", "enrich.cluster." + ".".join(str(p) for p in err["loc"]), err["msg"]) for err in exc.errors()
        ]
        raise ConfigError(problems) from None


class EnrichService:
    """The enrich stage; implements :class:`storywatch.runtime.Service`.

    ``embedder`` may be injected (tests share one model); otherwise the configured one is
    loaded on the first batch, so that starting the service stays fast.
    """

    name = "enrich"

    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        store: Store,
        clock: Clock,
        *,
        embedder: Embedder | None = None,
        on_assign: AssignHook | None = None,
        metrics: Metrics | None = None,
        role: str | None = None,
    ):
        self.settings = settings
        self.cfg = settings.enrich
        self.role = role or self.cfg.role
        if self.role not in ("all", "embed", "cluster"):
            raise ConfigError([("enrich", "enrich.role", f"expected all, embed or cluster (got {self.role!r})")])
        self.metrics = metrics or Metrics()
        self.bus = bus
        self.store = store
        self.clock = clock
        self.on_assign = on_assign
        self._topics = settings.bus.topics
        self._embed_cfg = embed_config(settings)
        self._cluster_cfg = cluster_config(settings)
        self._embedder = embedder
        self._background: BackgroundEmbedder | None = None
        self._ahead: _Batch | None = None  # polled and being encoded, not yet processed
        self._matcher: TopicMatcher | None = None
        self._clusterer: StoryClusterer | None = None
        self._clusterer_state: dict[str, Any] | None = None
        self._saved_stories: dict[str, dict[str, Any]] = {}
        self._saved_ledgers: set[str] = set()
        self._new_map_logs()
        # The read-model documents this writer last wrote (newest last): the next event of
        # a story starts from its document, and reading it back from the store was a
        # query and a JSON parse per event.
        self._story_docs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        # Read-model documents of the current batch, written once each at its end.
        self._unwritten: dict[str, dict[str, Any]] = {}
        self.events = StoryEvents(self.cfg.events, settings.topics)
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._covered: dict[str, int] = {}
        self._loaded = False
        self._pending = 0
        self._pending_since = 0.0  # clock.monotonic() at the first article not yet snapshotted
        self._batch_events: dict[str, int] = {}  # story events of the batch, by type
        self._failed = False
        self._lag = LagProbe(self.metrics, self.name if self.role == "all" else f"enrich-{self.role}")
        self.processed = 0
        self.lease: Lease | None = None
        if self.role != "embed":
            self.lease = Lease(store, self.cfg.state_namespace, LEASE_KEY, self.cfg.lease_s, clock)
        self._standby_logged = False

    # -- lifecycle -----------------------------------------------------------------

    def _io(self) -> tuple[Consumer, Producer]:
        if not self._loaded and self.role != "embed":
            self._load_snapshot()
        if self._consumer is None:
            if self.role == "embed":
                self._consumer = self.bus.consumer(self.cfg.embed_group, [self._topics.raw_articles])
            elif self.role == "cluster":
                self._consumer = self.bus.consumer(self.cfg.group, [self._topics.embedded_articles])
            else:
                self._consumer = self.bus.consumer(self.cfg.group, [self._topics.raw_articles])
        if self._producer is None:
            self._producer = self.bus.producer()
        return self._consumer, self._producer

    def start(self) -> None:
        # The model loads before the consumer joins its group: a Kafka member that joined
        # and then spent seconds loading would hold partitions it does not poll.
        self._encoder()
        if self._writer():
            self._io()

    def _writer(self) -> bool:
        """Whether this process may consume now: an embed worker, or the lease holder."""
        lease = self.lease
        if lease is None or (lease.held and not lease.due()):
            return True
        was_held = lease.held
        if lease.acquire():
            if not was_held:
                log.info("story writer: holding the lease", extra=kv(role=self.role, owner=lease.owner))
                self._standby_logged = False
            return True
        if was_held:
            self._drop_state()
        if not self._standby_logged:
            holder = lease.holder or {}
            log.info(
                "standby: another story writer holds the lease",
                extra=kv(holder=holder.get("owner"), lease_s=lease.ttl_s),
            )
            self._standby_logged = True
        return False

    def _drop_state(self) -> None:
        """Forget everything since the last snapshot: another writer has taken over."""
        self._discard_ahead()
        if self._consumer is not None:
            self._consumer.close()  # uncommitted records go to the new writer
            self._consumer = None
        self._clusterer = None
        self._clusterer_state = None
        self._saved_stories = {}
        self._saved_ledgers = set()
        self._new_map_logs()
        self._story_docs.clear()
        self.events = StoryEvents(self.cfg.events, self.settings.topics)
        self._covered = {}
        self._loaded = False
        self._pending = 0
        self._failed = False

    def step(self, timeout: float) -> int:
        if not self._writer():
            time.sleep(min(timeout, 1.0))
            return 0
        consumer, _ = self._io()
        before = self.processed
        took = self._advance(consumer, lambda: self._poll(consumer, timeout))
        # Snapshot when one is due, and whenever the stream goes quiet, so a slow feed
        # day does not leave hours of articles to redo after a restart.
        if self._snapshot_due() or (took is None and self._pending):
            self.checkpoint()  # it may process a batch polled ahead, too
        self._lag.observe(consumer)
        return self.processed - before

    def drain(self) -> int:
        self._encoder()
        deadline = time.monotonic() + 2 * (self.lease.ttl_s if self.lease else 0)
        while not self._writer():
            if time.monotonic() > deadline:
                holder = (self.lease.holder or {}) if self.lease else {}
                raise StoreError(
                    f"another enrich story writer ({holder.get('owner')}) holds the lease "
                    f"{self.cfg.state_namespace}/{LEASE_KEY} in the store; stop it or wait for it to stop"
                )
            time.sleep(1.0)
        consumer, _ = self._io()
        before = self.processed
        while self._advance(consumer, lambda: self._poll_now(consumer)) is not None:
            if self._snapshot_due():
                self.checkpoint()
        self.checkpoint()
        return self.processed - before

    def _poll(self, consumer: Consumer, timeout: float) -> list[Record]:
        """A micro-batch: up to ``batch_size`` records, waiting at most ``batch_ms`` more to fill it."""
        batch = self._embed_cfg.batch_size
        records = consumer.poll(batch, timeout)
        if records and len(records) < batch and self.cfg.embed.batch_ms:
            records += consumer.poll(batch - len(records), self.cfg.embed.batch_ms / 1000.0)
        return records

    def _advance(self, consumer: Consumer, poll: Callable[[], list[Record]]) -> int | None:
        """Process one micro-batch, and start encoding the next one meanwhile (``pipeline``).

        The batch is the one already being encoded, else what ``poll`` gives; None when
        there was none. The next batch is only what the bus has at once: a quiet stream
        is not kept waiting for it. Its records are past the consumer's position but not
        processed, so :meth:`checkpoint` processes it before it commits; and no batch is
        polled ahead when this one makes a snapshot due.
        """
        batch, self._ahead = self._ahead, None
        if batch is None:
            records = poll()
            if not records:
                return None
            batch = self._take(records)
        # Not the embed role: it commits after each batch, which would cover the next one.
        # Nor before a snapshot: it would have to process the next batch first.
        if self.cfg.embed.pipeline and self.role != "embed" and not self._snapshot_due(len(batch.records)):
            records = consumer.poll(self._embed_cfg.batch_size, 0.0)
            if records:
                self._ahead = self._take(records)
        return self._handle(batch)

    def _take(self, records: list[Record]) -> _Batch:
        """Decode ``records`` and start encoding the articles that need a vector."""
        producer = self._io()[1]
        try:
            if self.role != "embed":
                records = [r for r in records if r.offset >= self._covered.get(_pos(r), 0)]
            articles = self._decode(producer, records)
            # An article already assigned is a retitle (see _known): it needs no vector.
            encoding = [
                i
                for i, (_, art, vec) in enumerate(articles)
                if vec is None and (self.role == "embed" or self.events.story_of(art.id) is None)
            ]
            vectors = None
            if encoding:
                lead = self._embed_cfg.lead_chars
                texts = [article_text(articles[i][1].title, articles[i][1].summary, lead) for i in encoding]
                vectors = self._background_encoder().submit(texts)
        except BaseException:
            self._failed = True  # see _handle
            raise
        return _Batch(records, articles, encoding, vectors)

    def _snapshot_due(self, more: int = 0) -> bool:
        """Whether a snapshot is due (once ``more`` articles are processed as well)."""
        pending = self._pending + more
        if not pending:
            return False
        waited = self.clock.monotonic() - self._pending_since if self._pending else 0.0
        return pending >= self.cfg.snapshot_every or waited >= self.cfg.snapshot_interval_s

    def _poll_now(self, consumer: Consumer) -> list[Record]:
        """What is available now; a Kafka consumer still joining its group is given time to join.

        Without the wait, ``--once`` against Kafka would find nothing on its first poll.
        """
        records = consumer.poll(self._embed_cfg.batch_size, 0.0)
        assignment = getattr(consumer, "assignment", None)
        deadline = time.monotonic() + _JOIN_WAIT_S
        while not records and callable(assignment) and not assignment() and time.monotonic() < deadline:
            records = consumer.poll(self._embed_cfg.batch_size, 0.5)
        return records

    def close(self) -> None:
        try:
            if self._consumer is not None:
                self.checkpoint()
        finally:
            if self._producer is not None:
                self._producer.close()
                self._producer = None
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None
            if self.lease is not None and self.lease.held:
                try:
                    self.lease.release()
                except StoreError as exc:  # it expires by itself
                    log.warning("cannot release the lease", extra=kv(error=str(exc)))

    # -- state ---------------------------------------------------------------------

    def _load_snapshot(self) -> None:
        doc = self.store.get(self.cfg.state_namespace, STATE_KEY)
        self._loaded = True
        if not doc:
            return
        # 1: floats as JSON lists; 2: floats packed, the stories inside the snapshot;
        # 3: a document per story and per ledger; 4: the document frequencies and the
        # article map in map logs (enrich/maplog.py).
        version = doc.get("version")
        if version not in (1, 2, 3, SNAPSHOT_VERSION):
            raise StoreError(f"enrich snapshot has unsupported version {version!r}")
        self._covered = {str(k): int(v) for k, v in doc["offsets"].items()}
        self._clusterer_state = doc["clusterer"]
        if version < 3:
            self.events.load_state(doc["events"])
        else:
            events = doc["events"]
            if doc["clusterer"] is not None:
                self._clusterer_state = self._load_stories(doc["clusterer"])
                df = self._clusterer_state["df"]
                if "log" in df:
                    counts = self._df_log.load(df["log"])
                    self._clusterer_state["df"] = {**{k: v for k, v in df.items() if k != "log"}, "df": counts}
            if "articles_log" in events:
                articles_log = events["articles_log"]
                events = {k: v for k, v in events.items() if k != "articles_log"}
                events["article_story"] = self._articles_log.load(articles_log)
            self._load_ledgers(events)
        self.metrics.stories_active.set(len((self._clusterer_state or {}).get("stories", ())))
        log.info("restored enrich snapshot", extra=kv(articles=doc.get("articles", 0), offsets=self._covered))

    def _load_stories(self, clusterer: dict[str, Any]) -> dict[str, Any]:
        """The clusterer state of a snapshot with its stories read back from their documents."""
        stories = []
        for sid in clusterer["story_ids"]:
            story = self.store.get(self.cfg.state_namespace, STORY_KEY_PREFIX + sid)
            if story is None:
                raise StoreError(f"enrich snapshot is missing story {sid!r} ({self.cfg.state_namespace})")
            stories.append(story)
        self._saved_stories = {s["id"]: s for s in stories}
        return {**{k: v for k, v in clusterer.items() if k != "story_ids"}, "stories": stories}

    def _load_ledgers(self, events: dict[str, Any]) -> None:
        """The events state of a snapshot with its ledgers read back from their documents."""
        ledgers = {}
        for sid in events["ledger_ids"]:
            ledger = self.store.get(self.cfg.state_namespace, LEDGER_KEY_PREFIX + sid)
            if ledger is None:
                raise StoreError(f"enrich snapshot is missing the ledger of {sid!r} ({self.cfg.state_namespace})")
            ledgers[sid] = ledger
        self.events.load_state({**{k: v for k, v in events.items() if k != "ledger_ids"}, "ledgers": ledgers})
        self.events.changed.clear()
        self._saved_ledgers = set(ledgers)

    def _new_map_logs(self) -> None:
        ns = self.cfg.state_namespace
        self._df_log = MapLog(self.store, ns, DF_KEY_PREFIX)
        self._articles_log = MapLog(self.store, ns, ARTICLES_KEY_PREFIX)

    def _save_df(self, df_state: dict[str, Any]) -> dict[str, Any]:
        """Save the document frequencies' changes; the manifest for the snapshot document."""
        if self._clusterer is not None:
            return self._df_log.save(self._clusterer.df.counts, self._clusterer.df.touched)
        # Restored and not used since: the counts are the restored ones, unchanged.
        return self._df_log.save(df_state["df"], set())

    def checkpoint(self) -> None:
        """Flush events, snapshot state with the offsets it covers, then commit the offsets.

        A batch polled ahead is processed first: the commit covers it.
        """
        if self._consumer is None or self._producer is None:
            return
        if self._ahead is not None and not self._failed:
            batch, self._ahead = self._ahead, None
            self._handle(batch)
        if self._failed:
            self._discard_ahead()
            log.warning(
                "a batch failed: no snapshot and no commit; what followed the last snapshot will be processed again",
                extra=kv(articles=self._pending),
            )
            return
        self._producer.flush()
        if self._pending:
            state = self._clusterer.to_state(df_counts=False) if self._clusterer else self._clusterer_state
            clusterer, stories = _split_stories(state)
            events = self.events.to_state()
            ledgers: dict[str, Any] = events.pop("ledgers")
            article_story = events.pop("article_story")
            ns, saved, changed = self.cfg.state_namespace, self._saved_stories, self.events.changed
            with self.store.transaction():
                # Renewed in the snapshot's transaction: a writer whose lease was taken
                # over cannot overwrite its successor's state.
                if self.lease is not None and not self.lease.acquire():
                    log.error("lease lost: dropping unsaved story state", extra=kv(articles=self._pending))
                    self._drop_state()
                    return
                # A story's state is the same object until it changes (Story.to_state).
                self.store.put_many(
                    ns, {STORY_KEY_PREFIX + sid: story for sid, story in stories.items() if saved.get(sid) is not story}
                )
                for sid in saved.keys() - stories.keys():
                    self.store.delete(ns, STORY_KEY_PREFIX + sid)
                self.store.put_many(
                    ns,
                    {
                        LEDGER_KEY_PREFIX + sid: ledger
                        for sid, ledger in ledgers.items()
                        if sid in changed or sid not in self._saved_ledgers
                    },
                )
                for sid in self._saved_ledgers - ledgers.keys():
                    self.store.delete(ns, LEDGER_KEY_PREFIX + sid)
                # The two maps that grow with the stream: only what changed is written.
                articles_log = self._articles_log.save(article_story, self.events.touched)
                if clusterer is not None:
                    df_state = {k: v for k, v in clusterer["df"].items() if k != "df"}
                    clusterer = {**clusterer, "df": {**df_state, "log": self._save_df(clusterer["df"])}}
                doc = {
                    "version": SNAPSHOT_VERSION,
                    "offsets": self._covered,
                    "clusterer": clusterer,
                    "events": {**events, "ledger_ids": list(ledgers), "articles_log": articles_log},
                    "articles": self.processed,
                    "saved_at": self.clock.now().isoformat(),
                }
                self.store.put(ns, STATE_KEY, doc)
            self._articles_log.committed(articles_log)
            self.events.touched = set()
            if clusterer is not None:
                self._df_log.committed(clusterer["df"]["log"])
                if self._clusterer is not None:
                    self._clusterer.df.touched = set()
            self._saved_stories = stories
            self._saved_ledgers = set(ledgers)
            changed.clear()
            self._pending = 0
        self._consumer.commit()

    def resolve(self, story_id: str) -> str:
        """The surviving id of a story that may have been merged into another."""
        if self._clusterer is not None:
            story_id = self._clusterer.resolve(story_id)
        return self.events.resolve(story_id)

    def story(self, story_id: str) -> StoryState | None:
        """The clusterer's current state of a story (None before the first batch or if unknown)."""
        return self._clusterer.story(story_id) if self._clusterer is not None else None

    def _encoder(self) -> Embedder:
        if self._embedder is None:
            log.info("loading embedding model", extra=kv(model=self._model_name))
            started = time.monotonic()
            self._embedder = make_embedder(self._embed_cfg)
            log.info(
                "embedding model loaded", extra=kv(model=self._model_name, seconds=round(time.monotonic() - started, 2))
            )
            settle_heap()  # the model lives as long as the process
        return self._embedder

    def _background_encoder(self) -> BackgroundEmbedder:
        """The model, called in the background: every encode of the stage goes through it."""
        if self._background is None:
            self._background = BackgroundEmbedder(self._encoder())
        return self._background

    @property
    def _model_name(self) -> str:
        return self._embed_cfg.model or DEFAULT_MODEL

    def _model(self) -> tuple[Embedder, TopicMatcher, StoryClusterer]:
        """Load the embedder, the topic anchors and the clusterer on first use (seconds)."""
        embedder = self._background_encoder()
        if self._matcher is None:
            self._matcher = TopicMatcher(
                self.settings.topics,
                embedder,
                default_threshold=self.cfg.topic_threshold,
                settings=self.cfg.topics,
            )
        if self._clusterer is None:
            if self._clusterer_state is not None:
                state = unpack_floats(self._clusterer_state)
                self._clusterer = StoryClusterer.from_state(state, self._cluster_cfg, self.clock)
                self._clusterer_state = None
                settle_heap()  # the restored stories: most of them will idle until evicted
            else:
                self._clusterer = StoryClusterer(embedder.dim, self._cluster_cfg, self.clock)
        return embedder, self._matcher, self._clusterer

    # -- records -> events ---------------------------------------------------------

    def _handle(self, batch: _Batch) -> int:
        try:
            return self._handle_batch(batch)
        except BaseException:
            # The state may now hold part of a batch whose offsets it does not cover, and
            # the consumer's position is past the batch: neither may be saved. The batch
            # comes again after a restart.
            self._failed = True
            raise

    def _handle_batch(self, batch: _Batch) -> int:
        consumer, producer = self._io()
        started = time.monotonic()
        records = batch.records
        for topic in {r.topic for r in records}:
            self.metrics.records_consumed.labels(stage=self.name, topic=topic).inc(
                sum(1 for r in records if r.topic == topic)
            )
        articles = self._vectors(batch)
        if self.role == "embed":
            self._embed_out(producer, articles)
            producer.flush()
            consumer.commit()  # stateless: what is published is done
            self.processed += len(records)
            self.metrics.batch_seconds.labels(stage=self.name).observe(time.monotonic() - started)
            return len(records)
        self._batch_events = {}
        self._process(producer, articles)
        for rec in records:
            self._covered[_pos(rec)] = max(self._covered.get(_pos(rec), 0), rec.offset + 1)
        if records and not self._pending:
            self._pending_since = self.clock.monotonic()
        self._pending += len(records)
        self.processed += len(records)
        producer.flush()
        seconds = time.monotonic() - started
        stories = len(self._clusterer) if self._clusterer is not None else None
        if stories is not None:
            self.metrics.stories_active.set(stories)
        self.metrics.batch_seconds.labels(stage=self.name).observe(seconds)
        if records:
            # One line a batch; each story event is logged at DEBUG (it is on the bus too).
            counts = {t: self._batch_events.get(t, 0) for t in get_args(StoryEventType)}
            fields = kv(articles=len(records), **counts, stories=stories, seconds=round(seconds, 3))
            log.info("batch enriched", extra=fields)
        return len(records)

    @staticmethod
    def _vectors(batch: _Batch) -> Decoded:
        """The batch's articles with the vectors that were being encoded (waits for them)."""
        if batch.vectors is None:
            return batch.articles
        articles = list(batch.articles)
        for i, vec in zip(batch.encoding, batch.vectors.result(), strict=True):
            rec, art, _ = articles[i]
            articles[i] = (rec, art, vec)
        return articles

    def _discard_ahead(self) -> None:
        """Forget the batch polled ahead (it is not committed: it comes again)."""
        batch, self._ahead = self._ahead, None
        if batch is not None and batch.vectors is not None:
            wait([batch.vectors])  # let the encoder finish with it; its result is not wanted

    def _decode(self, producer: Producer, records: list[Record]) -> Decoded:
        """Each record's article, and its vector when an embed worker sent one we can use."""
        out: Decoded = []
        for rec in records:
            try:
                if rec.topic == self._topics.embedded_articles:
                    msg = decode(EmbeddedArticle, rec.topic, rec.value)
                    out.append((rec, msg.article, self._vector(msg)))
                else:
                    out.append((rec, decode(Article, rec.topic, rec.value), None))
            except SchemaError as exc:
                self._dead_letter(producer, rec, exc.reason)
        return out

    def _vector(self, msg: EmbeddedArticle) -> np.ndarray | None:
        """The sent vector, or None (embed it here) if another model or a broken vector."""
        if msg.model != self._model_name:
            log.warning(
                "article embedded by another model: embedding it again",
                extra=kv(article_id=msg.article.id, model=msg.model, expected=self._model_name),
            )
            return None
        try:
            vec = np.frombuffer(base64.b64decode(msg.vector, validate=True), dtype="<f4")
        except ValueError:
            vec = np.zeros(0, dtype="<f4")
        if vec.shape != (msg.dim,) or not np.all(np.isfinite(vec)):
            log.warning("unusable vector: embedding it again", extra=kv(article_id=msg.article.id, dim=msg.dim))
            return None
        return vec.astype(np.float32)

    def _embed_out(self, producer: Producer, articles: Decoded) -> None:
        """Publish each article of a batch with its vector (the embed role)."""
        now = self.clock.now()
        for _, art, vec in articles:
            assert vec is not None  # _take encoded every article
            msg = EmbeddedArticle(
                article=art,
                model=self._model_name,
                dim=len(vec),
                vector=base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii"),
                embedded_at=now,
            )
            producer.publish(self._topics.embedded_articles, art.id, msg.to_bytes())

    def _process(self, producer: Producer, articles: Decoded) -> None:
        todo = [(rec, art, vec) for rec, art, vec in articles if not self._known(art)]
        if not todo:
            return
        embedder, matcher, clusterer = self._model()
        # Vectors that were not encoded ahead: an article the events forgot meanwhile.
        missing = [i for i, (_, _, vec) in enumerate(todo) if vec is None]
        if missing:
            lead = self._embed_cfg.lead_chars
            encoded = embedder.encode([article_text(todo[i][1].title, todo[i][1].summary, lead) for i in missing])
            for i, vec in zip(missing, encoded, strict=True):
                todo[i] = (todo[i][0], todo[i][1], vec)
        # One store transaction for the batch's story documents, taken after the slow encode.
        try:
            self._process_in_transaction(producer, matcher, clusterer, todo)
        except BaseException:
            self._story_docs.clear()  # what they hold may not have been written
            self._unwritten.clear()
            raise

    def _process_in_transaction(
        self,
        producer: Producer,
        matcher: TopicMatcher,
        clusterer: StoryClusterer,
        todo: list[tuple[Record, Article, np.ndarray | None]],
    ) -> None:
        with self.store.transaction():
            for rec, art, vec in todo:
                assert vec is not None
                if self._known(art):  # the same id twice in one batch
                    continue
                try:
                    self._one(producer, matcher, clusterer, art, vec)
                except (BusError, StoreError):
                    raise
                except Exception as exc:  # one bad article must not stop the stream
                    log.exception("cannot enrich article", extra=kv(article_id=art.id, offset=rec.offset))
                    self._dead_letter(producer, rec, f"{type(exc).__name__}: {exc}")
                    continue
                self.metrics.latency.labels(hop="fetched_to_enriched").observe(
                    max(0.0, (self.clock.now() - art.fetched_at).total_seconds())
                )
            self.store.put_many(NS_STORIES, self._unwritten)  # a story changed often in a batch is written once
            self._unwritten.clear()

    def _known(self, art: Article) -> bool:
        """A retitle, or the same article delivered again: new wording, not a new report."""
        known = self.events.story_of(art.id)
        if known is None:
            return False
        self.events.on_title_update(art.id, art.title)
        if self.on_assign:
            self.on_assign(art.id, known)
        return True

    def _one(
        self, producer: Producer, matcher: TopicMatcher, clusterer: StoryClusterer, art: Article, vec: np.ndarray
    ) -> None:
        source = art.source or art.source_host
        assignment = clusterer.assign(
            ClusterInput(
                id=art.id,
                title=art.title,
                text=art.summary,
                embedding=vec,
                published=art.published,
                source=source or None,
                url=art.url,
            )
        )
        if self.on_assign:
            self.on_assign(art.id, assignment.story_id)
        scores = matcher.score(f"{art.title}\n{art.summary}", vec)
        info = ArticleInfo(
            id=art.id,
            title=art.title,
            at=art.fetched_at,
            url=art.url,
            source=source,
            published=art.published,
            lead=shorten(art.summary, _LEAD_CHARS),
        )
        for ev in self.events.on_assignment(assignment, info, scores):
            producer.publish(self._topics.story_events, ev.story_id, ev.to_bytes())
            self.metrics.story_events.labels(type=ev.type).inc()
            if ev.type == "matched" and ev.match is not None:
                self.metrics.topic_matches.labels(topic=ev.match.topic).inc()
            # The read model of the dashboard and `storywatch status`.
            for key, doc in story_documents(ev, self._story_doc).items():
                self._unwritten[key] = doc
                self._story_docs[key] = doc
                self._story_docs.move_to_end(key)
                if len(self._story_docs) > _STORY_DOCS_KEPT:
                    self._story_docs.popitem(last=False)
            self._batch_events[ev.type] = self._batch_events.get(ev.type, 0) + 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "story event",
                    extra=kv(story_id=ev.story_id, event=ev.type, revision=ev.revision, article_id=art.id),
                )

    def _story_doc(self, key: str) -> dict[str, Any] | None:
        """A story's read-model document as last written (JSON-native, so the same as stored)."""
        doc = self._unwritten.get(key)
        if doc is None:
            doc = self._story_docs.get(key)
        return doc if doc is not None else self.store.get(NS_STORIES, key)

    def _dead_letter(self, producer: Producer, rec: Record, reason: str) -> None:
        log.warning("dead letter", extra=kv(topic=rec.topic, offset=rec.offset, error=reason))
        self.metrics.dead_letters.labels(stage=self.name).inc()
        letter = DeadLetter(
            source_topic=rec.topic,
            stage=self.name,
            reason=reason,
            key=rec.key,
            value=rec.value.decode("utf-8", errors="replace"),
            at=self.clock.now(),
        )
        producer.publish(self._topics.dead_letters, rec.key, letter.to_bytes())


def _pos(rec: Record) -> str:
    return f"{rec.topic}:{rec.partition}"


def _split_stories(state: dict[str, Any] | None) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
    """A clusterer state as the snapshot document's part (story ids in order) and its stories by id."""
    if state is None:
        return None, {}
    stories = {s["id"]: s for s in state["stories"]}
    return {**{k: v for k, v in state.items() if k != "stories"}, "story_ids": list(stories)}, stories
