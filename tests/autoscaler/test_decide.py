"""The autoscaler's decisions: demand sizing, latency correction, stabilization, step, bounds."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gridplace_operator.api.conditions import Reason
from gridplace_operator.api.inference_deployment import ScalingSpec
from gridplace_operator.autoscaler import (
    MAX_LATENCY_RATIO,
    Decision,
    History,
    Inputs,
    Policy,
    Shortfall,
    decide,
    direction_changes,
    recommend,
)

POLICY = Policy(
    min_replicas=1,
    max_replicas=20,
    scale_up_window_s=30,
    scale_down_window_s=300,
    max_step=4,
    tolerance=0.1,
)
TARGET = 1.0


def inputs(now: float, current: int, p95: float | None = 1.0, **kw: object) -> Inputs:
    base = Inputs(
        now_s=now,
        target_p95_s=TARGET,
        current=current,
        ready=current,
        metrics_available=True,
        observed_p95_s=p95,
        observed_rps=10.0,
        model_replicas=None,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def run(
    steps: list[Inputs], policy: Policy = POLICY, history: History | None = None
) -> list[Decision]:
    """Decide at each step, feeding each decision's desired count into the next step."""
    history = history or History()
    out: list[Decision] = []
    current: int | None = None
    for planned in steps:
        step = planned
        if current is not None:
            step = replace(planned, current=current, ready=min(planned.ready, current))
        decision = decide(step, policy, history)
        history, current = decision.history, decision.desired
        out.append(decision)
    return out


def test_policy_from_spec_converts_percent_and_respects_the_availability_floor() -> None:
    spec = ScalingSpec(minReplicas=1, maxReplicas=6, tolerancePercent=20)  # type: ignore[call-arg]
    policy = Policy.of(spec, floor=3)
    assert (policy.min_replicas, policy.max_replicas, policy.tolerance) == (3, 6, 0.2)
    assert Policy.of(spec, floor=9).min_replicas == 6


def test_pinned_wins_over_everything() -> None:
    d = decide(inputs(0, 3, p95=5.0, pinned=7), POLICY, History())
    assert (d.desired, d.reason) == (7, Reason.PINNED)


def test_first_decision_sizes_from_the_capacity_model_at_once() -> None:
    d = decide(inputs(0, 0, p95=None, model_replicas=6), POLICY, History())
    assert (d.desired, d.reason) == (6, Reason.SCALING_UP)


def test_within_tolerance_holds_even_if_the_capacity_model_wants_fewer() -> None:
    d = decide(inputs(0, 5, p95=1.05, model_replicas=2), POLICY, History())
    assert (d.desired, d.reason) == (5, Reason.ON_TARGET)
    assert d.recommendation == 5


@pytest.mark.parametrize(
    ("p95", "ready", "expected"),
    [(1.5, 4, 6), (1.12, 10, 12), (50.0, 4, int(4 * MAX_LATENCY_RATIO))],
)
def test_breach_recommends_the_bounded_ratio_of_ready_replicas(
    p95: float, ready: int, expected: int
) -> None:
    got, why = recommend(inputs(0, ready, p95=p95), POLICY)
    assert got == expected
    assert "above target" in why


def test_scale_up_waits_for_the_up_window_then_moves_at_most_max_step() -> None:
    breach = [inputs(t, 4, p95=3.0) for t in (0, 10, 20, 29)]
    decisions = run(breach)
    assert [d.desired for d in decisions] == [4, 4, 4, 4]
    after = run([*breach, inputs(30, 4, p95=3.0)])[-1]
    # ratio bounded at 2 -> 8 wanted; +4 allowed
    assert (after.desired, after.reason) == (8, Reason.SCALING_UP)


def test_max_step_limits_a_large_scale_up() -> None:
    policy = replace(POLICY, scale_up_window_s=0, max_step=2)
    d = decide(inputs(0, 4, p95=3.0), policy, History())
    assert d.desired == 6


