"""What the joint solve must carry for an InferenceDeployment: pure decision logic.

The autoscaler does not choose the replica count; the joint solve does, with the placement, on
the GPU types it picks. The autoscaler hands it two things:

- a *planning rate*: the demand (measured by Prometheus, else declared) with the tolerance as
  headroom, so a rate that moves within the tolerance (or rises while replicas start) does not
  breach at once; and
- *bounds on the total*: `spec.scaling`'s min/max and the availability floor, at most `max_step`
  replicas away from the running total, and a *latency floor*. The floor is the correction by
  observed p95: above the tolerance band the replicas that produced that p95 (those ready
  through the whole metrics window) multiplied by observed/target, as Kubernetes' HPA does, with
  the ratio bounded because queueing latency grows much faster than load; inside the band the
  running total (the capacity model may not shrink it there); below it nothing, except that a
  count which breached at the current rate (a *shortfall*) never returns.

Both are kept over time, as the HPA keeps its recommendations: the rate and the floor go up at
once on a breach (the next plan comes now, sized for the offered rate, backlog included) and
otherwise only on what held for the whole scale-up window; they go down only on what held for the
whole scale-down window. The planning rate moves down only when the demand fell out of the
tolerance band, so small moves cause no re-plan. Replicas still starting count as capacity coming:
the correction is computed from the ready replicas and compared with the planned ones, so one
breach never scales up twice. When Prometheus does not answer, nothing moves: the total planned
last holds (within the bounds), since a missing measurement says nothing about the load.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from gridplace_operator.api.conditions import Reason
from gridplace_operator.api.inference_deployment import AutoscalerStatus, ScalingSpec
from gridplace_placement.problem import Model as PlacementModel

# Largest p95 ratio one correction acts on: a saturated queue reports p95s many times the target
# while a few more replicas are enough.
MAX_LATENCY_RATIO = 2.0


@dataclass(frozen=True)
class ScalingPolicy:
    """The knobs of spec.scaling, in the autoscaler's units."""

    min_replicas: int
    max_replicas: int
    scale_up_window_s: float
    scale_down_window_s: float
    max_step: int
    tolerance: float  # fraction of the target, e.g. 0.1
    metrics_window_s: float = 0.0  # the range the p95 is measured over: it lags by that much

    @classmethod
    def of(cls, spec: ScalingSpec, floor: int = 0, metrics_window_s: float = 0.0) -> ScalingPolicy:
        """`floor`: replicas the availability rules need (regions x replicas per region)."""
        return cls(
            metrics_window_s=metrics_window_s,
            min_replicas=max(spec.min_replicas, min(floor, spec.max_replicas)),
            max_replicas=spec.max_replicas,
            scale_up_window_s=float(spec.scale_up_stabilization_seconds),
            scale_down_window_s=float(spec.scale_down_stabilization_seconds),
            max_step=spec.max_step,
            tolerance=spec.tolerance_percent / 100.0,
        )


@dataclass(frozen=True)
class Inputs:
    """What one decision is made from."""

    now_s: float  # a monotonic clock, seconds
    target_p95_s: float  # the SLO target of the metric observed
    current: int  # replicas planned now (ready or starting)
    ready: int  # replicas serving now
    metrics_available: bool  # Prometheus answered
    metrics_error: str = ""  # why it did not: the failure and the host, never a credential
    observed_p95_s: float | None = None  # None: no requests in the window (or no metrics)
    observed_rps: float | None = None  # offered: served plus queue growth and backlog
    arrival_rps: float | None = None  # served plus the queue's signed growth: what arrives
    demand_rps: float | None = None  # the rate to carry (measured, else declared); None: unknown
    unreachable: str | None = None  # why no count within maxReplicas meets the SLO
    pinned: int | None = None  # spec.scaling.replicas


@dataclass(frozen=True)
class Shortfall:
    """A replica count that breached the SLO at a request rate: not enough while the rate holds."""

    replicas: int
    rps: float


