"""Status of InferenceDeployments and Regions, computed from the plan and what is observed.

Pure functions returning API models; the planner writes them only when they differ from what the
object already shows, so a steady state writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gridplace_operator import labels
from gridplace_operator.api.common import Condition
from gridplace_operator.api.conditions import ConditionType, Reason
from gridplace_operator.api.inference_deployment import (
    AutoscalerStatus,
    InferenceDeploymentStatus,
    Prediction,
    RegionPlacement,
    ZoneRoute,
)
from gridplace_operator.api.region import (
    GpuInventory,
    RegionSignals,
    RegionStatus,
    SignalStatus,
)
from gridplace_operator.observe.inventory import Unavailable
from gridplace_placement.plan import ModelOutcome, Plan, PoolPlan, Route, ZoneOutcome

Status = str  # "True" | "False" | "Unknown"
# Observed p95 and request rate move a little on every autoscaler period; status shows new values
# only when the decision changes or one of them moves by more than this share.
OBSERVATION_TOLERANCE = 0.1


@dataclass(frozen=True)
class ModelPlan:
    """The part of a joint plan that concerns one InferenceDeployment."""

    outcome: ModelOutcome
    pools: list[PoolPlan]
    routes: list[Route]
    zones: list[ZoneOutcome]
    made_at: datetime

    @classmethod
    def of(cls, plan: Plan, model: str, made_at: datetime) -> ModelPlan | None:
        outcome = next((m for m in plan.models if m.name == model), None)
        if outcome is None:
            return None
        return cls(
            outcome=outcome,
            pools=[p for p in plan.pools if p.model == model and p.replicas > 0],
            routes=[r for r in plan.routes if r.model == model and r.rate_rps > 0],
            zones=[z for z in plan.zones if z.model == model],
            made_at=made_at,
        )

    def replicas(self) -> dict[tuple[str, str], int]:
        return {(p.region, p.gpu_type): p.replicas for p in self.pools}


@dataclass(frozen=True)
class SignalHealth:
    """How trustworthy the signals behind a plan are."""

    status: Status = "True"
    reason: Reason = Reason.FRESH
    message: str = "every signal used is fresh"


@dataclass(frozen=True)
class IdepFacts:
    """Everything an InferenceDeployment's status is computed from."""

    name: str
    generation: int
    advise: bool
    pinned: bool
    plan: ModelPlan | None
    rejection: tuple[Reason, str] | None = None
    missing_regions: Sequence[str] = ()
    signals: SignalHealth = field(default_factory=SignalHealth)
    ready: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (region, gpu) -> ready
    rtt_ms: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    conflict: str | None = None  # a child's name is taken by an object gridplace does not own
    autoscaler: AutoscalerStatus | None = None  # the last decision, when the autoscaler runs
    scaling: tuple[Reason, str] | None = None  # that decision's reason and message
    routed: tuple[Status, Reason, str] | None = None  # the Routed condition, with spec.routing


Verdict = tuple[Status, Reason, str]


def condition(
    type_: ConditionType,
    verdict: Verdict,
    *,
    generation: int,
    previous: Sequence[Mapping[str, Any]],
    now: datetime,
) -> Condition:
    """A condition whose lastTransitionTime moves only when its status flips."""
    status, reason, message = verdict
    before = next((c for c in previous if c.get("type") == type_), None)
    since: Any = now
    if before is not None and before.get("status") == status and before.get("lastTransitionTime"):
        since = before["lastTransitionTime"]
    return Condition.model_validate(
        {
            "type": type_.value,
            "status": status,
            "reason": reason.value,
            "message": message,
            "lastTransitionTime": since,
            "observedGeneration": generation,
        }
    )


def _placed(facts: IdepFacts) -> Verdict:
    if facts.rejection is not None:
        return "False", facts.rejection[0], facts.rejection[1]
    if facts.plan is None:
        return "Unknown", Reason.PENDING, "waiting for the first plan"
    outcome = facts.plan.outcome
    missed = [z for z in facts.plan.zones if not z.slo_met and z.demand_rps > 0]
    if outcome.unserved_rps > 1e-6:
        why = "; ".join(outcome.reasons[:3])
        return (
            "False",
            Reason.INSUFFICIENT_CAPACITY,
            f"{outcome.unserved_rps:.3g} req/s cannot be served within the SLO. {why}".strip(),
        )
    if missed:
        zones = ", ".join(sorted(z.zone for z in missed))
        return "False", Reason.SLO_UNREACHABLE, f"predicted p95 misses the SLO from {zones}"
    if outcome.floor_unmet:
        return "False", Reason.AVAILABILITY_UNMET, outcome.floor_unmet
    regions = ", ".join(outcome.regions) or "no region (no demand)"
    return "True", Reason.PLANNED, f"{outcome.replicas} replica(s) in {regions}"