def test_a_breach_that_does_not_last_the_window_scales_nothing() -> None:
    decisions = run(
        [inputs(0, 4, p95=3.0), inputs(15, 4, p95=1.0), inputs(30, 4, p95=3.0), inputs(45, 4)]
    )
    assert all(d.desired == 4 for d in decisions)


def test_starting_replicas_count_as_capacity_coming() -> None:
    policy = replace(POLICY, scale_up_window_s=0)
    first = decide(inputs(0, 4, p95=2.0), policy, History())
    assert first.desired == 8
    # Four replicas start; the p95 measured on the four ready ones still breaches.
    again = decide(inputs(10, 8, p95=2.0, ready=4), policy, first.history)
    assert (again.desired, again.reason) == (8, Reason.SLO_BREACHED)  # holds, and says why
    # Once ready, a breach that persists is a new breach and scales again.
    later = decide(inputs(20, 8, p95=1.5, ready=8), policy, again.history)
    assert later.desired == 12


def test_nothing_ready_yet_holds_the_count() -> None:
    policy = replace(POLICY, scale_up_window_s=0)
    d = decide(inputs(0, 3, p95=4.0, ready=0), policy, History())
    assert d.desired == 3


def test_scale_down_only_after_the_window_of_consistently_lower_recommendations() -> None:
    low = [inputs(t, 8, p95=0.3, model_replicas=3) for t in range(0, 300, 15)]
    assert all(d.desired == 8 for d in run(low))
    d = run([*low, inputs(300, 8, p95=0.3, model_replicas=3)])[-1]
    assert (d.desired, d.reason) == (4, Reason.SCALING_DOWN)  # 8 -> 3 limited by max_step 4


def test_scale_down_takes_the_highest_recommendation_of_the_window() -> None:
    steps = [inputs(t, 8, p95=0.3, model_replicas=3) for t in range(0, 301, 30)]
    steps[3] = inputs(90, 8, p95=0.3, model_replicas=6)  # one higher recommendation in the window
    assert run(steps)[-1].desired == 6


def test_one_breach_in_the_window_resets_the_scale_down() -> None:
    steps = [inputs(t, 8, p95=0.3, model_replicas=3) for t in range(0, 301, 30)]
    steps[5] = inputs(150, 8, p95=1.02, model_replicas=3)  # within tolerance: keep 8
    assert run(steps)[-1].desired == 8


def test_without_a_demand_estimate_low_latency_never_scales_down() -> None:
    steps = [inputs(t, 6, p95=0.1) for t in range(0, 601, 30)]
    assert {d.desired for d in run(steps)} == {6}


def test_no_requests_scales_to_the_capacity_model_size_for_the_demand() -> None:
    steps = [inputs(t, 5, p95=None, observed_rps=0.0, model_replicas=1) for t in range(0, 301, 60)]
    last = run(steps)[-1]
    assert (last.desired, last.reason) == (1, Reason.SCALING_DOWN)


def test_prometheus_down_holds_and_says_so() -> None:
    d = decide(
        inputs(0, 5, p95=None, metrics_available=False, observed_rps=None),
        POLICY,
        History(),
    )
    assert (d.desired, d.reason) == (5, Reason.METRICS_UNAVAILABLE)


def test_prometheus_down_holds_whatever_the_declared_demand_asks_for() -> None:
    policy = replace(POLICY, scale_up_window_s=0, scale_down_window_s=0)
    for sized in (1, 9):  # a missing measurement is no reason to move, up or down
        down = inputs(0, 4, p95=None, metrics_available=False, model_replicas=sized)
        d = decide(replace(down, metrics_error="ConnectionError from prom:9090"), policy, History())
        assert (d.desired, d.reason) == (4, Reason.METRICS_UNAVAILABLE)
        assert d.message == (
            "holding 4: Prometheus unavailable (ConnectionError from prom:9090);"
            " no scaling without metrics"
        )
        assert d.history == History()  # nothing recommended from no data


