"""The alerts stage as a service: events in, deliveries recorded, alerts sent.

One step: poll a batch of story events and feed-health changes; in one store
transaction evaluate the rules, update the per-story state and record every new
(alert, channel) delivery as ``pending`` (or ``held`` for a digest or quiet hours); only
then commit the bus offsets. Then attempt the deliveries that are due. A crash before the
store transaction commits redelivers the events; after it, the delivery log already
holds them and the repeat is dropped (keys are functions of the event). See
:mod:`alerts.deliveries` for what happens to a crash during a send.

Each delivered alert is published to the ``alerts`` topic once per alert key, through an
outbox written in the same transaction as ``sent`` (at least once: a crash between the
publish and clearing the outbox publishes again, with the same key).
"""

from __future__ import annotations

import logging
import random
import sys
from datetime import datetime, timedelta
from typing import Any, TextIO

from alerts.deliveries import NS as DELIVERIES_NS
from alerts.deliveries import DeliveryLog, new_delivery
from alerts.model import Planned
from alerts.notifiers import Notifier, NotifierContext, Outbound, make_notifier
from alerts.render import Renderer
from alerts.rules import RuleEngine, StoryState, TopicState
from alerts.schedule import RateLimiter, hold_until
from storywatch.bus import Bus, Consumer, Producer, Record
from storywatch.clock import Clock
from storywatch.errors import DeliveryError, SchemaError, StorywatchError
from storywatch.logs import kv
from storywatch.observe import LagProbe, Metrics
from storywatch.schema import Alert, DeadLetter, FeedHealth, StoryEvent, decode
from storywatch.settings import Settings
from storywatch.store import Doc, Store

log = logging.getLogger("storywatch.alerts")

NS_STORIES = "alerts.stories"
NS_TOPICS = "alerts.topics"
NS_PUBLISHED = "alerts.published"
NS_OUTBOX = "alerts.outbox"
_RESCAN_S = 10.0
_MAX_PASSES = 4
_PRUNE_EVERY_S = 3600.0


def delivery_log(settings: Settings, store: Store, rng: random.Random | None = None) -> DeliveryLog:
    """The delivery log configured by ``settings`` (shared with :mod:`alerts.commands`)."""
    cfg = settings.alerts
    return DeliveryLog(
        store,
        max_attempts=cfg.max_attempts,
        backoff_base_s=cfg.backoff_base_s,
        backoff_max_s=cfg.backoff_max_s,
        lease_s=cfg.claim_lease_s,
        rng=rng,
    )


