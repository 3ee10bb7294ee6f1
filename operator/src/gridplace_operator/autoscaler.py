"""How many replicas an InferenceDeployment needs in total: pure decision logic.

Each decision starts from a *recommendation*:

- the capacity model's size for the demand (measured by Prometheus, else declared) at the top
  of the tolerance band, and
- a correction by the observed p95 against the SLO target: above the tolerance band the replicas
  that produced that p95 (those ready through the whole metrics window) are multiplied by
  observed/target, as Kubernetes' HPA does, with the ratio bounded because queueing latency grows
  much faster than load; inside the band the current count is kept; below it the capacity model
  decides, except that a count which breached at the current rate (a *shortfall*) never returns.

Recommendations are kept over time. As in the HPA, a scale-up takes the lowest recommendation of
the scale-up window and a scale-down the highest of the scale-down window, so the count only moves
on what held for the whole window; a window the history does not cover yet means "not yet".
Replicas that are still starting count as capacity coming: the correction is computed from the
ready replicas and compared with the desired ones, so one breach never scales up twice. Each
decision moves at most `max_step` replicas and stays within [min_replicas, max_replicas].
When Prometheus does not answer, nothing moves: the count decided last holds (within the bounds),
since a missing measurement says nothing about the load.
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
class Policy:
    """The knobs of spec.scaling, in the autoscaler's units."""

    min_replicas: int
    max_replicas: int
    scale_up_window_s: float
    scale_down_window_s: float
    max_step: int
    tolerance: float  # fraction of the target, e.g. 0.1
    metrics_window_s: float = 0.0  # the range the p95 is measured over: it lags by that much

    @classmethod
    def of(cls, spec: ScalingSpec, floor: int = 0, metrics_window_s: float = 0.0) -> Policy:
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
    current: int  # replicas decided now (ready or starting)
    ready: int  # replicas serving now
    metrics_available: bool  # Prometheus answered
    metrics_error: str = ""  # why it did not: the failure and the host, never a credential
    observed_p95_s: float | None = None  # None: no requests in the window (or no metrics)
    observed_rps: float | None = None  # offered: served plus queue growth and backlog
    arrival_rps: float | None = None  # served plus the queue's signed growth: what arrives
    model_replicas: int | None = None  # capacity-model size for the demand; None: unknown
    unreachable: str | None = None  # why no count within maxReplicas meets the SLO
    pinned: int | None = None  # spec.scaling.replicas


@dataclass(frozen=True)
class Shortfall:
    """A replica count that breached the SLO at a request rate: not enough while the rate holds."""

    replicas: int
    rps: float


@dataclass(frozen=True)
class History:
    """Recommendations of past decisions (time, replicas), oldest first, and the last shortfall."""

    recommendations: tuple[tuple[float, int], ...] = ()
    ready: tuple[tuple[float, int], ...] = ()  # ready replicas over the metrics window
    last_scale_s: float | None = None
    shortfall: Shortfall | None = None

    def add(self, now_s: float, replicas: int, keep_s: float) -> History:
        kept = _in_effect_since(self.recommendations, now_s - keep_s)
        return replace(self, recommendations=(*kept, (now_s, replicas)))


@dataclass(frozen=True)
class Decision:
    desired: int
    reason: Reason
    message: str
    recommendation: int  # before stabilization, step and bounds
    inputs: Inputs
    history: History = field(repr=False)

    @property
    def changed(self) -> bool:
        return self.desired != self.inputs.current


def decide(inputs: Inputs, policy: Policy, history: History) -> Decision:
    """The total replica count for now, and the history to pass to the next decision."""
    if inputs.pinned is not None:
        return Decision(
            inputs.pinned,
            Reason.PINNED,
            f"spec.scaling.replicas pins the total to {inputs.pinned}",
            inputs.pinned,
            inputs,
            History(last_scale_s=history.last_scale_s),
        )
    if not inputs.metrics_available and inputs.current > 0:
        return _hold_without_metrics(inputs, policy, history)
    window = policy.metrics_window_s
    ready = _in_effect_since(history.ready, inputs.now_s - window) if window > 0 else ()
    history = replace(history, ready=(*ready, (inputs.now_s, inputs.ready)))
    # The p95 of the window was produced by the replicas ready all through it.
    served = replace(inputs, ready=min(n for _, n in history.ready))
    history = replace(history, shortfall=_shortfall(served, policy, history.shortfall))
    raw, why = recommend(served, policy, history.shortfall)
    keep = max(policy.scale_up_window_s, policy.scale_down_window_s)
    history = history.add(inputs.now_s, _clamp(raw, policy), keep)
    if inputs.current == 0:  # nothing runs yet: size at once, there is nothing to destabilize
        desired = _clamp(raw, policy)
    else:
        stabilized = _stabilize(history, inputs, policy)
        step = max(-policy.max_step, min(policy.max_step, stabilized - inputs.current))
        desired = _clamp(inputs.current + step, policy)
    if desired != inputs.current:
        history = replace(history, last_scale_s=inputs.now_s)
    reason, message = _explain(inputs, policy, raw, desired, why)
    return Decision(desired, reason, message, raw, inputs, history)


