"""The planner never applies a plan that only a slow CPU chose: when the solve's safety net cut
it, what runs stays unless the cut plan is clearly better."""

from __future__ import annotations

import logging

import pytest

from gridplace_operator.planning.planner import _unless_cut
from gridplace_placement.generator import random_problem, with_running
from gridplace_placement.holding import HELD_REASON
from gridplace_placement.solver import solve


def test_a_cut_plan_keeps_what_runs_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    problem = with_running(random_problem(8, 4, gpu_types=2, zones=4, seed=2), 5)
    runs = {m.name for m in problem.models[:5]}
    plan = solve(problem)
    assert _unless_cut(problem, plan, 0.01) is plan  # found within the work limits: applied
    # The same plan as if the clock had stopped it, and no better than keeping what runs.
    cut = plan.model_copy(update={"time_limit_reached": True, "objective": 1e9})
    with caplog.at_level(logging.WARNING):
        applied = _unless_cut(problem, cut, 0.01)
    assert applied is not cut and applied.time_limit_reached
    assert applied.moved_replicas == 0 and applied.stopped_replicas == 0
    kept = {m.name: m for m in applied.models if m.name in runs}
    assert all(m.kept_current and m.reasons[0] == HELD_REASON for m in kept.values())
    assert "time limit" in caplog.text and "running replicas stay" in caplog.text
