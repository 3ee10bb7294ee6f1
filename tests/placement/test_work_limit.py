"""The search is bounded by work, not seconds: the same inputs give the same plan on any machine,
and the wall-clock limit is only a safety net that says when it fired."""

from __future__ import annotations

import threading
import time

import pytest

from gridplace_placement.budget import Budget
from gridplace_placement.generator import random_problem
from gridplace_placement.options import SolveOptions
from gridplace_placement.plan import Plan, PlanStatus
from gridplace_placement.problem import Problem
from gridplace_placement.solver import solve


def fingerprint(plan: Plan) -> tuple[object, ...]:
    """What a plan decides: replicas per pool and the rate of every route."""
    routes = sorted(
        (r.model, r.zone, r.region, r.gpu_type, round(r.rate_rps, 9)) for r in plan.routes
    )
    return plan.status, sorted(plan.replicas().items()), routes, round(plan.objective, 9)


def run_clock_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on the clock runs 20 times faster than the real one: what a CPU 20 times
    slower would look like to the solver."""
    real = time.perf_counter
    start = real()
    monkeypatch.setattr(time, "perf_counter", lambda: start + 20 * (real() - start))


def burning(seconds: float) -> threading.Thread:
    """A thread that keeps the interpreter busy, slowing every other thread's Python code."""

    def burn() -> None:
        until = time.monotonic() + seconds
        x = 0
        while time.monotonic() < until:
            x += 1

    return threading.Thread(target=burn, daemon=True)


def solve_while_busy(problem: Problem, options: SolveOptions) -> Plan:
    """The solve run in a thread while another burns CPU beside it."""
    out: list[Plan] = []
    burner = burning(120)
    burner.start()
    worker = threading.Thread(target=lambda: out.append(solve(problem, options)))
    worker.start()
    worker.join()
    return out[0]


PROBLEM = random_problem(30, 10, gpu_types=3, zones=10, seed=0)
# The safety net far beyond what the work takes on any machine these tests run on.
NO_CLOCK = 1e6


def test_a_slowed_process_returns_the_same_plan() -> None:
    # 30 x 10 runs the dive, the Lagrangian search (its pace rule once judged in seconds) and
    # the MILP: every step whose length depended on the machine.
    options = SolveOptions(relative_gap=0.001, time_limit_seconds=NO_CLOCK)
    alone = solve(PROBLEM, options)
    busy = solve_while_busy(PROBLEM, options)
    assert not alone.time_limit_reached and not busy.time_limit_reached
    assert fingerprint(busy) == fingerprint(alone)


def test_a_clock_twenty_times_faster_returns_the_same_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    options = SolveOptions(relative_gap=0.001, time_limit_seconds=NO_CLOCK)
    reference = solve(PROBLEM, options)
    run_clock_fast(monkeypatch)
    fast = solve(PROBLEM, options)
    assert not fast.time_limit_reached
    assert fast.timing.total_seconds > 0
    assert fingerprint(fast) == fingerprint(reference)


HARD = random_problem(15, 5, gpu_types=2, zones=5, seed=1)
LITTLE_WORK = SolveOptions(
    relative_gap=0.001, work_limit=0, model_milps=2, time_limit_seconds=NO_CLOCK
)


def test_the_work_limit_not_the_clock_stops_a_search_that_needs_stopping() -> None:
    cut = solve(HARD, LITTLE_WORK)
    assert cut.status == PlanStatus.FEASIBLE and cut.gap > 0.001
    assert cut.work_limit_reached and not cut.time_limit_reached
    # Given the work, the same search certifies: the limit is what stopped it.
    full = solve(HARD, LITTLE_WORK.model_copy(update={"work_limit": 100_000, "model_milps": 1000}))
    assert full.status == PlanStatus.OPTIMAL and not full.work_limit_reached


def test_a_search_stopped_by_work_stops_at_the_same_plan_on_a_slow_machine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference = solve(HARD, LITTLE_WORK)
    run_clock_fast(monkeypatch)
    slow = solve(HARD, LITTLE_WORK)
    assert slow.work_limit_reached and not slow.time_limit_reached
    assert fingerprint(slow) == fingerprint(reference)


def test_work_stopped_plans_are_the_same_however_loaded_the_cpu() -> None:
    assert fingerprint(solve_while_busy(HARD, LITTLE_WORK)) == fingerprint(solve(HARD, LITTLE_WORK))


def test_the_safety_net_says_when_it_fired() -> None:
    # A deadline already spent: the search steps after the dive are skipped, and the plan says
    # it may differ on a faster machine.
    plan = solve(HARD, SolveOptions(relative_gap=0.0, time_limit_seconds=1e-9))
    assert plan.status != PlanStatus.NO_SOLUTION
    assert plan.time_limit_reached and not plan.work_limit_reached


def test_a_budget_tells_a_cut_by_the_clock_from_a_cut_by_work() -> None:
    now = [0.0]
    budget = Budget.starting_now(10.0, clock=lambda: now[0])
    budget.stopped(certified=False)
    assert budget.work_cut and not budget.time_cut
    now[0] = 10.0
    assert budget.expired() and budget.time_cut
    budget.stopped(certified=True)  # a certified answer is no cut
    assert budget.left() == pytest.approx(1e-3)