def _hold_without_metrics(inputs: Inputs, policy: Policy, history: History) -> Decision:
    """The count decided last, moved only into the spec's bounds; no recommendation is kept, so
    the windows resume from what was measured."""
    desired = _clamp(inputs.current, policy)
    if desired != inputs.current:
        history = replace(history, last_scale_s=inputs.now_s)
        change = f"{inputs.current} -> {desired} (the spec's bounds)"
    else:
        change = f"holding {desired}"
    why = inputs.metrics_error or "no answer"
    message = f"{change}: Prometheus unavailable ({why}); no scaling without metrics"
    return Decision(desired, Reason.METRICS_UNAVAILABLE, message, desired, inputs, history)


def recommend(
    inputs: Inputs, policy: Policy, shortfall: Shortfall | None = None
) -> tuple[int, str]:
    """The replicas wanted right now, before stabilization, step and bounds, and why."""
    sized = inputs.model_replicas
    base = inputs.current if sized is None else sized
    sized_text = "no demand estimate" if sized is None else f"capacity model {sized}"
    p95 = inputs.observed_p95_s
    if not inputs.metrics_available or p95 is None or math.isnan(p95):
        # Without latency the demand sizing is all there is; without either, hold.
        if sized is None:
            return inputs.current, "no latency and no demand estimate: holding"
        return sized, f"{sized_text}; no latency observed"
    ratio = p95 / inputs.target_p95_s
    band = f"p95 {p95:.3g}s vs target {inputs.target_p95_s:.3g}s"
    if ratio > 1.0 + policy.tolerance:
        if inputs.ready == 0:  # nothing served the breach yet: what starts is the answer
            return max(base, inputs.current), f"{band} above target; replicas still starting"
        corrected = math.ceil(inputs.ready * min(ratio, MAX_LATENCY_RATIO))
        return max(base, corrected), f"{band} above target; {sized_text}, ratio says {corrected}"
    if ratio >= 1.0 - policy.tolerance:
        return max(base, inputs.current), f"{band} within {policy.tolerance:.0%}; {sized_text}"
    if shortfall is not None and base <= shortfall.replicas:
        # The capacity model is optimistic here: a count known to breach at this rate never comes
        # back, which is what keeps a scale-down from flapping.
        floor = shortfall.replicas + 1
        return floor, (
            f"{band} below target; {sized_text}, but {shortfall.replicas} breached at"
            f" {shortfall.rps:.3g} req/s"
        )
    return base, f"{band} below target; {sized_text}"


def _shortfall(inputs: Inputs, policy: Policy, previous: Shortfall | None) -> Shortfall | None:
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


def _stabilize(history: History, inputs: Inputs, policy: Policy) -> int:
    """Move only on what held for the whole window (lowest to go up, highest to go down)."""
    up = _window(history.recommendations, inputs.now_s, policy.scale_up_window_s)
    if up is not None and min(up) > inputs.current:
        return min(up)
    down = _window(history.recommendations, inputs.now_s, policy.scale_down_window_s)
    if down is not None and max(down) < inputs.current:
        return max(down)
    return inputs.current


def _window(
    recommendations: Sequence[tuple[float, int]], now_s: float, window_s: float
) -> list[int] | None:
    """Recommendations in effect over [now - window, now]; None if the history is shorter."""
    covering = _in_effect_since(recommendations, now_s - window_s)
    if not covering or covering[0][0] > now_s - window_s:
        return None
    return [n for _, n in covering]


def _in_effect_since(
    recommendations: Sequence[tuple[float, int]], start_s: float
) -> tuple[tuple[float, int], ...]:
    """The recommendations from `start_s` on, with the one already in effect at `start_s`."""
    first = 0
    for index, (at, _) in enumerate(recommendations):
        if at <= start_s:
            first = index
    return tuple(recommendations[first:])


def _clamp(replicas: int, policy: Policy) -> int:
    return max(policy.min_replicas, min(policy.max_replicas, replicas))


