"""When the safety net cuts a solve, what runs stays and new models are placed around it."""

from __future__ import annotations

import pytest

from gridplace_placement.generator import random_problem, with_running
from gridplace_placement.holding import HELD_REASON, hold_running, keep_running_plan
from gridplace_placement.options import SolveOptions
from gridplace_placement.plan import Plan
from gridplace_placement.problem import Problem
from gridplace_placement.solver import solve

MARGIN = 0.01


@pytest.fixture(scope="module")
def running() -> tuple[Problem, Plan]:
    """Ten models of which the first six run as a first plan placed them; the last four are
    new. The plan returned is that problem's own solve."""
    problem = with_running(random_problem(10, 5, gpu_types=2, zones=5, seed=4), 6)
    return problem, solve(problem, SolveOptions(time_limit_seconds=60))


def cut(plan: Plan, objective: float | None = None) -> Plan:
    """The plan as the safety net would have left it."""
    update: dict[str, object] = {"time_limit_reached": True}
    if objective is not None:
        update["objective"] = objective
    return plan.model_copy(update=update)


def test_running_models_keep_their_replicas_and_new_ones_are_placed(
    running: tuple[Problem, Plan],
) -> None:
    problem, plan = running
    held = hold_running(problem, cut(plan), MARGIN)
    assert held is not None and held.time_limit_reached
    kept = {(a.model, a.region, a.gpu_type): a.replicas for a in problem.current}
    got = held.replicas()
    assert all(got.get(key, 0) >= n for key, n in kept.items())  # nothing running stops
    assert held.stopped_replicas == 0 and held.moved_replicas == 0
    new = {m.name for m in problem.models[6:]}
    assert new <= {m for (m, _, _) in got}  # every new model got replicas
    for outcome in held.models:
        assert (outcome.reasons[0] == HELD_REASON) == (outcome.name not in new)
    capacity = {(r.name, g): n for r in problem.regions for g, n in r.gpus.items()}
    per_replica = {m.name: m for m in problem.models}
    used: dict[tuple[str, str], int] = {}
    for (m, r, g), n in got.items():
        used[(r, g)] = used.get((r, g), 0) + n * per_replica[m].profiles[g].gpus_per_replica
    assert all(n <= capacity[key] for key, n in used.items())


def test_nothing_running_leaves_nothing_to_keep() -> None:
    problem = random_problem(6, 4, gpu_types=2, zones=4, seed=1).model_copy(update={"current": ()})
    assert hold_running(problem, cut(solve(problem)), MARGIN) is None


def test_running_replicas_that_no_longer_fit_are_not_kept(running: tuple[Problem, Plan]) -> None:
    problem, plan = running
    a = problem.current[0]
    shrunk = tuple(
        r.model_copy(update={"gpus": {**r.gpus, a.gpu_type: 0}}) if r.name == a.region else r
        for r in problem.regions
    )
    lost = problem.model_copy(update={"regions": shrunk})
    assert hold_running(lost, cut(plan), MARGIN) is None


def test_a_plan_found_within_the_work_limits_is_applied(running: tuple[Problem, Plan]) -> None:
    problem, plan = running
    held = hold_running(problem, cut(plan), MARGIN)
    assert not plan.time_limit_reached
    assert not keep_running_plan(plan, held, MARGIN)


def test_a_cut_plan_gives_way_unless_better_by_the_margin(running: tuple[Problem, Plan]) -> None:
    problem, plan = running
    held = hold_running(problem, cut(plan), MARGIN)
    assert held is not None
    barely = cut(plan, held.objective * (1 - MARGIN / 2))
    clearly = cut(plan, held.objective * (1 - 2 * MARGIN))
    assert keep_running_plan(barely, held, MARGIN)
    assert keep_running_plan(cut(plan, held.objective * 1.1), held, MARGIN)
    assert not keep_running_plan(clearly, held, MARGIN)
    assert not keep_running_plan(barely, None, MARGIN)  # nothing to keep: the cut plan it is
