"""The delivery log: one store document per (alert, channel), tagged with its state.

States and transitions (the store tag is the state)::

    held ──release──> pending ──claim──> sending ──ok──> sent
      └──(digest)──> digested            │   ^  └─error──> failed ──due──> (claim)
                                         │   └─lease expired (worker died): reclaim
                                         └─error, attempts used up or permanent──> dead
    dead / failed ──``alerts retry``──> pending

Every transition is ``update_if`` on the tag inside a store transaction that re-reads
the document first, so two alert workers never both claim one delivery, and a stale
view of a document (ABA) cannot overwrite a newer one.

Exactly once, and the window that remains: a delivery is recorded (``pending``) before
any attempt, and claimed (``sending``) before the notifier is called. If the worker dies
while ``sending``, the claim's lease (``alerts.claim_lease_s``) runs out and another
attempt is made, marked ``uncertain``. The only way an alert is sent twice is a crash
after the receiver accepted the message and before ``sent`` is recorded: the round trip
of the receiver's reply plus one SQLite write. Every resend carries the same idempotency
key (email Message-ID, webhook ``Idempotency-Key``, Slack message metadata), so the
receiver can drop it; a Slack bot channel closes the window itself by looking for the
key in the channel before posting an uncertain resend. No alert is lost: nothing leaves ``sending`` but by ``sent``,
``failed``, ``dead`` or a reclaim.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from alerts.model import Planned, delivery_id, delivery_key
from alerts.schedule import backoff_s
from storywatch.errors import DeliveryError
from storywatch.schema import Alert, dump
from storywatch.store import Doc, Store

NS = "alerts.deliveries"
STATES = ("held", "pending", "sending", "sent", "failed", "dead", "digested")
TERMINAL = ("sent", "dead", "digested")
_SEVERITY_ORDER = {"low": 0, "medium": 1, "high": 2, "critical": 3}


def new_delivery(planned: Planned, channel: str, now: datetime, hold: datetime | None, position: str = "") -> Doc:
    """The document recording that ``planned`` is to go to ``channel``.

    ``order`` sorts deliveries in the order their events arrived: the recording time,
    then ``position`` (the event's place on the bus), so alerts go out in event order.
    """
    key = planned.alert.key
    parent_key = planned.parent.get(channel)
    return {
        "id": delivery_id(key, channel),
        "key": delivery_key(key, channel),
        "alert_key": key,
        "channel": channel,
        "state": "held" if hold else "pending",
        "alert": dump(planned.alert),
        "parent": delivery_id(parent_key, channel) if parent_key else None,
        "parent_key": delivery_key(parent_key, channel) if parent_key else None,
        "attempts": 0,
        "created_at": now.isoformat(),
        "order": f"{now.isoformat()}|{position}",
        "next_at": now.isoformat(),
        "release_at": hold.isoformat() if hold else None,
        "claim": None,
        "last_error": None,
        "sent_at": None,
        "result": {},
        "uncertain": False,
    }


class DeliveryLog:
    """The delivery log over a :class:`Store`; see the module docstring for the states."""

    def __init__(
        self,
        store: Store,
        *,
        max_attempts: int,
        backoff_base_s: float,
        backoff_max_s: float,
        lease_s: float,
        rng: random.Random | None = None,
    ):
        self.store = store
        self.max_attempts = max_attempts
        self.base_s = backoff_base_s
        self.max_s = backoff_max_s
        self.lease_s = lease_s
        self.rng = rng or random.Random()

    def record(self, docs: list[Doc]) -> int:
        """Insert deliveries that are not yet recorded; return how many were new.

        Call inside the caller's transaction, before committing the bus offset.
        """
        return sum(self.store.insert(NS, d["id"], d, tag=d["state"]) for d in docs)

    def get(self, did: str) -> Doc | None:
        return self.store.get(NS, did)

    def find(self, ref: str) -> Doc | None:
        """A delivery by id, unique id prefix or full delivery key."""
        doc = self.store.get(NS, ref)
        if doc is not None:
            return doc
        if len(ref) >= 4:
            # Keys that start with ``ref`` are the first keys after it.
            hits = [d for k, d in self.store.scan(NS, after=ref, limit=2) if k.startswith(ref)]
            if len(hits) == 1:
                return hits[0]
        doc = self.store.get(NS, delivery_id(*ref.rsplit("|", 1))) if "|" in ref else None
        return doc

    def scan(self, state: str | None = None) -> Iterator[Doc]:
        for _, doc in self.store.scan(NS, tag=state):
            yield doc

    def count(self, state: str | None = None) -> int:
        return self.store.count(NS, tag=state)

    # -- what is due ---------------------------------------------------------------

    def due(self, now: datetime, limit: int = 200) -> tuple[list[Doc], datetime | None, int]:
        """Deliveries to attempt now (oldest first), when the next one falls due, and how
        many due ones wait for their parent.

        A follow-up waits until its parent delivery is settled, so that the Slack thread
        exists and no follow-up overtakes its first alert.
        """
        blocked = 0
        ready: list[Doc] = []
        soonest: datetime | None = None
        now_s = now.isoformat()
        for state in ("pending", "failed", "sending"):
            for doc in self.scan(state):
                at = self._due_at(doc)
                if at > now_s:
                    soonest = _min(soonest, datetime.fromisoformat(at))
                    continue
                if doc.get("parent") and self._parent_busy(doc["parent"]):
                    blocked += 1
                    continue
                ready.append(doc)
        ready.sort(key=_order)
        return ready[:limit], soonest, blocked

    def _due_at(self, doc: Doc) -> str:
        if doc["state"] == "sending":
            claim = doc.get("claim") or {}
            at = datetime.fromisoformat(str(claim.get("at", doc["next_at"])))
            return (at + timedelta(seconds=self.lease_s)).isoformat()
        return str(doc["next_at"])

    def _parent_busy(self, parent_id: str) -> bool:
        tag = self.store.get_tag(NS, parent_id)
        return tag is not None and tag not in TERMINAL

    def next_release(self) -> datetime | None:
        soonest = None
        for doc in self.scan("held"):
            soonest = _min(soonest, datetime.fromisoformat(str(doc["release_at"])))
        return soonest

    # -- transitions ---------------------------------------------------------------

    def claim(self, doc: Doc, now: datetime) -> Doc | None:
        """Take ``doc`` for sending; None if another worker got it or it is not due."""
        with self.store.transaction():
            cur = self.store.get(NS, doc["id"])
            if cur is None or cur["state"] not in ("pending", "failed", "sending"):
                return None
            if self._due_at(cur) > now.isoformat():
                return None
            seen_token = (doc.get("claim") or {}).get("token")
            if cur["state"] == "sending" and (cur.get("claim") or {}).get("token") != seen_token:
                return None
            new = dict(cur)
            new["uncertain"] = cur["state"] == "sending" or cur.get("uncertain", False)
            new["state"] = "sending"
            new["attempts"] = cur["attempts"] + 1
            new["claim"] = {"token": uuid.uuid4().hex, "at": now.isoformat()}
            if not self.store.update_if(NS, cur["id"], cur["state"], new, tag="sending"):
                return None
            return new

    def _finish(self, doc: Doc, **changes: Any) -> Doc | None:
        with self.store.transaction():
            cur = self.store.get(NS, doc["id"])
            if cur is None or cur["state"] != "sending":
                return None
            new = {**cur, **changes}
            return new if self.store.update_if(NS, cur["id"], "sending", new, tag=new["state"]) else None

    def mark_sent(self, doc: Doc, result: dict[str, Any], now: datetime) -> Doc | None:
        return self._finish(doc, state="sent", sent_at=now.isoformat(), result=result, claim=None)

    def mark_failed(self, doc: Doc, err: DeliveryError, now: datetime) -> Doc | None:
        """Record a failed attempt: ``failed`` with a backoff, or ``dead`` when retries
        are used up or the error is permanent."""
        attempts = doc["attempts"]
        if err.permanent or attempts >= self.max_attempts:
            return self._finish(doc, state="dead", last_error=str(err), claim=None)
        delay = backoff_s(attempts, self.base_s, self.max_s, self.rng, err.retry_after)
        nxt = now + timedelta(seconds=delay)
        return self._finish(doc, state="failed", last_error=str(err), next_at=nxt.isoformat(), claim=None)

    def retry(self, doc: Doc, now: datetime) -> bool:
        """Put a dead or failed delivery back to pending with a fresh set of attempts."""
        with self.store.transaction():
            cur = self.store.get(NS, doc["id"])
            if cur is None or cur["state"] not in ("dead", "failed"):
                return False
            new = {**cur, "state": "pending", "attempts": 0, "next_at": now.isoformat()}
            return self.store.update_if(NS, cur["id"], cur["state"], new, tag="pending")

    def prune(self, cutoff: datetime) -> int:
        """Delete sent and digested deliveries created before ``cutoff``; dead and
        failed ones stay, for a person to see and retry."""
        old = [
            d["id"] for state in ("sent", "digested") for d in self.scan(state) if d["created_at"] < cutoff.isoformat()
        ]
        for i in range(0, len(old), 500):
            with self.store.transaction():
                for did in old[i : i + 500]:
                    self.store.delete(NS, did)
        return len(old)

    # -- holding and digests -------------------------------------------------------

    def release(self, now: datetime, max_items: dict[str, int]) -> int:
        """Release held deliveries whose time has come: one alone goes out as itself,
        several of one channel and release time go out as one digest. Returns the
        number of deliveries released."""
        groups: dict[tuple[str, str], list[Doc]] = {}
        now_s = now.isoformat()
        for doc in self.scan("held"):
            if doc["release_at"] <= now_s:
                groups.setdefault((doc["channel"], doc["release_at"]), []).append(doc)
        released = 0
        for (channel, release_at), docs in sorted(groups.items()):
            docs.sort(key=_order)
            with self.store.transaction():
                if len(docs) == 1:
                    d = docs[0]
                    released += self.store.update_if(
                        NS, d["id"], "held", {**d, "state": "pending", "next_at": now_s}, tag="pending"
                    )
                    continue
                digest = self._digest_doc(channel, release_at, docs, now, max_items.get(channel, 50))
                if not self.store.insert(NS, digest["id"], digest, tag="pending"):
                    continue
                for d in docs:
                    ok = self.store.update_if(
                        NS,
                        d["id"],
                        "held",
                        {**d, "state": "digested", "digest": digest["id"]},
                        tag="digested",
                    )
                    released += ok
        return released

    def _digest_doc(self, channel: str, release_at: str, docs: list[Doc], now: datetime, shown: int) -> Doc:
        items = [d["alert"] for d in docs]
        severity = max((i.get("severity", "medium") for i in items), key=lambda s: _SEVERITY_ORDER.get(s, 1))
        member_hash = delivery_id("+".join(d["id"] for d in docs), channel)[:8]
        key = f"digest:{channel}:{int(datetime.fromisoformat(release_at).timestamp())}:{member_hash}"
        alert = Alert(
            key=key,
            rule="digest",
            severity=severity,  # type: ignore[arg-type]
            title=f"{len(items)} alerts",
            headline=f"Digest of {len(items)} alerts",
            channels=[channel],
            created_at=now,
        )
        plan = Planned(alert, (channel,))
        doc = new_delivery(plan, channel, now, None)
        doc["items"] = items[:shown]
        doc["more"] = max(0, len(items) - shown)
        return doc


def _min(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a


def _order(doc: Doc) -> tuple[str, str]:
    return (doc.get("order") or doc["created_at"], doc["id"])