def _ready(facts: IdepFacts, placed: Verdict, desired: int, ready: int) -> Verdict:
    """Ready rolls the others up: True only when the plan is whole (Placed=True) and every
    planned replica is ready; False carries the reason that holds it back. In Advise mode Ready
    means the advice is in status, whole or not."""
    if facts.rejection is not None and facts.rejection[0] == Reason.INVALID_SPEC:
        return "False", Reason.INVALID_SPEC, facts.rejection[1]
    if facts.plan is None:
        if facts.rejection is not None:
            return "False", Reason.NOT_PLACED, facts.rejection[1]
        return "Unknown", Reason.PENDING, "not reconciled yet"
    if facts.conflict is not None:
        return "False", Reason.CHILD_CONFLICT, facts.conflict
    if facts.advise:
        # The advice is the product here: a plan that falls short is still advice (Placed says
        # where it falls short); no plan at all is not.
        if placed[0] == "False" and placed[1] in (Reason.SOLVER_FAILED, Reason.NO_ELIGIBLE_REGION):
            return "False", placed[1], placed[2]
        advised = "Advise mode: the plan is in status, no workload is touched"
        return "True", Reason.ADVISED, advised + (f"; {placed[2]}" if placed[0] == "False" else "")
    if placed[0] == "False":
        return "False", placed[1], f"{placed[2]} ({ready} of {desired} replicas ready)"
    if ready < desired:
        return "False", Reason.REPLICAS_NOT_READY, f"{ready} of {desired} replicas ready"
    return "True", Reason.AVAILABLE, f"{ready} of {desired} replicas ready"


_SCALED_STATUS: Mapping[Reason, Status] = {
    Reason.ON_TARGET: "True",
    Reason.SCALING_UP: "False",
    Reason.SCALING_DOWN: "False",
    Reason.AT_MAX_REPLICAS: "False",
    Reason.SLO_BREACHED: "False",
    Reason.SLO_UNREACHABLE: "False",
    Reason.METRICS_UNAVAILABLE: "Unknown",
}


def _scaled(facts: IdepFacts) -> Verdict:
    if facts.pinned:
        return "True", Reason.PINNED, "spec.scaling.replicas pins the total replica count"
    if facts.scaling is not None:
        reason, message = facts.scaling
        return _SCALED_STATUS.get(reason, "Unknown"), reason, message
    return (
        "Unknown",
        Reason.METRICS_UNAVAILABLE,
        "sized from declared demand and the capacity model; no latency metrics used",
    )


def _signals(facts: IdepFacts) -> Verdict:
    if facts.missing_regions:
        names = ", ".join(facts.missing_regions)
        return "False", Reason.MISSING_REGION, f"no Region object for {names}: ignored"
    return facts.signals.status, facts.signals.reason, facts.signals.message


