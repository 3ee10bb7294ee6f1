"""Baseline policies beside the optimiser, over the same compiled index sets and the same Plan.

Greedy policies keep the running replicas their GPUs and maxReplicas still hold (those of a
lost region stop), route each (model, zone) demand to SLO-eligible pools in the order of their
score, adding replicas while the region has GPUs of the type (GPU capacity, maxReplicas, SLO
eligibility and any churn budget hold), then top up minReplicas and the region floor:
- latency-nearest: lowest RTT first;
- cheapest-power: lowest electricity price first (RTT breaks ties);
- lowest-carbon: lowest gCO2 per request at full replicas first;
- even-spread: an equal share of each zone's demand to every eligible pool, rest by RTT.
`naive` is the formulation this engine started from: one pywraplp SCIP model built object by
object over every (model, zone, region, GPU type) route, without pruning or aggregation.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from ortools.linear_solver import pywraplp  # type: ignore[attr-defined]

from gridplace_placement.arrays import FloatArray
from gridplace_placement.builder import Compiled, gpu_use
from gridplace_placement.candidates import Pools
from gridplace_placement.extract import Allocation
from gridplace_placement.options import SolveOptions


def fill_unserved(c: Compiled, a: Allocation) -> Allocation:
    """Serve what a plan leaves unserved, nearest eligible pools with free GPUs first. The
    demand of models that must survive a region's loss stays as it is: the plan may leave it
    unserved for want of capacity outside a region, which the greedy does not check."""
    survive = np.array([m.availability.survive_region_loss for m in c.problem.models], dtype=bool)
    return _greedy(c, c.routes.rtt_s, even=False, start=a, held=survive)


def run_baseline(c: Compiled, policy: str, options: SolveOptions) -> tuple[Allocation, bool]:
    """Run a baseline policy; returns the assignment and whether it found one."""
    if policy == "naive":
        return naive(c, options)
    p, k = c.pools, c.routes
    price = np.array([max(r.power_price_usd_per_mwh, 0.0) for r in c.problem.regions])
    scores = {
        "latency-nearest": k.rtt_s,
        "cheapest-power": price[p.region[k.pool]] + 1e-6 * k.rtt_s,
        "lowest-carbon": (p.carbon_per_replica / p.rate + p.carbon_per_request)[k.pool]
        + 1e-6 * k.rtt_s,
        "even-spread": k.rtt_s,
    }
    if policy not in scores:
        raise ValueError(f"policy={policy!r} is not one of {sorted([*scores, 'naive'])}")
    return _greedy(c, scores[policy], even=policy == "even-spread"), True


def _greedy(
    c: Compiled,
    score: FloatArray,
    *,
    even: bool,
    start: Allocation | None = None,
    held: NDArray[np.bool_] | None = None,
) -> Allocation:
    """Greedy routing by score; from `start` (replicas and routes kept) only unserved demand
    is placed, which makes it a repair step for other plans too. The demand of `held` models
    is not routed."""
    p, k, d, prob = c.pools, c.routes, c.demands, c.problem
    # GPUs by region * len(gpu_types) + type; zero where a region has none of a type (left,
    # cordoned or never there), which running replicas may still name.
    key = p.region * len(c.gpu_types) + p.gpu
    gpus_left = c.candidates.capacity.ravel().copy()
    reps_left = np.array(
        [m.max_replicas if m.max_replicas is not None else math.inf for m in prob.models],
        dtype=np.float64,
    )
    if start is None:
        # Running replicas stay as far as their GPUs and maxReplicas still hold them: those
        # in a lost region or beyond a lowered maximum stop, and their demand goes elsewhere.
        n = np.zeros(p.size)
        for q in np.flatnonzero(p.current > 0).tolist():
            room = min(gpus_left[key[q]] // p.gpus_per_replica[q], reps_left[p.model[q]])
            n[q] = max(min(p.current[q], p.upper[q], room), 0.0)
            gpus_left[key[q]] -= n[q] * p.gpus_per_replica[q]
            reps_left[p.model[q]] -= n[q]
    else:
        n = np.maximum(start.replicas, 0.0)
        gpus_left -= gpu_use(c, n)
        reps_left -= np.bincount(p.model, weights=n, minlength=len(prob.models))
    routed = np.zeros(k.size) if start is None else start.routed.copy()
    load = np.bincount(k.pool, weights=routed, minlength=p.size).astype(np.float64)

    def headroom(q: int) -> float:
        gpr = float(p.gpus_per_replica[q])
        addable = min(gpus_left[key[q]] // gpr, p.upper[q] - n[q], reps_left[p.model[q]])
        return float((n[q] + max(addable, 0.0)) * p.rate[q] - load[q])

    def place(route: int, rate: float) -> float:
        q = int(k.pool[route])
        take = min(rate, headroom(q))
        if take <= 1e-12:
            return 0.0
        load[q] += take
        routed[route] += take
        need = math.ceil(load[q] / p.rate[q] - 1e-9)
        add_replicas(q, need - n[q])
        return take

    def add_replicas(q: int, count: float) -> None:
        if count > 0:
            n[q] += count
            gpus_left[key[q]] -= count * p.gpus_per_replica[q]
            reps_left[p.model[q]] -= count

    width = int(max(k.zone.max(initial=0), d.zone.max(initial=0))) + 1
    route_key = k.model * width + k.zone
    order = np.lexsort((score, route_key))
    bounds = np.searchsorted(route_key[order], d.model * width + d.zone, side="left")
    ends = np.searchsorted(route_key[order], d.model * width + d.zone, side="right")
    for j in range(d.rate.size):
        if held is not None and held[d.model[j]]:
            continue
        mine = order[bounds[j] : ends[j]]
        remaining = float(d.rate[j] - routed[mine].sum())
        if remaining <= 1e-9:
            continue
        if even and mine.size:
            share = remaining / mine.size
            for route in mine.tolist():
                remaining -= place(route, share)
        for route in mine.tolist():
            if remaining <= 1e-12:
                break
            remaining -= place(route, remaining)

    # Floors: cheapest-scoring pools first, in regions the model does not use yet.
    pool_score = np.full(p.size, np.inf)
    np.minimum.at(pool_score, k.pool, score)
    for i, model in enumerate(prob.models):
        mine = np.flatnonzero(p.model == i)
        mine = mine[np.argsort(pool_score[mine], kind="stable")]
        floor = model.availability
        per_region = {
            int(r): n[(p.model == i) & (p.region == r)].sum() for r in set(p.region[mine])
        }
        have = sum(1 for v in per_region.values() if v >= floor.per_region_min)
        for q in mine.tolist():
            if have >= floor.min_regions:
                break
            r = int(p.region[q])
            missing = floor.per_region_min - per_region.get(r, 0.0)
            if missing > 0 and _fits(gpus_left[key[q]], p, q, missing, reps_left):
                add_replicas(q, missing)
                per_region[r] = per_region.get(r, 0.0) + missing
                have += 1
        short = model.min_replicas - n[mine].sum()
        for q in mine.tolist():
            if short <= 0:
                break
            take = min(short, p.upper[q] - n[q])
            while take > 0 and not _fits(gpus_left[key[q]], p, q, take, reps_left):
                take -= 1
            if take > 0:
                add_replicas(q, take)
                short -= take
    return Allocation(n, routed)


def _fits(gpus_left: float, p: Pools, q: int, count: float, reps_left: FloatArray) -> bool:
    """Whether `count` more replicas of pool q fit its GPUs left there and its model's maximum."""
    return bool(gpus_left >= count * p.gpus_per_replica[q] and reps_left[p.model[q]] >= count)