def test_prometheus_down_still_keeps_the_count_within_the_bounds() -> None:
    d = decide(inputs(0, 25, p95=None, metrics_available=False), POLICY, History())
    assert (d.desired, d.reason) == (20, Reason.METRICS_UNAVAILABLE)
    assert d.message.startswith("25 -> 20 (the spec's bounds): Prometheus unavailable")


def test_prometheus_down_before_anything_runs_sizes_from_the_declared_demand() -> None:
    d = decide(inputs(0, 0, p95=None, metrics_available=False, model_replicas=5), POLICY, History())
    assert (d.desired, d.reason) == (5, Reason.SCALING_UP)


def test_nan_latency_is_treated_as_no_latency() -> None:
    d = decide(inputs(0, 5, p95=float("nan"), model_replicas=5), POLICY, History())
    assert (d.desired, d.reason) == (5, Reason.ON_TARGET)


def test_at_max_replicas_is_reported() -> None:
    policy = replace(POLICY, scale_up_window_s=0, max_replicas=8)
    d = decide(inputs(0, 8, p95=3.0), policy, History())
    assert (d.desired, d.reason) == (8, Reason.AT_MAX_REPLICAS)
    assert "maxReplicas 8" in d.message


def test_bounds_clamp_the_result() -> None:
    policy = replace(POLICY, scale_down_window_s=0, min_replicas=3)
    d = decide(inputs(0, 4, p95=0.1, model_replicas=1), policy, History())
    assert d.desired == 3


def test_history_keeps_only_what_the_longest_window_needs() -> None:
    history = History()
    for t in range(0, 1000, 10):
        history = decide(inputs(t, 5), POLICY, history).history
    times = [t for t, _ in history.recommendations]
    assert times[0] <= 990 - POLICY.scale_down_window_s < times[1]


def test_last_scale_time_moves_only_on_change() -> None:
    policy = replace(POLICY, scale_up_window_s=0)
    d1 = decide(inputs(5, 4, p95=3.0), policy, History())
    d2 = decide(inputs(9, d1.desired), policy, d1.history)
    assert d1.history.last_scale_s == 5
    assert d2.history.last_scale_s == 5


def test_a_step_load_scales_up_once_and_down_once_without_flapping() -> None:
    """A load that doubles for ten minutes and falls back: count the direction changes. The
    capacity model sizes the measured rate a little short (7 where 8 are needed); the latency
    correction makes up for it."""
    policy = replace(POLICY, scale_up_window_s=15, scale_down_window_s=120)
    history, current = History(), 4
    desired: list[int] = []
    for t in range(0, 1800, 15):
        heavy = 300 <= t < 900
        need = 8 if heavy else 4
        # p95 grows as the replicas fall short of what the load needs
        p95 = TARGET * 0.7 * (need / current) ** 3
        sized, rps = (7, 20.0) if heavy else (4, 10.0)
        step = inputs(t, current, p95=p95, model_replicas=sized, observed_rps=rps)
        d = decide(step, policy, history)
        history, current = d.history, d.desired
        desired.append(current)
    assert max(desired) >= 8
    assert desired[-1] == 4
    assert direction_changes(desired) == 1


@pytest.mark.parametrize(
    ("counts", "changes"),
    [([], 0), ([3, 3, 3], 0), ([1, 2, 4, 4, 2], 1), ([2, 4, 2, 4, 2], 3), ([5, 3, 3, 1], 0)],
)
def test_direction_changes(counts: list[int], changes: int) -> None:
    assert direction_changes(counts) == changes