def idep_status(
    facts: IdepFacts, previous: Mapping[str, Any], now: datetime
) -> InferenceDeploymentStatus:
    """The status an InferenceDeployment should show."""
    before: Sequence[Mapping[str, Any]] = previous.get("conditions") or []
    plan = facts.plan
    placement: list[RegionPlacement] = []
    traffic: list[ZoneRoute] = []
    desired = ready = 0
    if plan is not None:
        for pool in sorted(plan.pools, key=lambda p: (p.region, p.gpu_type)):
            got = (
                0
                if facts.advise
                else min(facts.ready.get((pool.region, pool.gpu_type), 0), pool.replicas)
            )
            desired += pool.replicas
            ready += got
            placement.append(
                RegionPlacement(
                    region=pool.region,
                    gpu_type=pool.gpu_type,
                    desired_replicas=pool.replicas,
                    ready_replicas=got,
                    requests_per_second=round(pool.load_rps, 3),
                    reason=_pool_reason(pool),
                )
            )
        by_zone_region: dict[tuple[str, str], float] = {}
        for route in plan.routes:
            key = (route.zone, route.region)
            by_zone_region[key] = by_zone_region.get(key, 0.0) + route.rate_rps
        for (zone, region), rate in sorted(by_zone_region.items()):
            traffic.append(
                ZoneRoute(
                    zone=zone,
                    region=region,
                    requests_per_second=round(rate, 3),
                    rtt_ms=facts.rtt_ms.get(zone, {}).get(region, 0.0),
                )
            )
    placed = _placed(facts)
    scaled = _scaled(facts)
    autoscaler = facts.autoscaler
    if autoscaler is not None and _same_decision(autoscaler, previous.get("autoscaler")):
        autoscaler = AutoscalerStatus.model_validate(previous["autoscaler"])
        shown = next((c for c in before if c.get("type") == ConditionType.SCALED), None)
        if shown is not None and shown.get("reason") == scaled[1]:
            scaled = (scaled[0], scaled[1], str(shown.get("message", scaled[2])))
    stamp: dict[str, Any] = {"generation": facts.generation, "previous": before, "now": now}
    conds = [
        condition(ConditionType.READY, _ready(facts, placed, desired, ready), **stamp),
        condition(ConditionType.PLACED, placed, **stamp),
        condition(ConditionType.SCALED, scaled, **stamp),
        condition(ConditionType.SIGNALS_HEALTHY, _signals(facts), **stamp),
    ]
    if facts.routed is not None:
        conds.append(condition(ConditionType.ROUTED, facts.routed, **stamp))
    p95s = [
        z.predicted_p95_ttft_seconds
        for z in (plan.zones if plan else [])
        if z.predicted_p95_ttft_seconds is not None
    ]
    per_region: dict[str, int] = {}
    for item in placement:
        per_region[item.region] = per_region.get(item.region, 0) + item.desired_replicas
    return InferenceDeploymentStatus(
        observed_generation=facts.generation,
        conditions=conds,
        replicas=desired,
        ready_replicas=ready,
        selector=f"{labels.INFERENCE_DEPLOYMENT}={facts.name}",
        placement_summary=",".join(f"{r}={n}" for r, n in per_region.items()),
        placement=placement,
        traffic=traffic,
        predicted=Prediction(
            p95_seconds=round(max(p95s), 4) if p95s else None,
            g_co2_per_hour=round(plan.outcome.carbon_g_per_hour, 1),
            usd_per_hour=round(plan.outcome.usd_per_hour, 4),
        )
        if plan
        else None,
        unmet_requests_per_second=round(plan.outcome.unserved_rps, 3) if plan else 0.0,
        explanation=list(plan.outcome.reasons[:16]) if plan else [],
        last_plan_time=plan.made_at if plan else previous.get("lastPlanTime"),
        autoscaler=autoscaler,
    )


def _same_decision(new: AutoscalerStatus, shown: Mapping[str, Any] | None) -> bool:
    """Whether `shown` (status.autoscaler as written) tells the same decision as `new`, with
    observations within OBSERVATION_TOLERANCE of the new ones: then it stays as it is."""
    if not shown:
        return False
    old = AutoscalerStatus.model_validate(shown)
    if (old.desired_replicas, old.reason, old.last_scale_time) != (
        new.desired_replicas,
        new.reason,
        new.last_scale_time,
    ):
        return False
    pairs = (
        (old.observed_p95_seconds, new.observed_p95_seconds),
        (old.observed_requests_per_second, new.observed_requests_per_second),
    )
    return all(_close(a, b) for a, b in pairs)


def _close(old: float | None, new: float | None) -> bool:
    if old is None or new is None:
        return old is new
    return abs(new - old) <= OBSERVATION_TOLERANCE * max(abs(old), abs(new))


def _pool_reason(pool: PoolPlan) -> str:
    if pool.load_rps <= 0:
        return "floor: availability or minReplicas"
    utilisation = pool.load_rps / pool.capacity_rps if pool.capacity_rps > 0 else 1.0
    return f"carries {pool.load_rps:.3g} req/s at {utilisation:.0%} of its p95 capacity"


