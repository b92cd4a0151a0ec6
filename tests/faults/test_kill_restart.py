"""The fault harness (bench/faults.py) in small: kill a stage mid-stream, restart it, and
check that every article has its story, the stories equal an undisturbed run's, and
every alert reaches SMTP and Slack once (a repeat only for a delivery marked uncertain).

The bench runs 20+ trials per stage and bus; here a few keep the suite quick
(``FAULTS_TRIALS`` raises the count). SIGTERM mid-stream must be a clean stop: exit 0,
nothing lost, nothing repeated.
"""

from __future__ import annotations

import os
import random
import signal

import pytest

from bench.faults import STAGES, run_trials

TRIALS = int(os.environ.get("FAULTS_TRIALS", "1"))
SEED = int(os.environ.get("FAULTS_SEED", "20261128"))


def _check(outcomes: list) -> None:  # type: ignore[type-arg]
    failed = [(o.stage, o.kill_at_s, o.problems) for o in outcomes if not o.ok]
    assert not failed, failed


@pytest.mark.slow
def test_sigkill_each_stage_and_sigterm_one_on_embedded_bus() -> None:
    """One reference run serves both faults: SIGKILL of each stage, SIGTERM of one."""
    term = random.Random(SEED).choice(STAGES)
    _, outcomes = run_trials(TRIALS, "embedded", list(STAGES), SEED, sigterm_stages=(term,))
    assert len(outcomes) == TRIALS * (len(STAGES) + 1)
    assert [o.signal for o in outcomes].count(signal.SIGTERM.name) == TRIALS
    _check(outcomes)


@pytest.mark.slow
@pytest.mark.kafka
def test_sigkill_a_stage_on_kafka(kafka_broker: str) -> None:
    stage = random.Random(SEED + 1).choice(STAGES)
    _, outcomes = run_trials(TRIALS, "kafka", [stage], SEED, bootstrap=kafka_broker)
    _check(outcomes)
