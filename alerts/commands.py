"""``storywatch alerts list`` and ``storywatch alerts retry``: the delivery log for people."""

from __future__ import annotations

import json
from typing import TextIO

from alerts.deliveries import STATES
from alerts.service import delivery_log
from storywatch.clock import Clock, SystemClock
from storywatch.settings import Settings
from storywatch.store import Store


def list_alerts(settings: Settings, store: Store, state: str | None, as_json: bool, out: TextIO) -> int:
    """Print deliveries (only those in ``state`` if given), oldest first; exit status."""
    if state is not None and state not in STATES:
        out.write(f"unknown state {state!r}; expected one of: {', '.join(STATES)}\n")
        return 2
    docs = sorted(delivery_log(settings, store).scan(state), key=lambda d: (d.get("order", ""), d["id"]))
    if as_json:
        for d in docs:
            row = {
                k: d.get(k)
                for k in (
                    "id",
                    "state",
                    "channel",
                    "alert_key",
                    "key",
                    "attempts",
                    "created_at",
                    "next_at",
                    "sent_at",
                    "last_error",
                    "uncertain",
                    "release_at",
                    "parent",
                )
            }
            row["title"] = d["alert"].get("title")
            row["rule"] = d["alert"].get("rule")
            row["severity"] = d["alert"].get("severity")
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        return 0
    if not docs:
        out.write("no deliveries" + (f" in state {state}" if state else "") + "\n")
        return 0
    out.write(f"{'ID':<16}  {'STATE':<9} {'CHANNEL':<12} {'TRIES':>5}  {'CREATED (UTC)':<16}  TITLE\n")
    for d in docs:
        title = " ".join(str(d["alert"].get("title", "")).split())
        if len(title) > 70:
            title = title[:69] + "…"
        created = d["created_at"][:16].replace("T", " ")
        channel, tries = d["channel"][:12], d["attempts"]
        out.write(f"{d['id']:<16}  {d['state']:<9} {channel:<12} {tries:>5}  {created:<16}  {title}\n")
        if d["state"] in ("failed", "dead") and d.get("last_error"):
            out.write(f"{'':<16}  error: {d['last_error']}\n")
        if d["state"] == "held" and d.get("release_at"):
            out.write(f"{'':<16}  held until {d['release_at'][:16].replace('T', ' ')} UTC (digest or quiet hours)\n")
    counts = {s: 0 for s in STATES}
    for d in docs:
        counts[d["state"]] = counts.get(d["state"], 0) + 1
    out.write(", ".join(f"{n} {s}" for s, n in counts.items() if n) + "\n")
    return 0


def retry_alert(settings: Settings, store: Store, delivery_id: str, out: TextIO, clock: Clock | None = None) -> int:
    """Put a dead or failed delivery (id, unique id prefix, or delivery key) back to
    pending with fresh attempts; a running alerts stage picks it up within seconds."""
    dlog = delivery_log(settings, store)
    doc = dlog.find(delivery_id)
    if doc is None:
        hint = " (give at least 4 characters of the id)" if len(delivery_id) < 4 else ""
        out.write(f"no delivery {delivery_id!r}{hint}\n")
        return 1
    if doc["state"] not in ("dead", "failed"):
        out.write(f"delivery {doc['id']} is {doc['state']}; only dead or failed deliveries can be retried\n")
        return 1
    if not dlog.retry(doc, (clock or SystemClock()).now()):
        out.write(f"delivery {doc['id']} changed meanwhile; try again\n")
        return 1
    out.write(f"delivery {doc['id']} ({doc['channel']}: {doc['alert'].get('title', '')}) is pending again\n")
    return 0
