"""The delivery log's state machine under two workers sharing one SQLite store, driven by
Hypothesis: whatever the interleaving of claims, sends, failures, lease expiries and
retries, no delivery is held by two live claims, a sent delivery stays sent, and nothing
is lost (every delivery is sent, dead, or still on its way)."""

from __future__ import annotations

import random
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from alerts.deliveries import DeliveryLog, new_delivery
from alerts.model import Planned
from storywatch.errors import DeliveryError
from storywatch.schema import Alert
from storywatch.store.sqlite import SQLiteStore

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LEASE = 60.0


def planned(i: int) -> Planned:
    alert = Alert(key=f"topic_match/t:s{i}:1", rule="topic_match", title=f"story {i}", created_at=T0)
    return Planned(alert, ("c",))


class TwoWorkers(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        path = Path(self.tmp.name) / "state.db"
        # Two store connections, as two worker processes would have.
        self.stores = [SQLiteStore(path), SQLiteStore(path)]
        self.logs = [
            DeliveryLog(s, max_attempts=3, backoff_base_s=1, backoff_max_s=4, lease_s=LEASE, rng=random.Random(i))
            for i, s in enumerate(self.stores)
        ]
        self.now = T0
        self.held: list[dict[str, Any] | None] = [None, None]  # what each worker is sending
        self.sends: dict[str, int] = {}
        self.ids: list[str] = []
        self.ever_sent: set[str] = set()

    def teardown(self) -> None:
        for s in self.stores:
            s.close()
        self.tmp.cleanup()

    @rule(i=st.integers(0, 4), w=st.integers(0, 1))
    def record(self, i: int, w: int) -> None:
        doc = new_delivery(planned(i), "c", self.now, None)
        self.logs[w].record([doc])
        if doc["id"] not in self.ids:
            self.ids.append(doc["id"])

    @rule(w=st.integers(0, 1))
    def claim_first_due(self, w: int) -> None:
        if self.held[w] is not None:
            return
        due, _, _ = self.logs[w].due(self.now)
        for doc in due:
            claimed = self.logs[w].claim(doc, self.now)
            if claimed is not None:
                self.held[w] = claimed
                return

    @precondition(lambda self: any(h is not None for h in self.held))
    @rule(w=st.integers(0, 1), ok=st.booleans(), permanent=st.booleans())
    def finish(self, w: int, ok: bool, permanent: bool) -> None:
        doc = self.held[w]
        if doc is None:
            return
        self.held[w] = None
        if ok:
            self.sends[doc["id"]] = self.sends.get(doc["id"], 0) + 1
            if self.logs[w].mark_sent(doc, {}, self.now) is not None:
                self.ever_sent.add(doc["id"])
        else:
            self.logs[w].mark_failed(doc, DeliveryError("c", "boom", permanent=permanent), self.now)

    @rule(w=st.integers(0, 1))
    def crash(self, w: int) -> None:
        """The worker dies holding its claim (if any); its lease will run out."""
        self.held[w] = None

    @rule(seconds=st.sampled_from([0.5, 5.0, LEASE + 1]))
    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(w=st.integers(0, 1))
    def operator_retries_the_dead(self, w: int) -> None:
        for doc in list(self.logs[w].scan("dead")):
            self.logs[w].retry(doc, self.now)

    @invariant()
    def live_claims_are_exclusive(self) -> None:
        """A claim older than the lease is presumed dead (a live worker's sends time out
        well within it), so only claims within their lease must be exclusive."""
        if not hasattr(self, "held"):
            return
        live = [
            h["id"]
            for h in self.held
            if h is not None and datetime.fromisoformat(h["claim"]["at"]) + timedelta(seconds=LEASE) > self.now
        ]
        assert len(live) == len(set(live)), "two workers hold one delivery"

    @invariant()
    def sent_stays_sent_and_nothing_is_lost(self) -> None:
        if not hasattr(self, "logs"):
            return
        states = {d["id"]: d["state"] for d in self.logs[0].scan()}
        assert set(states) == set(self.ids), "a recorded delivery vanished"
        for did in self.ever_sent:
            assert states[did] == "sent"
        assert set(states.values()) <= {"pending", "sending", "sent", "failed", "dead"}

    @invariant()
    def a_second_send_only_after_a_lost_claim(self) -> None:
        if not hasattr(self, "logs"):
            return
        for did, n in self.sends.items():
            if n > 1:
                doc = self.logs[0].get(did)
                assert doc is not None and doc["uncertain"], "resent without a crash in between"


TestTwoWorkers = TwoWorkers.TestCase
TestTwoWorkers.settings = settings(max_examples=25, stateful_step_count=30, deadline=None)
