"""The leader election's rules, without a cluster (the Lease itself is tested against the real
API server in tests/operator_cluster/test_leader.py)."""

from __future__ import annotations

import json
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest

from gridplace_operator.api.parsed import IdepRef
from gridplace_operator.autoscale.decide import History, history_from_status
from gridplace_operator.kube.leader import (
    MEMORY_ANNOTATION,
    LeaseRecord,
    LeaseTiming,
    lease_body,
    may_take,
)
from gridplace_operator.planning.memory import Memory
from gridplace_placement.plan import Plan

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def record(holder: str, duration: float = 10, transitions: int = 0) -> LeaseRecord:
    return LeaseRecord(holder, duration, transitions, "42", "2026-12-03T08:59:59.000000Z", "")


def test_a_lease_held_by_another_is_taken_only_after_it_stopped_changing_for_its_duration() -> None:
    held = record("a")
    assert not may_take(held, "b", unchanged_since=100.0, now=105.0)
    assert may_take(held, "b", unchanged_since=100.0, now=110.0)
    assert may_take(held, "a", unchanged_since=100.0, now=100.5)  # a renewal
    assert may_take(record(""), "b", unchanged_since=100.0, now=100.0)  # released


def test_a_take_over_counts_a_transition_and_keeps_the_predecessors_version() -> None:
    body = lease_body(
        "lease", "ns", "b", LeaseTiming(), previous=record("a", transitions=3), memory="m", now=NOW
    )
    assert body["spec"]["holderIdentity"] == "b"
    assert body["spec"]["leaseTransitions"] == 4
    assert body["spec"]["acquireTime"] == body["spec"]["renewTime"] == "2026-12-03T09:00:00.000000Z"
    assert body["metadata"]["resourceVersion"] == "42"  # the API server refuses a stale write
    assert body["metadata"]["annotations"] == {MEMORY_ANNOTATION: "m"}
    renewal = lease_body(
        "lease", "ns", "b", LeaseTiming(), previous=record("b", transitions=4), memory="", now=NOW
    )
    assert renewal["spec"]["leaseTransitions"] == 4 and "acquireTime" not in renewal["spec"]


def test_a_release_hands_the_lease_over_at_once() -> None:
    body = lease_body(
        "lease", "ns", "b", LeaseTiming(), previous=record("b"), memory="", now=NOW, release=True
    )
    assert body["spec"]["holderIdentity"] == ""
    assert body["spec"]["leaseDurationSeconds"] == 1


def test_the_leader_fences_itself_before_a_standby_may_take_over() -> None:
    with pytest.raises(ValueError, match="renew_every < renew_deadline < duration"):
        LeaseTiming(duration_s=5, renew_every_s=3, renew_deadline_s=6)
    timing = LeaseTiming()
    assert timing.renew_deadline_s < timing.duration_s
    # A standby that polls every retry period takes over within 15 s of the last renewal.
    assert timing.duration_s + timing.retry_every_s <= 15


def test_the_move_history_survives_a_hand_over_and_old_moves_drop_out() -> None:
    a, b = IdepRef("ns", "a"), IdepRef("ns", "b")
    leader = Memory()
    recent, old = NOW.timestamp() - 600, (NOW - timedelta(hours=2)).timestamp()
    leader.moves = {a: deque([(old, 4), (recent, 2)]), b: deque([(old, 1)])}
    handed = leader.lease_memory(NOW.timestamp())
    # The annotation names models as "namespace/name", as every release wrote it.
    assert json.loads(handed) == {"moves": {"ns/a": [[round(recent, 1), 2]]}}
    successor = Memory(planned=True)
    successor.take_over(handed)
    assert {m: list(h) for m, h in successor.moves.items()} == {a: [(round(recent, 1), 2)]}
    assert not successor.planned  # a new leader plans before it writes
    successor.take_over("not json")  # a damaged annotation costs the history, nothing else
    assert successor.moves == {}


def test_what_is_kept_of_a_deleted_inference_deployment_is_forgotten() -> None:
    a, b = IdepRef("ns", "a"), IdepRef("ns", "b")
    memory = Memory(failures={a: "why", b: "why"}, holds={b: 1.0}, summaries={a: "x", b: "y"})
    memory.certified["digest"] = cast(Plan, object())
    memory.forget_all_but({a: "uid-a"})
    assert (memory.failures, memory.holds, memory.summaries) == ({a: "why"}, {}, {a: "x"})
    assert "digest" in memory.certified  # plans for problems, not for one model
    assert memory.moves_left(a, per_hour=3, now_s=NOW.timestamp()) == 3
    # Deleted and created again under the same name: a new object, with no past.
    memory.forget_all_but({a: "uid-a2"})
    assert (memory.failures, memory.summaries, memory.uids) == ({}, {}, {a: "uid-a2"})


def test_the_autoscaler_memory_is_rebuilt_from_the_status_it_wrote() -> None:
    shown = {"desiredReplicas": 7, "reason": "OnTarget", "lastScaleTime": "2026-12-03T08:50:00Z"}
    history = history_from_status(shown, NOW.timestamp())
    assert (history.floors, history.floor, history.rate) == (((NOW.timestamp(), 7),), 7, None)
    assert history.last_scale_s == datetime(2026, 12, 3, 8, 50, tzinfo=UTC).timestamp()
    assert history_from_status(None, NOW.timestamp()) == History()
