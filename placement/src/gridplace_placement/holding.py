"""The plan that keeps what runs, for when the solve's safety net cut its search.

A search cut by the wall clock stops wherever the machine's speed left it: on a slower or busier
CPU its plan is worse, and the next cycle's plan differs again, so applying it moves replicas for
nothing. When that happens the caller compares the cut plan with this one: every model that runs
keeps its running replicas (demand re-routed over them, one LP; replicas added only for demand
they cannot carry), and the models that do not run
yet are placed greedily (nearest eligible pools first) within the GPUs the running ones leave,
with their floors; `baselines.fill_unserved` does the greedy part.
"""

from __future__ import annotations

import numpy as np

from gridplace_placement.baselines import fill_unserved
from gridplace_placement.builder import compile_problem, gpu_use
from gridplace_placement.extract import Allocation, assemble
from gridplace_placement.plan import Plan
from gridplace_placement.problem import Problem
from gridplace_placement.routing import route_fixed

HELD_REASON = (
    "kept its running replicas: the solve reached its time limit before a plan certified "
    "better by minImprovement"
)


def hold_running(problem: Problem, cut: Plan, min_improvement: float) -> Plan | None:
    """The running replicas kept and new models placed greedily around them, as a Plan over the
    same problem (its bound is the cut plan's). None when nothing runs, or when what runs no
    longer fits (GPUs gone, a pool no longer allowed): then there is nothing safe to keep."""
    c = compile_problem(problem)
    p, k, d = c.pools, c.routes, c.demands
    n_m = len(problem.models)
    runs = np.bincount(p.model, weights=p.current, minlength=n_m) > 0
    if not runs.any():
        return None
    declared = {a.model for a in problem.current if a.replicas > 0}
    if len(declared) != int(runs.sum()):  # running replicas in pools the problem no longer has
        return None
    replicas = np.where(runs[p.model], p.current, 0.0)
    over_gpus = gpu_use(c, replicas) > c.candidates.capacity.ravel() + 1e-9
    if over_gpus.any() or (replicas > p.upper + 1e-9).any():
        return None
    routed = np.zeros(k.size)
    kept = np.flatnonzero(runs)
    pools = np.flatnonzero(runs[p.model])
    routes = np.flatnonzero(runs[k.model])
    pairs = np.flatnonzero(runs[d.model])
    if routes.size and pairs.size:
        routing = route_fixed(c, pools, routes, pairs, replicas[pools])
        if routing is None:  # GLOP failed: the running plan cannot be judged
            return None
        routed[routes] = routing[1]
    # Running models gain replicas only for demand their replicas cannot carry: starting some
    # beside the running ones is scaling, not a move.
    held = fill_unserved(c, Allocation(replicas, routed))
    plan = assemble(
        c,
        held,
        policy=cut.policy,
        solved=True,
        target_gap=0.0,  # never certified: it is kept, not found
        bound=cut.lower_bound,
        timing=cut.timing,
        held=dict.fromkeys(kept.tolist(), 0.0),
        kept_current=True,
        min_improvement=min_improvement,
    )
    models = [
        m.model_copy(update={"reasons": [HELD_REASON, *m.reasons[1:]]}) if m.kept_current else m
        for m in plan.models
    ]
    return plan.model_copy(update={"models": models, "time_limit_reached": True})


def keep_running_plan(cut: Plan, held: Plan | None, min_improvement: float) -> bool:
    """Whether the plan that keeps what runs replaces a plan the safety net cut: always, unless
    the cut plan is better by more than `min_improvement` of the held plan's objective (both
    are exact evaluations of concrete plans, so that comparison is certified). A plan found
    within the work limits is never replaced: it is the same on every machine."""
    if held is None or not cut.time_limit_reached:
        return False
    return cut.objective >= held.objective - min_improvement * abs(held.objective)
