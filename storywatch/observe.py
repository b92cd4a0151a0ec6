"""Health and metrics for a running service: ``/healthz``, ``/readyz`` and ``/metrics``.

Each process owns one :class:`Metrics` (its own Prometheus registry, no module globals),
created by the CLI and handed to the stages it runs. :class:`ObserveServer` serves it on
``http.host:http.port`` when ``http.enabled`` is set.

- ``/healthz`` is liveness: the service loop has made progress within ``stall_after_s``.
- ``/readyz`` is readiness: every stage reported ready (model loaded, bus reachable).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from storywatch.logs import kv

log = logging.getLogger("storywatch.observe")

# Hops of one article's journey, for the latency histograms.
HOPS = ("published_to_fetched", "fetched_to_enriched", "enriched_to_alerted", "published_to_alerted")
_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600)


class QuietHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server whose request errors go to the log, not to stderr.

    A probe that hangs up mid-request is routine, not an error; anything else is logged
    as one structured line instead of socketserver's bare traceback.
    """

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError):
            return
        log.warning("http request failed", extra=kv(client=str(client_address[0]), error=repr(exc)))


class Metrics:
    """Every metric storywatch exports. Label values are bounded (feeds, stages, channels)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.polls = Counter("storywatch_feed_polls", "Feed polls by outcome", ["feed", "outcome"], registry=r)
        self.poll_errors = Counter(
            "storywatch_feed_poll_errors", "Feed poll errors by class", ["feed", "error"], registry=r
        )
        self.articles_in = Counter("storywatch_articles_published", "Articles published by ingest", registry=r)
        self.articles_deduped = Counter("storywatch_articles_deduped", "Items dropped as duplicates", registry=r)
        self.records_consumed = Counter(
            "storywatch_records_consumed", "Bus records consumed", ["stage", "topic"], registry=r
        )
        self.dead_letters = Counter("storywatch_dead_letters", "Records sent to dead-letters", ["stage"], registry=r)
        self.consumer_lag = Gauge("storywatch_consumer_lag", "Records not yet consumed", ["stage"], registry=r)
        self.stories_active = Gauge(
            "storywatch_stories_active", "Stories the clusterer holds, dormant ones included", registry=r
        )
        self.story_events = Counter("storywatch_story_events", "Story events published", ["type"], registry=r)
        self.topic_matches = Counter("storywatch_topic_matches", "Stories matched to a topic", ["topic"], registry=r)
        self.alerts = Counter(
            "storywatch_alert_deliveries", "Alert deliveries by channel and outcome", ["channel", "state"], registry=r
        )
        self.alerts_held = Gauge("storywatch_alerts_held", "Deliveries held (digest or quiet hours)", registry=r)
        self.latency = Histogram(
            "storywatch_latency_seconds", "Latency of each hop", ["hop"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "storywatch_batch_seconds", "Time to process one batch", ["stage"], registry=r
        )


class LagProbe:
    """Sets ``consumer_lag{stage}`` from a consumer at most every ``every_s`` seconds
    (asking Kafka for end offsets is a round trip; a service loop steps many times a second)."""

    def __init__(self, metrics: Metrics, stage: str, every_s: float = 10.0):
        self.gauge = metrics.consumer_lag.labels(stage=stage)
        self.every_s = every_s
        self._at = float("-inf")

    def observe(self, consumer: Any) -> None:
        now = time.monotonic()
        if now - self._at < self.every_s:
            return
        self._at = now
        lag = consumer.lag()
        if lag is not None:
            self.gauge.set(lag)


class Health:
    """What the probes report. Stages call :meth:`beat` as their loop makes progress."""

    def __init__(self, stall_after_s: float = 300.0):
        self.stall_after_s = stall_after_s
        self._lock = threading.Lock()
        self._beats: dict[str, float] = {}
        self._ready: dict[str, bool] = {}

    def beat(self, stage: str) -> None:
        with self._lock:
            self._beats[stage] = time.monotonic()

    def set_ready(self, stage: str, ready: bool = True) -> None:
        with self._lock:
            self._ready[stage] = ready

    def live(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            ages = {s: round(now - t, 1) for s, t in self._beats.items()}
        ok = all(age < self.stall_after_s for age in ages.values())
        return ok, {"ok": ok, "seconds_since_progress": ages}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            ready = dict(self._ready)
        ok = bool(ready) and all(ready.values())
        return ok, {"ok": ok, "stages": ready}


class ObserveServer:
    """A small threaded HTTP server for the probes and the metrics; stops with the service."""

    def __init__(self, metrics: Metrics, health: Health, host: str = "127.0.0.1", port: int = 9464):
        self.metrics = metrics
        self.health = health
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, ctype, status = generate_latest(server.metrics.registry), CONTENT_TYPE_LATEST, 200
                elif path in ("/healthz", "/readyz"):
                    ok, detail = server.health.live() if path == "/healthz" else server.health.ready()
                    body, ctype, status = json.dumps(detail).encode(), "application/json", 200 if ok else 503
                else:
                    body, ctype, status = b"not found\n", "text/plain", 404
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Probes every few seconds would flood the log; stay quiet."""

        self._httpd = QuietHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="observe-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> ObserveServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
