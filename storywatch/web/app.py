"""The read-only dashboard: server-rendered pages over the stages' state, no JavaScript.

Pages: live stories (newest or fastest-growing first, with their articles, sources and
matched topics and why they matched), one story's growth, a timeline of story growth
and topic activity (inline SVG drawn on the server), feed health and the alert log.
Every page reads the store through :mod:`storywatch.views` only, and only reads: the
app has no route that changes anything. Text is escaped by Jinja's autoescape, and
links are only emitted for http(s) URLs, so a feed cannot inject markup or script.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, abort, render_template, request

from storywatch import views
from storywatch.clock import Clock, SystemClock
from storywatch.settings import Settings
from storywatch.store import Store
from storywatch.web.svg import Series, line_chart

_CHART_STORIES = 8
_SORTS = ("newest", "growing")


def safe_url(url: Any) -> str | None:
    """``url`` if it is an http(s) URL, else None: never a ``javascript:`` link."""
    if not isinstance(url, str):
        return None
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return None
    return url.strip() if scheme in ("http", "https") else None


def _ago(dt: datetime | None, now: datetime) -> str:
    if dt is None:
        return "never"
    s = (now - dt).total_seconds()
    future, s = s < 0, abs(s)
    text = (
        f"{s:.0f}s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"
        if s < 172800 else f"{s / 86400:.0f} d"
    )  # fmt: skip
    return f"in {text}" if future else f"{text} ago"


def _count(n: int, noun: str) -> str:
    """``3 articles``, ``1 article``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _utc(dt: datetime | None) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if dt else "–"


def _per_hour(
    buckets: tuple[tuple[datetime, int], ...], since: datetime, now: datetime
) -> list[tuple[datetime, float]]:
    """Hourly counts from ``since`` to ``now`` with the empty hours as zeros (a staircase
    of counts then reads as a histogram)."""
    counts = dict(buckets)
    start = datetime.fromtimestamp(max(since, min(counts, default=now)).timestamp() // 3600 * 3600, UTC)
    out: list[tuple[datetime, float]] = []
    t = start
    while t < now or not out:
        out.append((t, float(counts.get(t, 0))))
        t += timedelta(hours=1)
    return out


def create_app(
    settings: Settings, store: Store, *, clock: Clock | None = None, health: Any = None, metrics: Any = None
) -> Flask:
    """The dashboard over ``store``. With ``health`` and ``metrics`` (from
    :mod:`storywatch.observe`) it also answers ``/healthz``, ``/readyz`` and ``/metrics``,
    so one port can serve both."""
    app = Flask("storywatch.web", static_folder="static", template_folder="templates")
    app.config.update(SETTINGS=settings, STORE=store)
    clk: Clock = clock or SystemClock()
    refresh_s = 30

    @app.context_processor
    def _globals() -> dict[str, Any]:
        now = clk.now()
        return {
            "now": now,
            "ago": lambda dt: _ago(dt, now),
            "utc": _utc,
            "safe_url": safe_url,
            "refresh_s": refresh_s,
            "page": request.endpoint,
            "count": _count,
        }

    @app.after_request
    def _headers(resp: Response) -> Response:
        # No script runs here at all; say so, so a missed escape still cannot run one.
        resp.headers.setdefault(
            "Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'"
        )
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        return resp

    @app.get("/")
    def stories() -> str:
        sort = request.args.get("sort", "newest")
        if sort not in _SORTS:
            sort = "newest"
        limit = min(max(request.args.get("limit", 50, type=int) or 50, 1), 500)
        rows = views.stories_view(store, limit=limit, order=sort)
        return render_template("stories.html", stories=rows, sort=sort, total=store.count(views.NS_STORIES))

    @app.get("/stories/<story_id>")
    def story(story_id: str) -> str:
        doc = store.get(views.NS_STORIES, story_id)
        if doc is None:
            abort(404)
        row = views.story_from_doc(story_id, doc)
        chart = line_chart(
            [
                Series("articles", [(p.at, p.articles) for p in row.growth]),
                Series("independent sources", [(p.at, p.sources) for p in row.growth]),
            ],
            now=clk.now(),
        )
        return render_template("story.html", story=row, growth_chart=chart)

    @app.get("/timeline")
    def timeline() -> str:
        hours = min(max(request.args.get("hours", 48, type=int) or 48, 1), 24 * 30)
        since = clk.now() - timedelta(hours=hours)
        live = views.stories_view(store, limit=500, order="growing", since=since)
        top = live[:_CHART_STORIES]
        growth = line_chart(
            [Series(s.headline, [(p.at, p.articles) for p in s.growth if p.at >= since]) for s in top],
            now=clk.now(),
        )
        sources = line_chart(
            [Series(s.headline, [(p.at, p.sources) for p in s.growth if p.at >= since]) for s in top],
            height=200,
            now=clk.now(),
        )
        activity = views.topic_activity(live)
        topics = line_chart(
            [
                Series(a.topic, _per_hour(a.buckets, since, clk.now()), note=f"{sum(n for _, n in a.buckets)} articles")
                for a in activity
            ],
            now=clk.now(),
        )
        return render_template(
            "timeline.html", growth=growth, sources=sources, top=top, topics=topics, activity=activity, hours=hours
        )

    @app.get("/feeds")
    def feeds() -> str:
        return render_template("feeds.html", feeds=views.feeds_view(store, settings))

    @app.get("/alerts")
    def alerts() -> str:
        state = request.args.get("state") or None
        if state is not None and state not in views.ALERT_STATES:
            abort(400)
        rows = views.alerts_view(store, state=state, limit=200)
        return render_template(
            "alerts.html", alerts=rows, state=state, counts=views.alert_counts(store), states=views.ALERT_STATES
        )

    if health is not None:

        @app.get("/healthz")
        def healthz() -> tuple[dict[str, Any], int]:
            ok, detail = health.live()
            return detail, 200 if ok else 503

        @app.get("/readyz")
        def readyz() -> tuple[dict[str, Any], int]:
            ok, detail = health.ready()
            return detail, 200 if ok else 503

    if metrics is not None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        @app.get("/metrics")
        def metrics_page() -> Response:
            return Response(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST)

    return app