def comparable(status: Mapping[str, Any]) -> dict[str, Any]:
    """A status without timestamps that change on every plan, to decide whether to write."""
    out = {k: v for k, v in status.items() if k != "lastPlanTime"}
    out["conditions"] = sorted(
        (
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in status.get("conditions") or []
        ),
        key=lambda c: str(c.get("type")),
    )
    return out


@dataclass(frozen=True)
class RegionFacts:
    generation: int
    pools: Sequence[tuple[str, int, int, int]]  # (gpu type, nodes, allocatable, available)
    carbon: SignalStatus | None
    price: SignalStatus | None
    invalid: str | None = None
    ceded: Mapping[str, int] = field(default_factory=dict)  # other region -> GPU nodes it took
    unavailable: Unavailable | None = None  # its member cluster cannot take replicas now
    unresolved: Mapping[str, str] = field(default_factory=dict)  # signal with no value -> why


_SIGNAL_NAMES = (("carbonIntensity", "carbon intensity"), ("powerPrice", "power price"))


def _no_value_message(facts: RegionFacts) -> str:
    """Which signal has no value and no fallback, with its source's error (already free of
    answer bodies). Such a Region is left out of every plan; status is where its owner looks,
    and there is no `status.signals` entry to carry the error."""
    values = {"carbonIntensity": facts.carbon, "powerPrice": facts.price}
    parts = []
    for kind, shown in _SIGNAL_NAMES:
        if values[kind] is None:
            why = (facts.unresolved.get(kind) or "")[:1000]
            parts.append(f"{shown} has no value and no fallback" + (f": {why}" if why else ""))
    return "; ".join(parts)


def region_status(facts: RegionFacts, previous: Mapping[str, Any], now: datetime) -> RegionStatus:
    before: Sequence[Mapping[str, Any]] = previous.get("conditions") or []
    stamp: dict[str, Any] = {"generation": facts.generation, "previous": before, "now": now}
    gpus = [
        GpuInventory(gpu_type=g, nodes=n, allocatable=alloc, available=avail)
        for g, n, alloc, avail in sorted(facts.pools)
    ]
    ceded = ""
    if facts.ceded:
        others = ", ".join(f"{n} to {r}" for r, n in sorted(facts.ceded.items()))
        ceded = (
            f"GPU node(s) its nodeSelector matches count for another Region whose selector"
            f" matches them too ({others}; a node counts for the first Region by name):"
            " make the selectors disjoint"
        )
    if facts.invalid is not None:
        ready: Verdict = ("False", Reason.INVALID_SPEC, facts.invalid)
    elif facts.unavailable is not None:
        ready = ("False", facts.unavailable.reason, facts.unavailable.message)
    elif not gpus and ceded:
        ready = ("False", Reason.OVERLAPPING_SELECTOR, ceded)
    elif not gpus:
        ready = ("False", Reason.NO_GPUS, "no ready node with nvidia.com/gpu matches nodeSelector")
    else:
        total = sum(g.available for g in gpus)
        found = f"{total} GPU(s) available to gridplace"
        ready = ("True", Reason.GPUS_FOUND, f"{found}; {ceded}" if ceded else found)
    signals = [s for s in (facts.carbon, facts.price) if s is not None]
    stale = [s for s in signals if s.stale]
    if facts.invalid is not None:
        health: Verdict = ("Unknown", Reason.INVALID_SPEC, facts.invalid)
    elif len(signals) < 2:
        health = ("False", Reason.STALE, _no_value_message(facts))
    elif any(s.source == "Fallback" for s in stale):
        health = ("False", Reason.USING_FALLBACK, "; ".join(s.message for s in stale))
    elif stale:
        health = ("False", Reason.STALE, "; ".join(s.message for s in stale))
    else:
        health = ("True", Reason.FRESH, "carbon intensity and price are fresh")
    return RegionStatus(
        observed_generation=facts.generation,
        conditions=[
            condition(ConditionType.READY, ready, **stamp),
            condition(ConditionType.SIGNALS_HEALTHY, health, **stamp),
        ],
        gpus=gpus,
        gpu_summary=",".join(f"{g.gpu_type}={g.available}" for g in gpus),
        signals=RegionSignals(carbon_intensity=facts.carbon, power_price=facts.price),
        stale=bool(stale),
    )
