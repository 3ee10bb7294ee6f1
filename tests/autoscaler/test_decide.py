"""The autoscaler's decisions: the rate and the bounds it hands the joint solve, the latency
correction, stabilization, step, and what a plan made from them reports."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pytest

from gridplace_operator.api.conditions import Reason
from gridplace_operator.api.inference_deployment import ScalingSpec
from gridplace_operator.autoscale.decide import (
    MAX_LATENCY_RATIO,
    Decision,
    History,
    Inputs,
    Outcome,
    ScalingPolicy,
    Shortfall,
    decide,
    direction_changes,
    latency_floor,
    outcome,
)

POLICY = ScalingPolicy(
    min_replicas=1,
    max_replicas=20,
    scale_up_window_s=30,
    scale_down_window_s=300,
    max_step=4,
    tolerance=0.1,
)
TARGET = 1.0
PER_REPLICA_RPS = 2.0  # what one replica carries in the stand-in for the joint solve


def inputs(now: float, current: int, p95: float | None = 1.0, **kw: object) -> Inputs:
    base = Inputs(
        now_s=now,
        target_p95_s=TARGET,
        current=current,
        ready=current,
        metrics_available=True,
        observed_p95_s=p95,
        observed_rps=None,
        demand_rps=None,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def solve(decision: Decision, per_replica: float = PER_REPLICA_RPS) -> int:
    """A stand-in for the joint solve of one model on one GPU type: the fewest replicas that
    carry the rate, within the decision's bounds (without a rate, what runs)."""
    rate = decision.rate_rps
    need = decision.inputs.current if rate is None else math.ceil(rate / per_replica - 1e-9)
    return max(decision.min_total, min(decision.max_total, need))


@dataclass(frozen=True)
class Step:
    decision: Decision
    result: Outcome

    @property
    def planned(self) -> int:
        return self.result.planned


def run(
    steps: list[Inputs], policy: ScalingPolicy = POLICY, history: History | None = None
) -> list[Step]:
    """Decide and plan at each step, the plan's total running at the next step."""
    history = history or History()
    out: list[Step] = []
    current: int | None = None
    for planned in steps:
        step = planned
        if current is not None:
            step = replace(planned, current=current, ready=min(planned.ready, current))
        decision = decide(step, policy, history)
        total = solve(decision)
        out.append(Step(decision, outcome(decision, total)))
        history, current = decision.history, total
    return out


def test_policy_from_spec_converts_percent_and_respects_the_availability_floor() -> None:
    spec = ScalingSpec(minReplicas=1, maxReplicas=6, tolerancePercent=20)  # type: ignore[call-arg]
    policy = ScalingPolicy.of(spec, floor=3)
    assert (policy.min_replicas, policy.max_replicas, policy.tolerance) == (3, 6, 0.2)
    assert ScalingPolicy.of(spec, floor=9).min_replicas == 6


def test_the_decision_is_a_rate_and_bounds_the_solve_chooses_the_count_within() -> None:
    d = decide(inputs(0, 4, p95=0.5, demand_rps=10.0), replace(POLICY, max_step=3), History())
    assert d.rate_rps == pytest.approx(11.0)  # the demand with the tolerance as headroom
    assert (d.min_total, d.max_total) == (4, 7)  # nothing shrinks before the window; +3 at most
    assert solve(d) == 6


def test_pinned_wins_over_everything() -> None:
    d = decide(inputs(0, 3, p95=5.0, pinned=7, demand_rps=50.0), POLICY, History())
    assert (d.min_total, d.max_total) == (7, 7)
    assert outcome(d, 7).reason == Reason.PINNED


def test_first_decision_sizes_for_the_demand_at_once() -> None:
    first = run([inputs(0, 0, p95=None, demand_rps=10.0)])[0]
    assert first.planned == 6  # 11 req/s at 2 a replica
    assert first.result.reason == Reason.ON_TARGET


def test_within_tolerance_holds_even_if_the_demand_needs_fewer() -> None:
    step = run([inputs(0, 5, p95=1.05, demand_rps=2.0)])[0]
    assert step.decision.min_total == 5
    assert (step.planned, step.result.reason) == (5, Reason.ON_TARGET)


@pytest.mark.parametrize(
    ("p95", "ready", "expected"),
    [(1.5, 4, 6), (1.12, 10, 12), (50.0, 4, int(4 * MAX_LATENCY_RATIO))],
)
def test_a_breach_floors_the_total_at_the_bounded_ratio_of_ready_replicas(
    p95: float, ready: int, expected: int
) -> None:
    got, why = latency_floor(inputs(0, ready, p95=p95), POLICY)
    assert got == expected
    assert "above target" in why