class AlertsService:
    """The alerts stage; implements :class:`storywatch.runtime.Service`."""

    name = "alerts"

    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        store: Store,
        clock: Clock,
        *,
        stdout: TextIO | None = None,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ):
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._lag = LagProbe(self.metrics, "alerts")
        self.cfg = settings.alerts
        self.bus = bus
        self.store = store
        self.clock = clock
        self.stdout = stdout or sys.stdout
        self.engine = RuleEngine(settings)
        self.deliveries = delivery_log(settings, store, rng)
        self.limiter = RateLimiter()
        self._topics = settings.bus.topics
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._notifiers: dict[str, Notifier] = {}
        self._next_due: datetime | None = None
        self._due_known = False
        self._next_prune: datetime | None = None

    # -- lifecycle -----------------------------------------------------------------

    def _io(self) -> tuple[Consumer, Producer]:
        if self._consumer is None:
            self._consumer = self.bus.consumer(self.cfg.group, [self._topics.story_events, self._topics.feed_health])
        if self._producer is None:
            self._producer = self.bus.producer()
        return self._consumer, self._producer

    def start(self) -> None:
        self._io()

    def step(self, timeout: float) -> int:
        consumer, _ = self._io()
        wait = timeout
        if self._due_known and self._next_due is not None:
            wait = min(timeout, max(0.0, (self._next_due - self.clock.now()).total_seconds()))
        elif not self._due_known:
            wait = 0.0
        records = consumer.poll(self.cfg.batch_size, wait)
        handled = self._ingest(records) if records else 0
        due = self._next_due is not None and self._next_due <= self.clock.now()
        if records or not self._due_known or due:
            handled += self.deliver_due()
        self._maybe_prune()
        self._lag.observe(consumer)
        return handled

    def drain(self) -> int:
        consumer, _ = self._io()
        handled = 0
        while records := consumer.poll(self.cfg.batch_size, 0.0):
            handled += self._ingest(records)
        return handled + self.deliver_due()

    def close(self) -> None:
        for n in self._notifiers.values():
            try:
                n.close()
            except Exception:
                log.exception("error closing notifier")
        self._notifiers.clear()
        if self._producer is not None:
            self._producer.flush()
            self._producer.close()
            self._producer = None
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    # -- events -> delivery log ----------------------------------------------------

    def _ingest(self, records: list[Record]) -> int:
        consumer, producer = self._io()
        now = self.clock.now()
        dead: list[DeadLetter] = []
        recorded = 0
        with self.store.transaction():
            for rec in records:
                try:
                    plans = self._evaluate(rec)
                except SchemaError as exc:
                    dead.append(self._dead_letter(rec, exc.reason, now))
                    continue
                recorded += self._record(plans, now, f"{rec.topic}@{rec.partition}:{rec.offset:012d}")
        for d in dead:
            log.warning("dead letter", extra=kv(topic=d.source_topic, key=d.key, error=d.reason))
            producer.publish(self._topics.dead_letters, d.key, d.to_bytes())
        if dead:
            producer.flush()
        # Only now, with the deliveries in the store, may the bus forget these events.
        consumer.commit()
        if recorded:
            self._due_known = False
        return len(records)

    def _evaluate(self, rec: Record) -> list[Planned]:
        if rec.topic == self._topics.feed_health:
            return self.engine.on_feed_health(decode(FeedHealth, rec.topic, rec.value))
        if rec.topic != self._topics.story_events:
            return []
        ev = decode(StoryEvent, rec.topic, rec.value)
        state = StoryState.from_doc(ev.story_id, self.store.get(NS_STORIES, ev.story_id))
        absorbed = None
        if ev.type == "merged" and ev.merged_from and ev.merged_from != ev.story_id:
            absorbed = StoryState.from_doc(ev.merged_from, self.store.get(NS_STORIES, ev.merged_from))
        names = set(self.engine.topics_of(ev)) | set(state.pending) | set(absorbed.pending if absorbed else ())
        topics = {n: TopicState.from_doc(n, self.store.get(NS_TOPICS, n)) for n in sorted(names)}
        try:
            plans = self.engine.on_story_event(ev, state, topics, absorbed)
        except Exception as exc:
            # A rule bug must not stop the stage: the event goes to the dead letters.
            log.exception("rule evaluation failed", extra=kv(story_id=ev.story_id))
            raise SchemaError(rec.topic, f"rule evaluation failed: {type(exc).__name__}: {exc}") from None
        self.store.put(NS_STORIES, ev.story_id, state.to_doc())
        if absorbed is not None:
            self.store.put(NS_STORIES, absorbed.story_id, absorbed.to_doc())
        for t in topics.values():
            self.store.put(NS_TOPICS, t.name, t.to_doc())
        return plans

    def _record(self, plans: list[Planned], now: datetime, position: str) -> int:
        docs = []
        for i, p in enumerate(plans):
            for ch in p.channels:
                chcfg = self.cfg.channels.get(ch)
                if chcfg is None:
                    continue
                hold = hold_until(chcfg, p.alert.severity, now)
                docs.append(new_delivery(p, ch, now, hold, f"{position}/{i:03d}"))
        new = self.deliveries.record(docs)
        for p in plans:
            log.info(
                "alert planned",
                extra=kv(alert_key=p.alert.key, story_id=p.alert.story_id, channels=",".join(p.channels)),
            )
        return new

    def _dead_letter(self, rec: Record, reason: str, now: datetime) -> DeadLetter:
        return DeadLetter(
            source_topic=rec.topic,
            stage=self.name,
            reason=reason,
            key=rec.key,
            value=rec.value.decode("utf-8", errors="replace"),
            at=now,
        )

    def _maybe_prune(self) -> None:
        """Once an hour, forget stories, sent deliveries and publish marks older than
        ``alerts.retention_days``, so the store stays bounded."""
        now = self.clock.now()
        if self._next_prune is not None and now < self._next_prune:
            return
        self._next_prune = now + timedelta(seconds=_PRUNE_EVERY_S)
        self.prune(now - timedelta(days=self.cfg.retention_days))

    def prune(self, cutoff: datetime) -> int:
        """Delete what is older than ``cutoff``; returns how many documents went."""
        limit = cutoff.isoformat()

        def stale_story(d: dict[str, Any]) -> bool:
            return bool((d.get("updated_at") or "") < limit)

        def stale_mark(d: dict[str, Any]) -> bool:
            return bool(d.get("at", "") < limit)

        removed = 0
        for ns, stale in ((NS_STORIES, stale_story), (NS_PUBLISHED, stale_mark)):
            keys = [k for k, d in self.store.scan(ns) if stale(d)]
            for i in range(0, len(keys), 500):
                with self.store.transaction():
                    for key in keys[i : i + 500]:
                        # Again inside the transaction: another replica may have updated
                        # the document since the scan.
                        doc = self.store.get(ns, key)
                        if doc is not None and stale(doc):
                            self.store.delete(ns, key)
                            removed += 1
        removed += self.deliveries.prune(cutoff)
        if removed:
            log.info("pruned alert state", extra=kv(items=removed, before=limit))
        return removed

    # -- delivery log -> channels --------------------------------------------------

    def deliver_due(self) -> int:
        """Release held alerts whose time came and attempt every due delivery once
        (follow-ups whose first alert went out in this call included)."""
        now = self.clock.now()
        max_items = {n: c.digest.max_items for n, c in self.cfg.channels.items() if c.digest}
        self.deliveries.release(now, max_items)
        attempted = 0
        for _ in range(_MAX_PASSES):
            tried, soonest, blocked = self._pass(now)
            attempted += tried
            if not (tried and blocked):
                break
        self.publish_outbox()
        self.metrics.alerts_held.set(self.store.count(DELIVERIES_NS, tag="held"))
        release = self.deliveries.next_release()
        if release is not None:
            soonest = _earliest(soonest, release)
        # Look again within a while even when nothing is due: another worker may have
        # died holding claims, or ``alerts retry`` may have put deliveries back.
        self._next_due = _earliest(soonest, now + timedelta(seconds=_RESCAN_S))
        self._due_known = True
        return attempted

    def _pass(self, now: datetime) -> tuple[int, datetime | None, int]:
        docs, soonest, blocked = self.deliveries.due(now)
        attempted = 0
        for doc in docs:
            chcfg = self.cfg.channels.get(doc["channel"])
            wait = self.limiter.wait_s(doc["channel"], chcfg.rate_budget if chcfg else None, self.clock.monotonic())
            if wait > 0:
                soonest = _earliest(soonest, now + timedelta(seconds=wait))
                continue
            claimed = self.deliveries.claim(doc, self.clock.now())
            if claimed is None:
                continue
            attempted += 1
            retry_at = self._attempt(claimed)
            if retry_at is not None:
                soonest = _earliest(soonest, retry_at)
        return attempted, soonest, blocked

    def _notifier(self, channel: str) -> Notifier:
        if channel not in self._notifiers:
            cfg = self.cfg.channels[channel]
            ctx = NotifierContext(
                clock=self.clock,
                renderer=Renderer(self.settings.path(cfg.template) if cfg.template else None),
                resolve=self.settings.path,
                stdout=self.stdout,
            )
            self._notifiers[channel] = make_notifier(channel, cfg, ctx)
        return self._notifiers[channel]

    def _attempt(self, doc: Doc) -> datetime | None:
        """Send one claimed delivery and record the outcome; returns the retry time if any."""
        channel = doc["channel"]
        fields: dict[str, Any] = {
            "delivery_id": doc["id"],
            "channel": channel,
            "alert_key": doc["alert_key"],
            "attempt": doc["attempts"],
        }
        try:
            if channel not in self.cfg.channels:
                raise DeliveryError(channel, "channel is no longer configured", permanent=True)
            notifier = self._notifier(channel)
            result = notifier.send(self._outbound(doc))
        except DeliveryError as exc:
            after = self.deliveries.mark_failed(doc, exc, self.clock.now())
            state = after["state"] if after else "unknown"
            self.metrics.alerts.labels(channel=channel, state=state).inc()
            log.warning("delivery failed", extra=kv(**fields, state=state, error=str(exc)))
            return datetime.fromisoformat(after["next_at"]) if after and state == "failed" else None
        except Exception as exc:
            err = DeliveryError(channel, f"unexpected {type(exc).__name__}: {exc}")
            log.exception("delivery failed unexpectedly", extra=kv(**fields))
            after = self.deliveries.mark_failed(doc, err, self.clock.now())
            self.metrics.alerts.labels(channel=channel, state=after["state"] if after else "unknown").inc()
            return datetime.fromisoformat(after["next_at"]) if after and after["state"] == "failed" else None
        # The outbox entry commits with the ``sent`` state, so no delivered alert misses
        # the alerts topic even if publishing fails or the process dies right after.
        with self.store.transaction():
            self.deliveries.mark_sent(doc, result, self.clock.now())
            for a in doc.get("items") or [doc["alert"]]:
                if self.store.get(NS_PUBLISHED, a["key"]) is None:
                    self.store.insert(NS_OUTBOX, a["key"], a)
        self.limiter.note(channel, self.clock.monotonic())
        self._count_sent(channel, doc)
        log.info("alert sent", extra=kv(**fields, uncertain=doc.get("uncertain", False)))
        return None

    def _count_sent(self, channel: str, doc: Doc) -> None:
        self.metrics.alerts.labels(channel=channel, state="sent").inc()
        now = self.clock.now()
        for a in doc.get("items") or [doc["alert"]]:
            if a.get("created_at"):  # the story event's time: when enrich emitted it
                waited = (now - datetime.fromisoformat(a["created_at"])).total_seconds()
                self.metrics.latency.labels(hop="enriched_to_alerted").observe(max(0.0, waited))
            first = a.get("first_seen")
            if first and not a.get("follow_up"):
                age = (now - datetime.fromisoformat(first)).total_seconds()
                self.metrics.latency.labels(hop="published_to_alerted").observe(max(0.0, age))

    def _outbound(self, doc: Doc) -> Outbound:
        parent_result = None
        if doc.get("parent"):
            parent = self.deliveries.get(doc["parent"])
            if parent is not None and parent["state"] == "sent":
                parent_result = parent.get("result") or {}
        return Outbound(
            alert=Alert.model_validate(doc["alert"]),
            key=doc["key"],
            channel=doc["channel"],
            attempt=doc["attempts"],
            items=[Alert.model_validate(i) for i in doc.get("items", [])],
            more=doc.get("more", 0),
            parent_key=doc.get("parent_key"),
            parent_result=parent_result,
            uncertain=bool(doc.get("uncertain")),
        )

    def publish_outbox(self) -> int:
        """Publish delivered alerts waiting in the outbox to the alerts topic, once per
        alert key (at least once: a crash between the flush and the mark repeats it,
        with the same key). Returns how many were published."""
        _, producer = self._io()
        waiting = list(self.store.scan(NS_OUTBOX))
        if not waiting:
            return 0
        try:
            for key, a in waiting:
                producer.publish(self._topics.alerts, key, Alert.model_validate(a).to_bytes())
            producer.flush()
        except StorywatchError as exc:
            log.error("cannot publish delivered alerts; will retry", extra=kv(items=len(waiting), error=str(exc)))
            return 0
        now = self.clock.now().isoformat()
        with self.store.transaction():
            for key, _ in waiting:
                self.store.put(NS_PUBLISHED, key, {"at": now})
                self.store.delete(NS_OUTBOX, key)
        return len(waiting)


def _earliest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a