@dataclass(frozen=True)
class History:
    """Past raw rates and floors (time, value), oldest first, and what was decided from them."""

    rates: tuple[tuple[float, float], ...] = ()
    floors: tuple[tuple[float, int], ...] = ()
    ready: tuple[tuple[float, int], ...] = ()  # ready replicas over the metrics window
    rate: float | None = None  # the planning rate decided last
    floor: int = 0  # the latency floor decided last
    last_scale_s: float | None = None
    shortfall: Shortfall | None = None


@dataclass(frozen=True)
class Decision:
    """What the next plan is given: the rate to carry and the bounds of the total. The plan's
    total is known only after the solve; `outcome` then says what happened and why."""

    rate_rps: float | None  # None: no demand estimate; the plan keeps the running total
    min_total: int
    max_total: int
    why: str
    inputs: Inputs
    policy: ScalingPolicy = field(repr=False)
    history: History = field(repr=False)
    reason: Reason | None = None  # set when the decision alone decides it (pinned, blind)

    def differs(self, other: Decision | None) -> bool:
        """Whether a plan made for `other` no longer fits this decision: re-plan then."""
        if other is None:
            return True
        return (self.rate_rps, self.min_total, self.max_total) != (
            other.rate_rps,
            other.min_total,
            other.max_total,
        ) or not self.min_total <= self.inputs.current <= self.max_total


def decide(inputs: Inputs, policy: ScalingPolicy, history: History) -> Decision:
    """The rate and the bounds for the next plan, and the history to pass to the next decision."""
    if inputs.pinned is not None:
        return Decision(
            None,
            inputs.pinned,
            inputs.pinned,
            f"spec.scaling.replicas pins the total to {inputs.pinned}",
            inputs,
            policy,
            History(last_scale_s=history.last_scale_s),
            Reason.PINNED,
        )
    if not inputs.metrics_available and inputs.current > 0:
        return _hold_without_metrics(inputs, policy, history)
    if not history.floors and inputs.current > 0:
        # What runs is in effect from now (a restart without status, or the first decision):
        # nothing shrinks it before a whole scale-down window.
        history = replace(history, floors=((inputs.now_s, inputs.current),), floor=inputs.current)
    window = policy.metrics_window_s
    ready = _in_effect_since(history.ready, inputs.now_s - window) if window > 0 else ()
    history = replace(history, ready=(*ready, (inputs.now_s, inputs.ready)))
    # The p95 of the window was produced by the replicas ready all through it.
    served = replace(inputs, ready=min(n for _, n in history.ready))
    history = replace(history, shortfall=_shortfall(served, policy, history.shortfall))
    raw_floor, why = latency_floor(served, policy, history.shortfall)
    raw_rate = planning_rate(inputs, policy)
    keep = max(policy.scale_up_window_s, policy.scale_down_window_s)
    history = replace(
        history,
        floors=_keep(history.floors, inputs.now_s, raw_floor, keep),
        rates=_keep(history.rates, inputs.now_s, raw_rate, keep)
        if raw_rate is not None
        else history.rates,
    )
    breached = _breached(inputs, policy)
    if inputs.current == 0:  # nothing runs yet: size at once, there is nothing to destabilize
        floor, rate = raw_floor, raw_rate
    else:
        floor = int(_stabilize(history.floors, history.floor, inputs.now_s, policy, breached))
        rate = raw_rate
        if history.rate is not None and raw_rate is not None:
            rate = _stabilize(history.rates, history.rate, inputs.now_s, policy, breached)
            if rate < history.rate and rate * (1.0 + policy.tolerance) >= history.rate:
                rate = history.rate  # the demand is still within the band the plan was sized for
    history = replace(history, floor=floor, rate=rate)
    low, high = policy.min_replicas, policy.max_replicas
    if inputs.current > 0:
        low = max(low, inputs.current - policy.max_step)
        high = min(high, inputs.current + policy.max_step)
    low = min(max(low, floor), high)
    if rate is not None:
        why = f"{rate:.3g} req/s to carry; {why}"
    return Decision(rate, low, max(low, high), why, inputs, policy, history)