def test_a_breach_scales_up_at_once_by_at_most_max_step() -> None:
    step = run([inputs(0, 4, p95=3.0, demand_rps=2.0)])[0]
    # ratio bounded at 2 -> 8 wanted, +4 allowed; no window waited for users who wait already
    assert (step.planned, step.result.reason) == (8, Reason.SCALING_UP)
    small = run([inputs(0, 4, p95=3.0, demand_rps=2.0)], replace(POLICY, max_step=2))[0]
    assert small.planned == 6


def test_a_breach_sizes_for_the_offered_rate_backlog_included() -> None:
    before = run([inputs(-60, 4, p95=0.5, demand_rps=7.0)])[-1]
    assert before.planned == 4
    # The queue grew: offered 12 req/s (arrivals plus backlog), the plan follows at once.
    breach = decide(
        inputs(0, 4, p95=1.4, demand_rps=7.0, observed_rps=12.0),
        POLICY,
        before.decision.history,
    )
    assert breach.rate_rps == pytest.approx(13.2)
    assert solve(breach) == 7


def test_a_demand_rise_without_a_breach_waits_for_the_up_window() -> None:
    settled = run([inputs(-60, 5, p95=0.5, demand_rps=8.0)])
    assert settled[-1].planned == 5
    rising = [inputs(t, 5, p95=0.5, demand_rps=16.0) for t in (0, 10, 20)]
    steps = run(rising, history=settled[-1].decision.history)
    assert [s.planned for s in steps] == [5, 5, 5]
    steps = run(
        [*rising, inputs(30, 5, p95=0.5, demand_rps=16.0)], history=settled[-1].decision.history
    )
    assert (steps[-1].planned, steps[-1].result.reason) == (9, Reason.SCALING_UP)


def test_a_demand_spike_that_does_not_last_the_window_scales_nothing() -> None:
    settled = run([inputs(-60, 4, p95=0.5, demand_rps=6.0)])
    spikes = [
        inputs(0, 4, p95=0.5, demand_rps=20.0),
        inputs(15, 4, p95=0.5, demand_rps=6.0),
        inputs(30, 4, p95=0.5, demand_rps=20.0),
        inputs(45, 4, p95=0.5, demand_rps=6.0),
    ]
    assert {s.planned for s in run(spikes, history=settled[-1].decision.history)} == {4}


def test_a_rate_moving_within_the_tolerance_asks_for_no_new_plan() -> None:
    first = decide(inputs(0, 6, p95=0.5, demand_rps=10.0), POLICY, History())
    calmer = decide(inputs(20, 6, p95=0.5, demand_rps=9.5), POLICY, first.history)
    assert calmer.rate_rps == first.rate_rps
    assert not calmer.differs(first)
    assert calmer.differs(None)


def test_starting_replicas_count_as_capacity_coming() -> None:
    first = run([inputs(0, 4, p95=2.0)])[0]
    assert first.planned == 8
    # Four replicas start; the p95 measured on the four ready ones still breaches.
    again = decide(inputs(10, 8, p95=2.0, ready=4), POLICY, first.decision.history)
    assert solve(again) == 8
    assert outcome(again, 8).reason == Reason.SLO_BREACHED  # holds, and says why
    # Once ready, a breach that persists is a new breach and scales again.
    later = decide(inputs(20, 8, p95=1.5, ready=8), POLICY, again.history)
    assert solve(later) == 12


def test_nothing_ready_yet_holds_the_count() -> None:
    assert run([inputs(0, 3, p95=4.0, ready=0)])[0].planned == 3


def test_scale_down_only_after_the_window_of_consistently_lower_demand() -> None:
    low = [inputs(t, 8, p95=0.3, demand_rps=4.0) for t in range(0, 300, 15)]
    assert {s.planned for s in run(low)} == {8}
    last = run([*low, inputs(300, 8, p95=0.3, demand_rps=4.0)])[-1]
    # 4.4 req/s needs 3, limited by max_step 4 to 4 this time
    assert (last.planned, last.result.reason) == (4, Reason.SCALING_DOWN)


def test_scale_down_takes_the_highest_rate_of_the_window() -> None:
    policy = replace(POLICY, max_step=10)
    demand = {t: 9.0 if t <= 90 else 2.0 for t in range(0, 601, 30)}
    demand[240] = 5.0  # one higher rate on the way down
    steps = run([inputs(t, 0, p95=0.3, demand_rps=rps) for t, rps in demand.items()], policy)
    planned = {t: s.planned for t, s in zip(demand, steps, strict=True)}
    assert planned[0] == planned[390] == 5  # 9.9 req/s until the window is clear of it
    assert planned[420] == 3  # the highest of the window: 5.5 req/s
    assert planned[570] == 2


def test_one_p95_in_the_band_within_the_window_resets_the_scale_down() -> None:
    steps = [inputs(t, 8, p95=0.3, demand_rps=2.0) for t in range(0, 301, 30)]
    steps[5] = inputs(150, 8, p95=1.02, demand_rps=2.0)  # within tolerance: no fewer than 8
    assert run(steps)[-1].planned == 8