def test_a_count_that_breached_is_not_returned_to_while_the_rate_holds() -> None:
    """The capacity model says 3, but 3 breached at this rate: scale-down stops at 4."""
    policy = replace(POLICY, scale_up_window_s=0, scale_down_window_s=0, metrics_window_s=20)
    breach = decide(inputs(100, 3, p95=2.0, model_replicas=3, observed_rps=6.0), policy, History())
    assert breach.history.shortfall == Shortfall(3, 6.0)
    assert breach.desired == 6
    calm = decide(
        inputs(200, 6, p95=0.4, model_replicas=3, observed_rps=6.0), policy, breach.history
    )
    assert (calm.desired, calm.reason) == (4, Reason.SCALING_DOWN)
    assert "3 breached at 6 req/s" in calm.message
    # the load falls well below the breach's rate: the capacity model decides again
    low = decide(inputs(300, 4, p95=0.3, model_replicas=1, observed_rps=2.0), policy, calm.history)
    assert low.history.shortfall is None
    assert low.desired == 1


def test_a_breach_measured_while_the_count_just_changed_is_not_held_against_it() -> None:
    policy = replace(POLICY, scale_up_window_s=0, metrics_window_s=60)
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
    down = decide(inputs(0, 6, p95=0.4, model_replicas=3, observed_rps=6.0), policy, History())
    assert down.desired == 3
    breach = decide(
        inputs(10, 3, p95=2.0, model_replicas=3, observed_rps=6.0), policy, down.history
    )
    assert breach.history.shortfall == Shortfall(3, 6.0)
    calm = decide(
        inputs(80, 6, p95=0.4, model_replicas=3, observed_rps=6.0), policy, breach.history
    )
    assert calm.desired == 4


def test_replicas_ready_for_only_part_of_the_window_did_not_produce_its_p95() -> None:
    """Pods ready at once (the p95 still mostly measures the old count): no second scale-up."""
    policy = replace(POLICY, scale_up_window_s=0, metrics_window_s=20)
    first = decide(inputs(0, 2, p95=2.4), policy, History())
    assert first.desired == 4
    lagging = decide(inputs(9, 4, p95=2.0), policy, first.history)  # 4 ready, window saw 2
    assert (lagging.desired, lagging.reason) == (4, Reason.SLO_BREACHED)
    later = decide(inputs(40, 4, p95=2.0), policy, lagging.history)  # 4 ready for the window
    assert later.desired == 8


def test_the_shortfall_remembers_the_arrival_rate_not_the_backlog_inflated_one() -> None:
    policy = replace(POLICY, scale_up_window_s=0, metrics_window_s=0)
    breach = decide(inputs(0, 4, p95=9.0, observed_rps=26.0, arrival_rps=14.0), policy, History())
    assert breach.history.shortfall == Shortfall(4, 14.0)


def test_a_breach_while_the_count_holds_is_never_on_target() -> None:
    # Replicas still starting: the breach is not scaled on twice, but users see it now.
    starting = decide(inputs(0, 6, p95=2.5, ready=3, model_replicas=6), POLICY, History())
    assert starting.desired == 6
    assert starting.reason == Reason.SLO_BREACHED
    assert "p95 2.5s above the target 1s" in starting.message
    # A breach the scale-up window has not confirmed yet holds the count, and says so.
    first = decide(inputs(0, 4, p95=3.0), POLICY, History())
    assert (first.desired, first.reason) == (4, Reason.SLO_BREACHED)


def test_no_count_that_meets_the_slo_is_said_once_with_its_reason_and_never_above_max() -> None:
    why = "maxReplicas 20 carry 80 req/s within the SLO on X, less than 200 req/s"
    d = decide(inputs(0, 20, p95=3.0, model_replicas=20, unreachable=why), POLICY, History())
    assert d.desired == 20
    assert d.reason == Reason.SLO_UNREACHABLE
    assert why in d.message


def test_a_measured_p95_within_the_slo_outweighs_a_model_that_says_unreachable() -> None:
    why = "maxReplicas 6 carry 14.3 req/s within the SLO on X, less than 15.6 req/s"
    d = decide(inputs(0, 6, p95=0.45, model_replicas=6, unreachable=why), POLICY, History())
    assert d.reason != Reason.SLO_UNREACHABLE