def _explain(
    inputs: Inputs, policy: Policy, raw: int, desired: int, why: str
) -> tuple[Reason, str]:
    move = f"{inputs.current} -> {desired}" if desired != inputs.current else f"holding {desired}"
    p95 = inputs.observed_p95_s
    meets = p95 is not None and p95 <= inputs.target_p95_s * (1.0 + policy.tolerance)
    if inputs.unreachable is not None and not meets:  # what users see outweighs the model
        return (
            Reason.SLO_UNREACHABLE,
            f"{move}: no replica count meets the SLO: {inputs.unreachable}",
        )
    if desired > inputs.current:
        return Reason.SCALING_UP, f"{inputs.current} -> {desired}: {why}"
    if desired < inputs.current:
        return Reason.SCALING_DOWN, f"{inputs.current} -> {desired}: {why}"
    if raw > policy.max_replicas and desired == policy.max_replicas:
        return Reason.AT_MAX_REPLICAS, f"wants {raw} > maxReplicas {policy.max_replicas}: {why}"
    if not inputs.metrics_available:
        return Reason.METRICS_UNAVAILABLE, f"holding {desired}: Prometheus unavailable; {why}"
    if p95 is not None and p95 > inputs.target_p95_s * (1.0 + policy.tolerance):
        # Users see the breach now, whatever the windows decide: never OnTarget meanwhile.
        return Reason.SLO_BREACHED, (
            f"holding {desired} ({inputs.ready} ready): p95 {p95:.3g}s above the target"
            f" {inputs.target_p95_s:.3g}s; {why}"
        )
    if raw != desired:
        return Reason.ON_TARGET, f"holding {desired} while {raw} holds for the window: {why}"
    return Reason.ON_TARGET, f"{desired} replicas: {why}"


def direction_changes(counts: Sequence[int]) -> int:
    """How often a series of replica counts turns from growing to shrinking or back (flapping)."""
    moves = [b - a for a, b in itertools.pairwise(counts) if b != a]
    return sum(1 for a, b in itertools.pairwise(moves) if (a > 0) != (b > 0))


def sizing_rate(rps: float, policy: Policy) -> float:
    """The rate the capacity model sizes for: the top of the tolerance band, so a rate that moves
    within the tolerance (or rises while replicas start) does not breach at once."""
    return rps * (1.0 + policy.tolerance)


@dataclass(frozen=True)
class Sizing:
    """The capacity model's size for a rate: never more than the limit it was asked within."""

    replicas: int
    unreachable: str | None = None  # why even `limit` replicas cannot meet the SLO


def capacity_size(
    model: PlacementModel, rps: float, gpu_types: Iterable[str], limit: int
) -> Sizing:
    """Fewest replicas that carry `rps` within the p95 budget on the slowest of `gpu_types`
    (the plan may put them on any). When no count up to `limit` does, `limit` and the reason:
    the prefill of the mean prompt alone exceeds the SLO, or `limit` replicas are too few."""
    sizes = [0]
    for gpu in gpu_types:
        if rps <= 0:
            continue
        prefill = model.prefill_seconds(gpu)
        if model.queue_wait_budget(gpu) <= 0:
            return Sizing(
                limit,
                f"the prefill of a {model.prompt_tokens:.0f}-token prompt alone takes"
                f" {prefill:.3g}s on {gpu}, more than the p95 target"
                f" {model.slo_p95_ttft_seconds:.3g}s",
            )
        replica = model.replica_model(gpu)
        if replica.capacity(limit) < rps:
            return Sizing(
                limit,
                f"maxReplicas {limit} carry {replica.capacity(limit):.3g} req/s within the SLO"
                f" on {gpu}, less than {rps:.3g} req/s",
            )
        lo, hi = 1, limit  # capacity grows with replicas: bisect for the first that suffices
        while lo < hi:
            mid = (lo + hi) // 2
            if replica.capacity(mid) >= rps:
                hi = mid
            else:
                lo = mid + 1
        sizes.append(lo)
    return Sizing(max(sizes))


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


def status_of(decision: Decision) -> AutoscalerStatus:
    """The decision as InferenceDeployment status.autoscaler."""
    inputs, last = decision.inputs, decision.history.last_scale_s
    p95, rps = inputs.observed_p95_s, inputs.observed_rps
    return AutoscalerStatus(
        desired_replicas=decision.desired,
        observed_p95_seconds=round(p95, 4) if p95 is not None and math.isfinite(p95) else None,
        observed_requests_per_second=round(rps, 3) if rps is not None else None,
        reason=decision.reason.value,
        last_scale_time=datetime.fromtimestamp(last, UTC) if last is not None else None,
    )


def history_from_status(shown: Mapping[str, Any] | None, now_s: float) -> History:
    """The memory a fresh operator (after a restart or a fail-over) starts an InferenceDeployment
    with, rebuilt from the decision its status shows: the total stays the recommendation in
    effect from now, so no scale-down happens before a full stabilization window, and the last
    scale time keeps its meaning. Without a shown decision: no memory."""
    if not shown or shown.get("desiredReplicas") is None:
        return History()
    decided = AutoscalerStatus.model_validate(shown)
    last = decided.last_scale_time.timestamp() if decided.last_scale_time else None
    return History(recommendations=((now_s, decided.desired_replicas),), last_scale_s=last)