def test_no_requests_scales_down_to_the_floors_after_the_window() -> None:
    steps = [inputs(t, 5, p95=None, observed_rps=0.0, demand_rps=0.0) for t in range(0, 301, 60)]
    last = run(steps)[-1]
    assert (last.planned, last.result.reason) == (1, Reason.SCALING_DOWN)


def test_prometheus_down_holds_and_says_so() -> None:
    blind = inputs(0, 5, p95=None, metrics_available=False, demand_rps=30.0)
    d = decide(replace(blind, metrics_error="ConnectionError from prom:9090"), POLICY, History())
    assert (d.min_total, d.max_total) == (5, 5)  # a missing measurement is no reason to move
    assert d.history == History()  # nothing kept from no data
    result = outcome(d, 5)
    assert result.reason == Reason.METRICS_UNAVAILABLE
    assert result.message == (
        "holding 5: Prometheus unavailable (ConnectionError from prom:9090);"
        " no scaling without metrics"
    )


def test_prometheus_down_still_keeps_the_count_within_the_bounds() -> None:
    d = decide(inputs(0, 25, p95=None, metrics_available=False), POLICY, History())
    assert (d.min_total, d.max_total) == (20, 20)
    assert outcome(d, 20).message.startswith("25 -> 20: Prometheus unavailable")


def test_prometheus_down_before_anything_runs_sizes_from_the_declared_demand() -> None:
    step = run([inputs(0, 0, p95=None, metrics_available=False, demand_rps=9.0)])[0]
    assert step.planned == 5


def test_nan_latency_is_treated_as_no_latency() -> None:
    step = run([inputs(0, 5, p95=float("nan"), demand_rps=9.0)])[0]
    assert (step.planned, step.result.reason) == (5, Reason.ON_TARGET)


def test_at_max_replicas_is_reported() -> None:
    step = run([inputs(0, 8, p95=3.0)], replace(POLICY, max_replicas=8))[0]
    assert (step.planned, step.result.reason) == (8, Reason.AT_MAX_REPLICAS)
    assert "maxReplicas" in step.result.message


def test_a_plan_short_of_the_demand_at_max_replicas_is_reported() -> None:
    d = decide(inputs(0, 8, p95=0.5, demand_rps=40.0), replace(POLICY, max_replicas=8), History())
    assert outcome(d, 8, short=True).reason == Reason.AT_MAX_REPLICAS
    assert outcome(d, 8, short=False).reason == Reason.ON_TARGET


def test_bounds_clamp_the_result() -> None:
    policy = replace(POLICY, scale_down_window_s=0, min_replicas=3)
    assert run([inputs(0, 4, p95=0.1, demand_rps=0.5)], policy)[0].planned == 3


def test_history_keeps_only_what_the_longest_window_needs() -> None:
    history = History()
    for t in range(0, 1000, 10):
        history = decide(inputs(t, 5, demand_rps=3.0), POLICY, history).history
    for series in (history.rates, history.floors):
        times = [t for t, _ in series]
        assert times[0] <= 990 - POLICY.scale_down_window_s < times[1]


def test_a_step_load_scales_up_once_and_down_once_without_flapping() -> None:
    """A load that doubles for ten minutes and falls back: count the direction changes. The
    solve sizes the heavy load a little short (each replica carries 1.75 req/s within the SLO,
    where the plan assumes 2); the latency correction makes up for it."""
    policy = replace(POLICY, scale_up_window_s=15, scale_down_window_s=120)
    history, current = History(), 4
    totals: list[int] = []
    for t in range(0, 1800, 15):
        rps = 14.0 if 300 <= t < 900 else 7.0
        need = math.ceil(rps / 1.75)
        # p95 grows as the replicas fall short of what the load needs
        p95 = TARGET * 0.7 * (need / current) ** 3
        d = decide(inputs(t, current, p95=p95, demand_rps=rps, observed_rps=rps), policy, history)
        history, current = d.history, solve(d)
        totals.append(current)
    assert max(totals) >= 8
    assert totals[-1] == 4  # 7 req/s, which 4 carry
    assert direction_changes(totals) == 1


@pytest.mark.parametrize(
    ("counts", "changes"),
    [([], 0), ([3, 3, 3], 0), ([1, 2, 4, 4, 2], 1), ([2, 4, 2, 4, 2], 3), ([5, 3, 3, 1], 0)],
)
def test_direction_changes(counts: list[int], changes: int) -> None:
    assert direction_changes(counts) == changes