def _hold_without_metrics(inputs: Inputs, policy: ScalingPolicy, history: History) -> Decision:
    """The total planned last, moved only into the spec's bounds; nothing is kept, so the
    windows resume from what was measured."""
    held = max(policy.min_replicas, min(policy.max_replicas, inputs.current))
    failure = inputs.metrics_error or "no answer"
    why = f"Prometheus unavailable ({failure}); no scaling without metrics"
    return Decision(
        history.rate, held, held, why, inputs, policy, history, Reason.METRICS_UNAVAILABLE
    )


def planning_rate(inputs: Inputs, policy: ScalingPolicy) -> float | None:
    """The rate the plan is sized for: the demand at the top of the tolerance band."""
    known = [r for r in (inputs.demand_rps, inputs.observed_rps) if r is not None]
    if not known:
        return None
    return max(known) * (1.0 + policy.tolerance)


def latency_floor(
    inputs: Inputs, policy: ScalingPolicy, shortfall: Shortfall | None = None
) -> tuple[int, str]:
    """The fewest replicas the observed p95 says are needed, before stabilization, and why."""
    p95 = inputs.observed_p95_s
    if not inputs.metrics_available or p95 is None or math.isnan(p95):
        return 0, "no latency observed"
    ratio = p95 / inputs.target_p95_s
    band = f"p95 {p95:.3g}s vs target {inputs.target_p95_s:.3g}s"
    if ratio > 1.0 + policy.tolerance:
        if inputs.ready == 0:  # nothing served the breach yet: what starts is the answer
            return inputs.current, f"{band} above target; replicas still starting"
        corrected = math.ceil(inputs.ready * min(ratio, MAX_LATENCY_RATIO))
        return corrected, f"{band} above target; the ratio says at least {corrected}"
    if ratio >= 1.0 - policy.tolerance:
        held = inputs.current
        return held, f"{band} within {policy.tolerance:.0%}: no fewer than {held}"
    if shortfall is not None:
        # A count known to breach at this rate never comes back, whatever the capacity model
        # says: this is what keeps a scale-down from flapping.
        floor = shortfall.replicas + 1
        return floor, (
            f"{band} below target; {shortfall.replicas} breached at {shortfall.rps:.3g} req/s"
        )
    return 0, f"{band} below target"


def _breached(inputs: Inputs, policy: ScalingPolicy) -> bool:
    p95 = inputs.observed_p95_s
    return (
        inputs.metrics_available
        and p95 is not None
        and not math.isnan(p95)
        and p95 > inputs.target_p95_s * (1.0 + policy.tolerance)
    )


def _shortfall(
    inputs: Inputs, policy: ScalingPolicy, previous: Shortfall | None
) -> Shortfall | None:
    """Remember the largest count that breached, while the rate stays near the breach's rate.
    `inputs.ready` is the count ready through the whole metrics window: the one that produced
    the p95, so replicas added since are not blamed for it."""
    rps, p95 = inputs.observed_rps, inputs.observed_p95_s
    if rps is None or p95 is None or math.isnan(p95) or not inputs.metrics_available:
        return previous
    if previous is not None and rps < previous.rps * (1.0 - policy.tolerance):
        previous = None  # the load fell: the old shortfall says nothing any more
    breached = p95 > inputs.target_p95_s * (1.0 + policy.tolerance)
    if breached and inputs.ready > 0 and (previous is None or inputs.ready >= previous.replicas):
        # The arrival rate: a backlog inflates the offered rate, and draining it the served one;
        # either would forget the breach too early.
        arrivals = inputs.arrival_rps if inputs.arrival_rps is not None else rps
        return Shortfall(inputs.ready, arrivals)
    return previous


def _keep(
    series: Sequence[tuple[float, Any]], now_s: float, value: Any, keep_s: float
) -> tuple[tuple[float, Any], ...]:
    return (*_in_effect_since(series, now_s - keep_s), (now_s, value))


