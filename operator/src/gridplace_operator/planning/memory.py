"""What the operator keeps from one cycle to the next, in one place and under one key: the
InferenceDeployment's `IdepRef` (namespace, name).

Everything else a cycle uses it reads afresh: the `World` (the watches' mirror of the cluster),
signals (`SourceReads`), the GPU inventory. What a restart, or a new leader, loses of this memory
and how it comes back:

- `plans`: the first cycle re-plans, with the Deployments that run as the current placement, so
  nothing moves for the restart's sake.
- `failures`: the next solve says again why it fails.
- `moves` (the churn budget's last hour): handed over in the leader's Lease (`lease_memory`); an
  operator without leader election starts with none, at most one hour's extra budget.
- `scaling` (autoscaler histories): rebuilt from each status (`autoscaler.history_from_status`);
  `decisions`, `outcomes`, `decided_at` and `measured_demand` come back at the next decision.
- `holds`: a make-before-break scale-down under way waits its timeout again from the start.
- `summaries`: the placement last announced is read back from `status.placementSummary`.
- `certified`: a cache of plans for unchanged inputs; the first cycle solves again.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from gridplace_operator.api.parsed import IdepRef
from gridplace_operator.autoscale.decide import Decision, History, Outcome
from gridplace_operator.report.status import ModelPlan
from gridplace_placement.plan import Plan

log = logging.getLogger(__name__)
HOUR = 3600.0


@dataclass
class Memory:
    plans: dict[IdepRef, ModelPlan] = field(default_factory=dict)  # the last plan of each model
    planned: bool = False  # whether a plan was made since the start or the last take-over
    failures: dict[IdepRef, str] = field(default_factory=dict)  # why its last solve failed
    moves: dict[IdepRef, deque[tuple[float, int]]] = field(default_factory=dict)  # (unix s, n)
    scaling: dict[IdepRef, History] = field(default_factory=dict)
    decisions: dict[IdepRef, Decision] = field(default_factory=dict)
    outcomes: dict[IdepRef, Outcome] = field(default_factory=dict)  # each decision, once planned
    decided_at: dict[IdepRef, float] = field(default_factory=dict)  # of the decision reported
    measured_demand: dict[IdepRef, dict[str, float]] = field(default_factory=dict)
    holds: dict[IdepRef, float] = field(default_factory=dict)  # monotonic s a scale-down waits
    summaries: dict[IdepRef, str] = field(default_factory=dict)  # the placement last announced
    uids: dict[IdepRef, str] = field(default_factory=dict)  # whose memory this is
    # Certified plans by digest of their problem: unchanged inputs reuse one (not per model).
    certified: dict[str, Plan] = field(default_factory=dict)

    def forget_all_but(self, alive: Mapping[IdepRef, str]) -> None:
        """Drop what is kept of InferenceDeployments that no longer exist (`alive`: the ones
        that do, with their uids); one deleted and created again under the same name between
        two cycles starts afresh too."""
        gone = {ref for ref, uid in self.uids.items() if alive.get(ref) != uid}
        for kept in fields(self):
            value = getattr(self, kept.name)
            if kept.name == "certified" or not isinstance(value, dict):
                continue
            for ref in [ref for ref in value if ref not in alive or ref in gone]:
                del value[ref]
        self.uids.update(alive)

    def moves_left(self, ref: IdepRef, per_hour: int, now_s: float) -> int:
        """Moves `ref`'s re-plan may still make within the hour (its own budget only)."""
        history = self.moves.setdefault(ref, deque())
        while history and history[0][0] < now_s - HOUR:
            history.popleft()
        return max(0, per_hour - sum(n for _, n in history))

    def lease_memory(self, now_s: float) -> str:
        """What a successor needs that the cluster does not show: the moves of the last hour
        (JSON, kept in the leader's Lease, by model key "namespace/name")."""
        kept = {
            ref.key: [[round(t, 1), n] for t, n in history if t >= now_s - HOUR]
            for ref, history in sorted(self.moves.items(), key=lambda item: item[0].key)
        }
        return json.dumps({"moves": {m: h for m, h in kept.items() if h}}, separators=(",", ":"))

    def take_over(self, lease_memory: str) -> None:
        """Start as a new leader: the predecessor's moves; unreadable memory is dropped, which
        costs at most one hour of churn budget. Autoscaler histories are rebuilt from status,
        which the predecessor kept current."""
        try:
            moves = json.loads(lease_memory or "{}").get("moves") or {}
            self.moves = {
                IdepRef.of_key(m): deque((float(t), int(n)) for t, n in h) for m, h in moves.items()
            }
        except (ValueError, TypeError, AttributeError) as err:
            log.warning("ignoring the previous leader's memory: %s", err)
            self.moves = {}
        self.scaling.clear()
        self.planned = False