def test_a_count_that_breached_is_not_returned_to_while_the_rate_holds() -> None:
    """The plan says 3 carry 6 req/s, but 3 breached at this rate: scale-down stops at 4."""
    policy = replace(POLICY, scale_up_window_s=0, scale_down_window_s=0, metrics_window_s=20)
    breach = decide(inputs(100, 3, p95=2.0, demand_rps=5.0, observed_rps=6.0), policy, History())
    assert breach.history.shortfall == Shortfall(3, 6.0)
    assert solve(breach) == 6
    calm = decide(inputs(200, 6, p95=0.4, demand_rps=5.0, observed_rps=6.0), policy, breach.history)
    assert solve(calm) == 4
    result = outcome(calm, 4)
    assert result.reason == Reason.SCALING_DOWN
    assert "3 breached at 6 req/s" in result.message
    # the load falls well below the breach's rate: the plan decides alone again
    low = decide(inputs(300, 4, p95=0.3, demand_rps=1.0, observed_rps=1.0), policy, calm.history)
    assert low.history.shortfall is None
    assert solve(low) == 1


def test_a_breach_measured_while_the_count_just_changed_is_not_held_against_it() -> None:
    policy = replace(POLICY, metrics_window_s=60)
    first = decide(inputs(0, 2, p95=3.0, observed_rps=5.0), policy, History())
    assert first.history.shortfall == Shortfall(2, 5.0)
    # 30 s later the 4 replicas are ready, but the 60 s window still mostly saw 2
    lagging = decide(inputs(30, 4, p95=2.5, observed_rps=5.0), policy, first.history)
    assert lagging.history.shortfall == Shortfall(2, 5.0)
    # 4 ready through the whole window, 2 more starting: the 4 breached
    starting = decide(inputs(200, 6, p95=2.5, ready=4, observed_rps=5.0), policy, lagging.history)
    assert starting.history.shortfall == Shortfall(4, 5.0)


def test_a_breach_right_after_a_scale_down_is_held_against_the_lower_count() -> None:
    policy = replace(POLICY, scale_up_window_s=0, scale_down_window_s=0, metrics_window_s=60)
    down = decide(inputs(0, 6, p95=0.4, demand_rps=5.0, observed_rps=5.0), policy, History())
    assert solve(down) == 3
    breach = decide(inputs(10, 3, p95=2.0, demand_rps=5.0, observed_rps=5.0), policy, down.history)
    assert breach.history.shortfall == Shortfall(3, 5.0)
    calm = decide(inputs(80, 6, p95=0.4, demand_rps=5.0, observed_rps=5.0), policy, breach.history)
    assert solve(calm) == 4


def test_replicas_ready_for_only_part_of_the_window_did_not_produce_its_p95() -> None:
    """Pods ready at once (the p95 still mostly measures the old count): no second scale-up."""
    policy = replace(POLICY, metrics_window_s=20)
    first = decide(inputs(0, 2, p95=2.4), policy, History())
    assert solve(first) == 4
    lagging = decide(inputs(9, 4, p95=2.0), policy, first.history)  # 4 ready, window saw 2
    assert solve(lagging) == 4
    assert outcome(lagging, 4).reason == Reason.SLO_BREACHED
    later = decide(inputs(40, 4, p95=2.0), policy, lagging.history)  # 4 ready for the window
    assert solve(later) == 8


def test_the_shortfall_remembers_the_arrival_rate_not_the_backlog_inflated_one() -> None:
    breach = decide(inputs(0, 4, p95=9.0, observed_rps=26.0, arrival_rps=14.0), POLICY, History())
    assert breach.history.shortfall == Shortfall(4, 14.0)


def test_a_breach_while_the_count_holds_is_never_on_target() -> None:
    # Replicas still starting: the breach is not scaled on twice, but users see it now.
    starting = decide(inputs(0, 6, p95=2.5, ready=3, demand_rps=8.0), POLICY, History())
    assert solve(starting) == 6
    result = outcome(starting, 6)
    assert result.reason == Reason.SLO_BREACHED
    assert "p95 2.5s above the target 1s" in result.message


def test_no_count_that_meets_the_slo_is_said_once_with_its_reason_and_never_above_max() -> None:
    why = "maxReplicas 20 carry 80 req/s within the SLO on X, less than 200 req/s"
    d = decide(inputs(0, 20, p95=3.0, demand_rps=200.0, unreachable=why), POLICY, History())
    assert d.max_total == 20
    result = outcome(d, solve(d))
    assert result.planned == 20
    assert result.reason == Reason.SLO_UNREACHABLE
    assert why in result.message


def test_a_measured_p95_within_the_slo_outweighs_a_model_that_says_unreachable() -> None:
    why = "maxReplicas 6 carry 14.3 req/s within the SLO on X, less than 15.6 req/s"
    d = decide(inputs(0, 6, p95=0.45, demand_rps=15.6, unreachable=why), POLICY, History())
    assert outcome(d, 6).reason != Reason.SLO_UNREACHABLE