def _stabilize(
    series: Sequence[tuple[float, float]],
    decided: float,
    now_s: float,
    policy: ScalingPolicy,
    breached: bool,
) -> float:
    """Move only on what held for the whole window (lowest to go up, highest to go down); a
    breach goes up at once."""
    if breached and series[-1][1] > decided:
        return series[-1][1]
    up = _window(series, now_s, policy.scale_up_window_s)
    if up is not None and min(up) > decided:
        return min(up)
    down = _window(series, now_s, policy.scale_down_window_s)
    if down is not None and max(down) < decided:
        return max(down)
    return decided


def _window(
    series: Sequence[tuple[float, float]], now_s: float, window_s: float
) -> list[float] | None:
    """Values in effect over [now - window, now]; None if the history is shorter."""
    covering = _in_effect_since(series, now_s - window_s)
    if not covering or covering[0][0] > now_s - window_s:
        return None
    return [v for _, v in covering]


def _in_effect_since(
    series: Sequence[tuple[float, Any]], start_s: float
) -> tuple[tuple[float, Any], ...]:
    """The values from `start_s` on, with the one already in effect at `start_s`."""
    first = 0
    for index, (at, _) in enumerate(series):
        if at <= start_s:
            first = index
    return tuple(series[first:])


@dataclass(frozen=True)
class Outcome:
    """What a decision came to once the plan chose the total."""

    planned: int
    reason: Reason
    message: str

    def changed(self, decision: Decision) -> bool:
        return self.planned != decision.inputs.current


def outcome(decision: Decision, planned: int, short: bool = False) -> Outcome:
    """The Scaled condition for a plan of `planned` replicas made from `decision`; `short`:
    the plan leaves some of the rate unserved."""
    inputs, policy, why = decision.inputs, decision.policy, decision.why
    current = inputs.current
    move = f"{current} -> {planned}" if planned != current else f"holding {planned}"
    if decision.reason is Reason.PINNED:
        return Outcome(planned, Reason.PINNED, why)
    if decision.reason is Reason.METRICS_UNAVAILABLE:
        return Outcome(planned, Reason.METRICS_UNAVAILABLE, f"{move}: {why}")
    p95 = inputs.observed_p95_s
    meets = p95 is not None and p95 <= inputs.target_p95_s * (1.0 + policy.tolerance)
    if inputs.unreachable is not None and not meets:  # what users see outweighs the model
        return Outcome(
            planned,
            Reason.SLO_UNREACHABLE,
            f"{move}: no replica count meets the SLO: {inputs.unreachable}",
        )
    if planned > current > 0:
        return Outcome(planned, Reason.SCALING_UP, f"{move}: {why}")
    if planned < current:
        return Outcome(planned, Reason.SCALING_DOWN, f"{move}: {why}")
    at_max = planned >= policy.max_replicas
    if at_max and (short or decision.min_total > planned or _breached(inputs, policy)):
        return Outcome(
            planned, Reason.AT_MAX_REPLICAS, f"{planned} = maxReplicas and more is needed: {why}"
        )
    if _breached(inputs, policy):
        # Users see the breach now, whatever the windows decide: never OnTarget meanwhile.
        return Outcome(
            planned,
            Reason.SLO_BREACHED,
            f"{move} ({inputs.ready} ready): p95 {p95:.3g}s above the target"
            f" {inputs.target_p95_s:.3g}s; {why}",
        )
    return Outcome(planned, Reason.ON_TARGET, f"{planned} replicas: {why}")


def direction_changes(counts: Sequence[int]) -> int:
    """How often a series of replica counts turns from growing to shrinking or back (flapping)."""
    moves = [b - a for a, b in itertools.pairwise(counts) if b != a]
    return sum(1 for a, b in itertools.pairwise(moves) if (a > 0) != (b > 0))


@dataclass(frozen=True)
class Sizing:
    """The capacity model's size for a rate: never more than the limit it was asked within."""

    replicas: int
    unreachable: str | None = None  # why even `limit` replicas cannot meet the SLO