def naive(c: Compiled, options: SolveOptions) -> tuple[Allocation, bool]:
    """The object-by-object MILP over every route, no pruning (same objective and constraints)."""
    prob, p, k, d = c.problem, c.pools, c.routes, c.demands
    models, regions = prob.models, prob.regions
    solver = pywraplp.Solver.CreateSolver("SCIP")
    solver.SetTimeLimit(int(options.time_limit_seconds * 1000))
    solver.SetNumThreads(1)
    solver.SetSolverSpecificParametersAsString(f"limits/gap = {options.relative_gap}\n")
    pool_of = {(int(p.model[q]), int(p.region[q]), int(p.gpu[q])): q for q in range(p.size)}
    route_of = {(int(k.model[i]), int(k.zone[i]), int(k.pool[i])): i for i in range(k.size)}
    n: dict[tuple[int, int, int], pywraplp.Variable] = {}
    inflow: dict[tuple[int, int, int], list[pywraplp.Variable]] = {}
    objective = solver.Objective()
    for m, model in enumerate(models):
        for r in range(len(regions)):
            for gname in model.gpu_types:
                g = c.gpu_types.index(gname)
                q = pool_of.get((m, r, g))
                var = solver.IntVar(0, float(p.upper[q]) if q is not None else 0.0, "")
                n[(m, r, g)] = var
                if q is not None:
                    objective.SetCoefficient(var, float(p.cost_per_replica[q]))
    x: dict[tuple[int, int, int, int], pywraplp.Variable] = {}
    route_index: dict[tuple[int, int, int, int], int] = {}
    for j in range(d.rate.size):
        m, u = int(d.model[j]), int(d.zone[j])
        served = []
        for r in range(len(regions)):
            for gname in models[m].gpu_types:
                g = c.gpu_types.index(gname)
                q = pool_of.get((m, r, g))
                i = route_of.get((m, u, q)) if q is not None else None
                var = solver.NumVar(0, solver.infinity() if i is not None else 0.0, "")
                x[(m, u, r, g)] = var
                inflow.setdefault((m, r, g), []).append(var)
                served.append(var)
                if i is not None:
                    objective.SetCoefficient(var, float(k.cost[i]))
                    route_index[(m, u, r, g)] = i
        s = solver.NumVar(0, float(d.rate[j]), "")
        objective.SetCoefficient(s, float(d.penalty[j]))
        solver.Add(sum(served) + s == float(d.rate[j]))
    rate = {key: float(p.rate[q]) for key, q in pool_of.items()}
    by_pool_type: dict[tuple[int, int], list[pywraplp.LinearExpr]] = {}
    by_model_region: dict[tuple[int, int], list[pywraplp.Variable]] = {}
    for (m, r, g), var in n.items():
        solver.Add(sum(inflow.get((m, r, g), [])) <= rate.get((m, r, g), 0.0) * var)
        gpr = models[m].profiles[c.gpu_types[g]].gpus_per_replica
        by_pool_type.setdefault((r, g), []).append(var * gpr)
        by_model_region.setdefault((m, r), []).append(var)
    for (r, g), terms in by_pool_type.items():  # every pair, with none of a type counting as 0
        solver.Add(sum(terms) <= float(c.candidates.capacity[r, g]))
    stopped_by_model: dict[int, list[pywraplp.Variable]] = {}
    for m, model in enumerate(models):
        mine = [var for r in range(len(regions)) for var in by_model_region.get((m, r), [])]
        if model.max_replicas is not None:
            solver.Add(sum(mine) <= model.max_replicas)
        if model.min_replicas:
            short = solver.NumVar(0, solver.infinity(), "")
            objective.SetCoefficient(short, c.floor_penalty)
            solver.Add(sum(mine) + short >= model.min_replicas)
        floor = model.availability
        if floor.min_regions:
            used = []
            for r in range(len(regions)):
                z = solver.BoolVar("")
                solver.Add(sum(by_model_region.get((m, r), [])) >= floor.per_region_min * z)
                used.append(z)
            short = solver.NumVar(0, solver.infinity(), "")
            objective.SetCoefficient(short, c.floor_penalty)
            solver.Add(sum(used) + short >= floor.min_regions)
        if floor.survive_region_loss:
            served_m = sum(v for key, vs in inflow.items() if key[0] == m for v in vs)
            mine_keys = [key for key in n if key[0] == m]
            for r in range(len(regions)):
                solver.Add(
                    sum(rate.get(key, 0.0) * n[key] for key in mine_keys if key[1] != r) >= served_m
                )
    for q in np.flatnonzero(p.current > 0).tolist():
        key = (int(p.model[q]), int(p.region[q]), int(p.gpu[q]))
        stop = solver.NumVar(0, float(p.current[q]), "")
        solver.Add(stop >= float(p.current[q]) - n[key])
        stopped_by_model.setdefault(key[0], []).append(stop)
    moved_by_model: dict[int, pywraplp.Variable] = {}
    for m, stops in stopped_by_model.items():  # the penalty and the budgets count moves only
        moved = solver.NumVar(0, solver.infinity(), "")
        objective.SetCoefficient(moved, prob.churn_penalty)
        solver.Add(sum(stops) - moved <= float(c.candidates.free_stops[m]))
        running = float(p.current[p.model == m].sum())
        mine = [var for key, var in n.items() if key[0] == m]
        started = sum(mine) - running + sum(stops)
        solver.Add(started - moved <= float(c.candidates.free_starts[m]))
        moved_by_model[m] = moved
    budgets = [(prob.churn_budget, list(moved_by_model.values()))] + [
        (model.churn_budget, [moved_by_model[m]] if m in moved_by_model else [])
        for m, model in enumerate(models)
    ]
    for budget, moves in budgets:
        if budget is not None and moves:
            over = solver.NumVar(0, solver.infinity(), "")
            objective.SetCoefficient(over, c.floor_penalty)
            solver.Add(sum(moves) - over <= budget)
    objective.SetMinimization()
    status = solver.Solve()
    if status not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        return Allocation(np.zeros(p.size), np.zeros(k.size)), False
    replicas = np.zeros(p.size)
    for pool_key, q in pool_of.items():
        replicas[q] = round(n[pool_key].solution_value())
    routed = np.zeros(k.size)
    for route_key, i in route_index.items():
        routed[i] = max(x[route_key].solution_value(), 0.0)
    return Allocation(replicas, routed), True