def capacity_size(model: PlacementModel, rps: float, gpu_type: str, limit: int) -> Sizing:
    """Fewest replicas of `gpu_type` that carry `rps` within the p95 budget. When no count up to
    `limit` does, `limit` and the reason: the prefill of the mean prompt alone exceeds the SLO,
    or `limit` replicas are too few."""
    if rps <= 0:
        return Sizing(0)
    if model.queue_wait_budget(gpu_type) <= 0:
        return Sizing(
            limit,
            f"the prefill of a {model.prompt_tokens:.0f}-token prompt alone takes"
            f" {model.prefill_seconds(gpu_type):.3g}s on {gpu_type}, more than the p95 target"
            f" {model.slo_p95_ttft_seconds:.3g}s",
        )
    replica = model.replica_model(gpu_type)
    if replica.capacity(limit) < rps:
        return Sizing(
            limit,
            f"maxReplicas {limit} carry {replica.capacity(limit):.3g} req/s within the SLO"
            f" on {gpu_type}, less than {rps:.3g} req/s",
        )
    lo, hi = 1, limit  # capacity grows with replicas: bisect for the first that suffices
    while lo < hi:
        mid = (lo + hi) // 2
        if replica.capacity(mid) >= rps:
            hi = mid
        else:
            lo = mid + 1
    return Sizing(lo)


def unreachable(
    model: PlacementModel, rps: float, gpu_types: Iterable[str], limit: int
) -> str | None:
    """Why no count up to `limit` of any of `gpu_types` carries `rps` within the SLO; None when
    one type can (the plan may choose it)."""
    reasons = [capacity_size(model, rps, gpu, limit).unreachable for gpu in gpu_types]
    if not reasons or any(r is None for r in reasons):
        return None
    return "; ".join(r for r in reasons if r is not None)


def user_p95(server_p95_s: Mapping[str, float], rtt_s: Mapping[str, float]) -> float | None:
    """The worst p95 users see: each region's measured p95 plus the longest RTT routed to it."""
    seen = [p95 + rtt_s.get(region, 0.0) for region, p95 in server_p95_s.items()]
    return max(seen) if seen else None


def longest_rtt_s(
    routes: Iterable[tuple[str, str]], rtt_ms: Mapping[str, Mapping[str, float]]
) -> dict[str, float]:
    """Per region, the longest RTT (seconds) of the user zones routed to it ((zone, region))."""
    out: dict[str, float] = {}
    for zone, region in routes:
        seconds = rtt_ms.get(zone, {}).get(region, 0.0) / 1000
        out[region] = max(out.get(region, 0.0), seconds)
    return out


def status_of(decision: Decision, result: Outcome) -> AutoscalerStatus:
    """The decision and the plan's total as InferenceDeployment status.autoscaler."""
    inputs, last = decision.inputs, decision.history.last_scale_s
    p95, rps = inputs.observed_p95_s, inputs.observed_rps
    rate = decision.rate_rps
    return AutoscalerStatus(
        desired_replicas=result.planned,
        planned_requests_per_second=round(rate, 3) if rate is not None else None,
        observed_p95_seconds=round(p95, 4) if p95 is not None and math.isfinite(p95) else None,
        observed_requests_per_second=round(rps, 3) if rps is not None else None,
        reason=result.reason.value,
        last_scale_time=datetime.fromtimestamp(last, UTC) if last is not None else None,
    )


def history_from_status(shown: Mapping[str, Any] | None, now_s: float) -> History:
    """The memory a fresh operator (after a restart or a fail-over) starts an InferenceDeployment
    with, rebuilt from the decision its status shows: the planned total and rate stay in effect
    from now, so nothing scales down before a full stabilization window, and the last scale time
    keeps its meaning. Without a shown decision: no memory."""
    if not shown or shown.get("desiredReplicas") is None:
        return History()
    decided = AutoscalerStatus.model_validate(shown)
    last = decided.last_scale_time.timestamp() if decided.last_scale_time else None
    rate = decided.planned_requests_per_second
    return History(
        floors=((now_s, decided.desired_replicas),),
        floor=decided.desired_replicas,
        rates=((now_s, rate),) if rate is not None else (),
        rate=rate,
        last_scale_s=last,
    )
