"""Solve a placement problem: the joint MILP, its LP bound, and the baselines beside it."""

from __future__ import annotations

import math
import time

import numpy as np
from numpy.typing import NDArray
from ortools.linear_solver.python import model_builder_helper as mbh

from gridplace_placement.arrays import FloatArray, IntArray, group_by
from gridplace_placement.baselines import fill_unserved, run_baseline
from gridplace_placement.budget import Budget
from gridplace_placement.builder import Compiled, restrict
from gridplace_placement.candidates import Candidates, candidates
from gridplace_placement.extract import Allocation, assemble, evaluate
from gridplace_placement.formulation import Columns, mir, model_cut_terms
from gridplace_placement.hysteresis import Held, keep_current
from gridplace_placement.lagrangian import LpSolution, price_models
from gridplace_placement.milp import Milp
from gridplace_placement.options import MODEL_MILPS, WORK_LIMIT, SolveOptions
from gridplace_placement.packing import place, size_class
from gridplace_placement.plan import Plan, PlanStatus, Timing
from gridplace_placement.policies import POLICIES, Policy
from gridplace_placement.problem import Problem
from gridplace_placement.routing import glop, proven_bound, route_fixed, sparse_model

ENTERING_PER_ZONE = 16  # routes per (model, zone) priced into the LP per round
BOUND_TOLERANCE = 1e-3  # stop pricing when the bound can fall by less than this share
# Below this many candidate routes the full LP is solved at once: faster than pricing rounds
# (measured at 100 x 20 x 4 x 20, 17k routes: 0.07 s against 0.10-0.15 s).
FULL_LP_ROUTES = 30_000

# The options and the policy names live in their own modules; callers import them from here too.
__all__ = [
    "MODEL_MILPS",
    "POLICIES",
    "WORK_LIMIT",
    "Policy",
    "SolveOptions",
    "column_generation",
    "consolidate",
    "fit_to_nodes",
    "lp_bound",
    "lp_relaxation",
    "round_and_route",
    "solve",
    "transfer",
]


def solve(
    problem: Problem, options: SolveOptions | None = None, policy: Policy = "gridplace"
) -> Plan:
    """Plan replicas and routes for every model at once. Never raises for a shortage: unmet
    demand, floors or churn budget show up in the plan's status, outcomes and reasons."""
    options = options or SolveOptions()
    t0 = time.perf_counter()
    budget = Budget(deadline=t0 + options.time_limit_seconds)
    cands = candidates(problem)
    t1 = time.perf_counter()
    # Pricing further than a quarter of the target gap would sharpen a bound that certifies
    # the plan just as well without.
    tolerance = max(BOUND_TOLERANCE, options.relative_gap / 4)
    lp = column_generation(
        cands, options.routes_per_zone, full_below=FULL_LP_ROUTES, tolerance=tolerance
    )
    compiled, bound = lp.compiled, lp.bound
    t2 = time.perf_counter()
    held = Held(Allocation(np.zeros(0), np.zeros(0)), {}, kept_all=False)
    if policy == "gridplace":
        compiled, assignment, mip_bound = _integer_plan(lp, options, budget)
        solved = True
        bound = max(bound, mip_bound)
        held = keep_current(compiled, assignment, options.min_improvement)
        assignment = held.assignment
    else:
        compiled = restrict(cands, np.ones(cands.routes.size, dtype=bool))
        assignment, solved = run_baseline(compiled, policy, options)
    assignment = fit_to_nodes(compiled, assignment)
    t3 = time.perf_counter()
    timing = Timing(
        compile_seconds=t1 - t0,
        bound_seconds=t2 - t1,
        solve_seconds=t3 - t2,
        extract_seconds=0.0,
        total_seconds=0.0,
    )
    plan = assemble(
        compiled,
        assignment,
        policy=policy,
        solved=solved,
        target_gap=options.relative_gap,
        bound=bound,
        timing=timing,
        held=held.improvement,
        kept_current=held.kept_all,
        min_improvement=options.min_improvement,
    )
    t4 = time.perf_counter()
    final = timing.model_copy(update={"extract_seconds": t4 - t3, "total_seconds": t4 - t0})
    certified = plan.status == PlanStatus.OPTIMAL
    return plan.model_copy(
        update={
            "timing": final,
            "time_limit_reached": budget.time_cut and not certified,
            "work_limit_reached": budget.work_cut and not budget.time_cut and not certified,
        }
    )


def fit_to_nodes(c: Compiled, a: Allocation) -> Allocation:
    """The plan with only the replicas that find a node by first-fit-decreasing (packing.py),
    their routes cut to what is left. The MILP's packing rows already hold for its own plans;
    this is the net under the steps that round, keep or combine plans on pooled GPUs (diving,
    hysteresis, the Lagrangian's model MILPs, the baselines). Among replicas of one class,
    those of running pools keep their nodes first, then the busiest pools'."""
    if not c.candidates.node_free or a.replicas.size == 0:
        return a
    p = c.pools
    key = p.region * len(c.gpu_types) + p.gpu
    cls = size_class(p.gpus_per_replica)
    replicas = a.replicas.copy()
    load = np.bincount(c.routes.pool, weights=a.routed, minlength=p.size)
    for k, free in c.candidates.node_free.items():
        mine = np.flatnonzero((key == k) & (replicas > 0))
        mine = mine[np.lexsort((-load[mine], -p.current[mine]))]
        owner = np.repeat(mine, replicas[mine].astype(np.int64))
        placed = np.array(place(free.tolist(), cls[owner].tolist()), dtype=bool)
        replicas[mine] = np.bincount(owner[placed], minlength=p.size)[mine]
    if np.array_equal(replicas, a.replicas):
        return a
    share = np.where(load > replicas * p.rate, replicas * p.rate / np.maximum(load, 1e-12), 1.0)
    return Allocation(replicas, a.routed * share[c.routes.pool])


def lp_bound(
    cands: Candidates, routes_per_zone: int = 16, max_rounds: int = 30
) -> tuple[Compiled, float, FloatArray]:
    """LP relaxation (GLOP) by column generation: a certified lower bound for every plan.

    Starts from the cheapest routes of each (model, zone), then prices every other candidate
    route (with the pool it would open) against the duals and adds the most negative ones. It
    stops when none is left (the restricted LP's optimum is the full LP's) or when the full LP
    provably lies within 0.1% below it; the bound returned subtracts that remaining amount, so
    it is valid either way. The restricted model is returned for the integer search.
    """
    lp = column_generation(cands, routes_per_zone, max_rounds)
    return lp.compiled, lp.bound, lp.values


def column_generation(
    cands: Candidates,
    routes_per_zone: int = 16,
    max_rounds: int = 30,
    full_below: int = 0,
    tolerance: float = BOUND_TOLERANCE,
) -> LpSolution:
    """`lp_bound` with the LP's duals and each model's pricing shortfall, stopping when the
    full LP can lie at most `tolerance` (a share) below this one. With fewer than `full_below`
    candidate routes, the full LP is solved at once instead."""
    n_m = len(cands.problem.models)
    mask = _cheapest_routes(cands, routes_per_zone)
    if cands.routes.size < full_below:
        max_rounds = 0
    for _ in range(max_rounds):
        compiled = restrict(cands, mask)
        if compiled.milp.num_vars == 0:
            return LpSolution(compiled, 0.0, np.zeros(0), np.zeros(0), np.zeros(n_m))
        objective, values, duals = _solve_lp_with_duals(compiled.milp)
        entering, shortfall = _entering_routes(compiled, duals)
        entering &= ~mask
        if not entering.any() or -shortfall.sum() <= tolerance * abs(objective):
            short = np.minimum(shortfall, 0.0)  # each model's share is <= 0 already
            return LpSolution(compiled, objective + float(short.sum()), values, duals, short)
        mask |= entering
    compiled = restrict(cands, np.ones(cands.routes.size, dtype=bool))
    objective, values, duals = _solve_lp_with_duals(compiled.milp)
    return LpSolution(compiled, objective, values, duals, np.zeros(n_m))


def lp_relaxation(c: Compiled) -> tuple[float, FloatArray]:
    """Optimum and solution of the LP relaxation (GLOP) of one compiled model, as it is."""
    if c.milp.num_vars == 0:
        return 0.0, np.zeros(0)
    return _solve_lp(c.milp)


def _cheapest_routes(cands: Candidates, k: int) -> NDArray[np.bool_]:
    r, p = cands.routes, cands.pools
    unit = r.cost + (p.cost_per_replica / p.rate)[r.pool]
    order = np.lexsort((unit, r.pair))
    first = np.searchsorted(r.pair[order], r.pair[order], side="left")
    rank = np.empty(r.size, dtype=np.int64)
    rank[order] = np.arange(r.size) - first
    return rank < k


def _entering_routes(
    c: Compiled, y: FloatArray, tol: float = 1e-9
) -> tuple[NDArray[np.bool_], FloatArray]:
    """Candidate routes with negative reduced cost c - y.A (GLOP's dual sign convention), and
    per model the most the LP could still fall: each route carries at most its zone's demand and
    a new pool at most `upper` replicas, so the full LP is at least this LP + sum over zones of
    demand x the zone's most negative reduced cost + sum over new pools of upper x their
    replicas' negative reduced cost."""
    cands, cols = c.candidates, c.columns
    r, p = cands.routes, cands.pools
    local = np.full(p.size, -1, dtype=np.int64)
    local[c.pool_ids] = np.arange(c.pool_ids.size)

    def dual(rows: IntArray) -> FloatArray:
        return np.where(rows >= 0, y[np.maximum(rows, 0)], 0.0)

    lam = y[cols.demand_rows[r.pair]]
    # A pool's replicas count in the rounding cut of every zone that reaches it.
    d = c.demands
    ratio = p.rate[r.pool] / np.where(d.best_rate > 0, d.best_rate, 1.0)[r.pair]
    zone_cuts = np.bincount(
        r.pool,
        weights=mir(ratio, cols.zone_cut_frac[r.pair]) * dual(cols.zone_cut_rows[r.pair]),
        minlength=p.size,
    )
    served = dual(cols.served_rows[r.model])
    q = local[r.pool]
    inside = q >= 0
    rc = np.empty(r.size)
    rc[inside] = r.cost[inside] - lam[inside] - y[cols.pool_rows[q[inside]]] - served[inside]
    # A pool not in the model comes with its capacity row, whose dual we may choose: with
    # max(per_replica, 0) / rate, a route into it costs its replicas' share and the replicas
    # themselves keep min(per_replica, 0), at most `upper` of them.
    new = np.flatnonzero(local < 0)
    key = p.region[new] * len(cands.gpu_types) + p.gpu[new]
    model = p.model[new]
    item, cut, coef = model_cut_terms(cands.model_cuts, model, p.rate[new], cols.cut_frac)
    model_cuts = np.bincount(item, weights=coef * dual(cols.cut_rows[cut]), minlength=new.size)
    per_replica = np.zeros(p.size)
    per_replica[new] = (
        p.cost_per_replica[new]
        - p.gpus_per_replica[new] * dual(cols.gpu_rows[key])
        - dual(cols.max_rows[model])
        - model_cuts
        - dual(cols.move_rows[model])
        - zone_cuts[new]
        - _slot_prices(cols, y, key, size_class(p.gpus_per_replica[new]))
    )
    out = ~inside
    pool = r.pool[out]
    rc[out] = r.cost[out] - lam[out] + np.maximum(per_replica[pool], 0.0) / p.rate[pool]
    scale = max(float(np.abs(r.cost).max(initial=0.0)), 1.0)
    negative = np.flatnonzero(rc < -tol * scale)
    # Only the few most negative per (model, zone) enter each round, so the LP stays small.
    order = negative[np.lexsort((rc[negative], r.pair[negative]))]
    first = np.searchsorted(r.pair[order], r.pair[order], side="left")
    entering = np.zeros(r.size, dtype=bool)
    entering[order[np.arange(order.size) - first < ENTERING_PER_ZONE]] = True
    # Pools whose replicas pay for themselves enter with their cheapest route, the few that
    # pay most per model.
    paying = np.flatnonzero(out & (per_replica[r.pool] < -tol * scale))
    paying = paying[np.lexsort((rc[paying], r.pool[paying]))]
    paying = paying[_first_of_each(r.pool[paying])]  # the cheapest route into each pool
    owner = p.model[r.pool[paying]]
    paying = paying[np.lexsort((per_replica[r.pool[paying]], owner))]
    owner = p.model[r.pool[paying]]
    rank = np.arange(paying.size) - np.searchsorted(owner, owner, side="left")
    entering[paying[rank < ENTERING_PER_ZONE]] = True
    worst = np.zeros(c.demands.rate.size)
    np.minimum.at(worst, r.pair[negative], rc[negative])
    n_m = len(cands.problem.models)
    routing = np.bincount(d.model, weights=d.rate * worst, minlength=n_m)
    opening = np.bincount(p.model, weights=np.minimum(per_replica, 0.0) * p.upper, minlength=n_m)
    shortfall: FloatArray = (routing + opening).astype(np.float64)
    return entering, shortfall


def _slot_prices(cols: Columns, y: FloatArray, key: IntArray, cls: IntArray) -> FloatArray:
    """What the packing rows charge one new replica of class `cls` in pool `key`: c / s times
    the dual of each row of its key with class s <= c. A row of a class no pool has yet is
    implied by the larger classes' rows (slots divide), so its missing dual is 0."""
    price = np.zeros(key.size)
    for row, k, s in zip(
        cols.slot_rows.tolist(), cols.slot_key.tolist(), cols.slot_size.tolist(), strict=True
    ):
        sel = (key == k) & (cls >= s)
        price[sel] += cls[sel] / s * y[row]
    return price


def _first_of_each(sorted_keys: IntArray) -> NDArray[np.bool_]:
    """True at the first entry of each run of equal keys."""
    first: NDArray[np.bool_] = np.searchsorted(sorted_keys, sorted_keys, side="left") == np.arange(
        sorted_keys.size
    )
    return first


def _integer_plan(
    lp: LpSolution, options: SolveOptions, budget: Budget
) -> tuple[Compiled, Allocation, float]:
    """The integer plan: LP diving over the LP's neighbourhood first; then, while the plan is
    not certified within `relative_gap`, the models' own MILPs at the LP's GPU prices
    (`lagrangian`: largest gap first, each lifting the bound, at most `model_milps`), then the
    MILP solver on the LP's support and on the whole neighbourhood, each within `work_limit`
    nodes. Every step is bounded by work; the budget's deadline only skips what is left.
    Returns the model the plan is over, the plan and the best bound found beside the LP's (-inf
    if none): the Lagrangian one, or the MILP solver's own where its search covered every
    candidate route."""
    compiled, bound = lp.compiled, lp.bound
    if compiled.milp.num_vars == 0:  # nothing to place: no demand and no floors
        return compiled, Allocation(np.zeros(0), np.zeros(0)), 0.0
    cands = compiled.candidates
    if options.exact:
        pools = np.ones(cands.pools.size, dtype=bool)
    else:
        pools = _neighbourhood(cands, options.neighbourhood)
        # Every pool the column generation priced in; the pools it uses if it priced in all.
        full = compiled.route_ids.size == cands.routes.size
        used = lp.values[compiled.columns.replicas] > 1e-9 if full else slice(None)
        pools[compiled.pool_ids[used]] = True
    c = restrict(cands, pools[cands.routes.pool])
    # Dive over the neighbourhood from the column generation's LP solution (optimal for the
    # full LP), carried over: the neighbourhood's own LP would only find it again.
    cols = compiled.columns
    lp_plan = Allocation(lp.values[cols.replicas], lp.values[cols.routed])
    start = transfer(lp_plan, compiled, c)
    values = np.zeros(c.milp.num_vars)
    values[c.columns.replicas], values[c.columns.routed] = start.replicas, start.routed
    best = round_and_route(c, values)
    if not budget.expired():  # one small LP per model and try: bounded by its two passes
        best = consolidate(c, best)
    if evaluate(c, best).unserved.any():  # rounding lost capacity the LP had: repair greedily
        best = _cheaper(c, fill_unserved(c, best), best)
    home, found_bound = c, -math.inf

    def milp_over(search: Compiled) -> None:
        """The MILP solver over `search`, from the best plan so far, if the plan is not yet
        certified (and the safety net has not fired); keeps what it finds if cheaper."""
        nonlocal best, bound, found_bound
        if _certified(home, best, bound, options.relative_gap) or budget.expired():
            return
        found, solved, mip_bound = _solve_milp(
            search, options, transfer(best, home, search), budget
        )
        # The MILP's own bound counts only over every candidate route (and so every pool): it
        # is often far above the LP's when small models must round a fraction of a replica up.
        if search.route_ids.size == cands.routes.size:
            found_bound = max(found_bound, mip_bound)
            bound = max(bound, found_bound)
        if solved:
            found = transfer(found, search, home)
            best = _cheaper(home, found, best)

    if not _certified(home, best, bound, options.relative_gap) and not budget.expired():
        lagrangian = price_models(lp)
        if lagrangian is not None:
            best = lagrangian.search(
                transfer(best, home, lagrangian.full),
                options.relative_gap,
                bound,
                budget,
                max_models=options.model_milps,
                max_nodes=options.work_limit,
            )
            home = lagrangian.full
            found_bound = max(found_bound, lagrangian.bound)
            bound = max(bound, found_bound)
    if c.route_ids.size < cands.routes.size:
        # The pools the LP or the plan use (a few hundred at 100 x 20): a small MILP first.
        # Not when the neighbourhood holds every candidate route (every model has a floor or
        # runs now, as under the operator): the MILP over it runs next anyway, cold, and its
        # own bound certifies (measured at the operator's 500 models: 7.3 s of 23 s saved).
        support = np.zeros(cands.pools.size, dtype=bool)
        support[compiled.pool_ids[lp.values[cols.replicas] > 1e-6]] = True
        support[home.pool_ids[best.replicas > 0]] = True
        milp_over(restrict(cands, support[cands.routes.pool]))
    milp_over(c)
    if evaluate(home, best).unserved.any():  # a search stopped early may leave free GPUs unused
        best = _cheaper(home, fill_unserved(home, best), best)
    return home, best, found_bound


def _cheaper(c: Compiled, a: Allocation, b: Allocation) -> Allocation:
    """`a` if it costs less than `b` as the MILP counts (the greedy repair may start replicas
    beside running ones that the churn budgets count as moves there), else `b`."""
    return a if evaluate(c, a).search_objective < evaluate(c, b).search_objective else b


def _certified(c: Compiled, a: Allocation, bound: float, relative_gap: float) -> bool:
    objective = evaluate(c, a).search_objective
    # A MILP's proven bound lies exactly the gap below its plan: rounding must not undo that.
    return objective - bound <= relative_gap * abs(objective) * (1 + 1e-9)


def transfer(a: Allocation, source: Compiled, target: Compiled) -> Allocation:
    """An assignment over one restriction of the candidates carried to another: pools and
    routes the target lacks are dropped (none are when it holds the source's used ones)."""
    cands = source.candidates
    pool_at = np.full(cands.pools.size, -1, dtype=np.int64)
    pool_at[target.pool_ids] = np.arange(target.pool_ids.size)
    route_at = np.full(cands.routes.size, -1, dtype=np.int64)
    route_at[target.route_ids] = np.arange(target.route_ids.size)
    replicas = np.zeros(target.pool_ids.size)
    routed = np.zeros(target.route_ids.size)
    pools, routes = pool_at[source.pool_ids], route_at[source.route_ids]
    replicas[pools[pools >= 0]] = a.replicas[pools >= 0]
    routed[routes[routes >= 0]] = a.routed[routes >= 0]
    return Allocation(replicas, routed)


def consolidate(c: Compiled, a: Allocation, passes: int = 2) -> Allocation:
    """Give back replicas a model barely uses: drop the last replica of a pool and re-route the
    model's demand into its other replicas (one small LP per try), keeping it if cheaper.

    Models with floors or running replicas are left alone (their replicas may be held by the
    floor or the churn budget). GPU capacity cannot break: replicas only go.
    """
    p, k, d = c.pools, c.routes, c.demands
    n, routed = a.replicas.copy(), a.routed.copy()
    by_model_pool = group_by(p.model, len(c.problem.models))
    by_model_route = group_by(k.model, len(c.problem.models))
    by_model_pair = group_by(d.model, len(c.problem.models))
    frozen = c.candidates.whole_model
    for _ in range(passes):
        changed = False
        for m in range(len(c.problem.models)):
            pools = by_model_pool[m]
            if frozen[m] or pools.size == 0 or (p.current[pools] > 0).any():
                continue
            routes, pairs = by_model_route[m], by_model_pair[m]
            load = np.bincount(k.pool[routes], weights=routed[routes], minlength=p.size)[pools]
            spare_last = n[pools] - load / p.rate[pools]  # unused part of the replicas, 0..1
            for i in np.argsort(-spare_last).tolist():
                q = int(pools[i])
                if n[q] <= 0:
                    continue
                trial = n[pools].copy()
                trial[i] -= 1
                cost_now = _route_cost(c, routes, pairs, routed[routes])
                result = route_fixed(c, pools, routes, pairs, trial)
                if result is None:
                    continue
                cost_new, flows = result
                serves_all = flows.sum() >= routed[routes].sum() - 1e-9  # serving comes first
                if serves_all and cost_new - p.cost_per_replica[q] < cost_now - 1e-9:
                    n[q] -= 1
                    routed[routes] = flows
                    changed = True
        if not changed:
            break
    return Allocation(n, routed)


def _route_cost(c: Compiled, routes: IntArray, pairs: IntArray, flows: FloatArray) -> float:
    served = np.bincount(
        np.searchsorted(pairs, c.routes.pair[routes]), weights=flows, minlength=pairs.size
    )
    unserved = np.maximum(c.demands.rate[pairs] - served, 0.0)
    return float(c.routes.cost[routes] @ flows + c.demands.penalty[pairs] @ unserved)


def _neighbourhood(cands: Candidates, extra: int) -> NDArray[np.bool_]:
    """Pools running now, every pool of models with floors, and per model the `extra` cheapest
    pools by cost per request at full replicas."""
    p = cands.pools
    unit = p.cost_per_replica / p.rate + p.cost_per_request
    order = np.lexsort((unit, p.model))
    first = np.searchsorted(p.model[order], p.model[order], side="left")
    rank = np.empty(p.size, dtype=np.int64)
    rank[order] = np.arange(p.size) - first
    return (rank < extra) | (p.current > 0) | cands.whole_model[p.model]


def _solve_milp(
    c: Compiled, options: SolveOptions, start: Allocation, budget: Budget
) -> tuple[Allocation, bool, float]:
    cols = c.columns
    milp = c.milp
    helper = _helper(milp, integer=True)
    # OR-Tools 9.15's HiGHS interface crashes (SIGSEGV) when given a hint, so HiGHS runs cold.
    if options.warm_start and options.backend != "highs":
        for col, value in zip(cols.replicas.tolist(), start.replicas.tolist(), strict=True):
            helper.add_hint(col, value)
    solver = mbh.ModelSolverHelper(options.backend)
    # The safety net counts from here, after the model is built: presolve and search.
    solver.set_time_limit_in_seconds(budget.left())
    solver.set_solver_specific_parameters(_parameters(options))
    solver.solve(helper)
    budget.stopped(solver.status() == mbh.SolveStatus.OPTIMAL)
    if not solver.has_solution():
        zero = Allocation(np.zeros(c.pools.size), np.zeros(c.routes.size))
        return zero, False, -math.inf
    values = np.asarray(solver.variable_values(), dtype=np.float64)
    mip_bound = proven_bound(solver, options.relative_gap)
    replicas = np.round(values[cols.replicas])
    routed = np.maximum(values[cols.routed], 0.0)
    return Allocation(replicas, routed), True, mip_bound


def round_and_route(c: Compiled, lp_values: FloatArray, max_rounds: int = 12) -> Allocation:
    """LP diving: fix the LP's replicas to integers, re-solve the LP for the rest, repeat.

    Each round rounds up the pools the LP uses where the region still has GPUs of the type and
    the model is below maxReplicas (largest fractional part first) and fixes them. Pools that do
    not fit are capped at their floor but stay free, so the next LP (GLOP) moves their excess to
    where GPUs remain; the last round fixes whatever is left at its floor. With all replicas
    integer, pools shrink to the replicas their final load needs. It runs to the end whatever
    the budget: it is the plan of last resort (fixing every pool once the budget was spent cost
    16% on the objective of one 1,000 x 100 instance).
    """
    cols, p = c.columns, c.pools
    lower, upper = np.concatenate(c.milp.lower), np.concatenate(c.milp.upper)
    cap = c.candidates.capacity.ravel()  # by region * len(gpu_types) + gpu
    key = p.region * len(c.gpu_types) + p.gpu
    n_m = len(c.problem.models)
    most = np.array(
        [np.inf if m.max_replicas is None else m.max_replicas for m in c.problem.models]
    )
    fixed = np.zeros(p.size, dtype=bool)
    values = lp_values
    for round_ in range(max_rounds):
        n_lp = values[cols.replicas]
        todo = np.flatnonzero(~fixed & (n_lp > 1e-6))
        if todo.size == 0:
            break
        last = round_ == max_rounds - 1
        used = np.bincount(
            key,
            weights=np.where(fixed, lower[cols.replicas], 0.0) * p.gpus_per_replica,
            minlength=cap.size,
        )
        floor = np.floor(n_lp[todo] + 1e-6)
        used += np.bincount(key[todo], weights=floor * p.gpus_per_replica[todo], minlength=cap.size)
        # Replicas per model likewise: rounding up two halves must not pass maxReplicas.
        total = np.bincount(
            p.model, weights=np.where(fixed, lower[cols.replicas], 0.0), minlength=n_m
        )
        total += np.bincount(p.model[todo], weights=floor, minlength=n_m)
        target = floor.copy()
        settled = floor >= n_lp[todo] - 1e-6  # already integer
        for i in np.argsort(floor - n_lp[todo], kind="stable").tolist():
            q, m = int(todo[i]), int(p.model[todo[i]])
            if settled[i] or used[key[q]] + p.gpus_per_replica[q] > cap[key[q]] + 1e-9:
                continue
            if total[m] + 1 > most[m] + 1e-9:
                continue
            target[i] += 1
            used[key[q]] += p.gpus_per_replica[q]
            total[m] += 1
            settled[i] = True
        settled |= last
        target = np.minimum(target, p.upper[todo])
        lower[cols.replicas[todo[settled]]] = target[settled]
        upper[cols.replicas[todo]] = target
        fixed[todo[settled]] = True
        _, dived = _solve_lp(c.milp.with_bounds(lower, upper))
        if dived.size == 0:  # the fixings left no feasible LP: keep the last solution
            lower[cols.replicas[todo]] = np.concatenate(c.milp.lower)[cols.replicas[todo]]
            fixed[todo] = False
            break
        values = dived
    # Pools left unfixed (an infeasible dive stopped early) keep their floor, which breaks no
    # GPU or maxReplicas row the LP kept; their routes shrink to what those replicas carry.
    n = np.where(fixed, lower[cols.replicas], np.floor(values[cols.replicas] + 1e-6))
    routed = np.maximum(values[cols.routed], 0.0)
    load = np.bincount(c.routes.pool, weights=routed, minlength=p.size)
    over = load > n * p.rate * (1 + 1e-9) + 1e-9
    fits = np.ones(p.size)
    fits[over] = n[over] * p.rate[over] / load[over]
    routed = routed * fits[c.routes.pool]
    load = np.bincount(c.routes.pool, weights=routed, minlength=p.size)
    # Spare replicas go, except where the churn budget or a floor may be what holds them.
    free = (p.current == 0) & ~c.candidates.whole_model[p.model]
    n = np.where(free, np.minimum(n, np.ceil(load / p.rate - 1e-9)), n)
    return Allocation(n, routed)


def _solve_lp_with_duals(milp: Milp) -> tuple[float, FloatArray, FloatArray]:
    solver = glop()
    solver.solve(_helper(milp, integer=False))
    if not solver.has_solution():  # slacks keep it feasible; this is a solver failure
        raise RuntimeError(f"LP relaxation failed: {solver.status()}")
    return (
        float(solver.objective_value()),
        np.asarray(solver.variable_values(), dtype=np.float64),
        np.asarray(solver.dual_values(), dtype=np.float64),
    )


def _solve_lp(milp: Milp) -> tuple[float, FloatArray]:
    solver = glop()
    solver.solve(_helper(milp, integer=False))
    return float(solver.objective_value()), np.asarray(solver.variable_values(), dtype=np.float64)


def _helper(milp: Milp, *, integer: bool) -> mbh.ModelBuilderHelper:
    lower, upper, cost, is_int, matrix, row_lo, row_hi = milp.arrays()
    return sparse_model(
        matrix,
        lower=lower,
        upper=upper,
        cost=cost,
        row_lower=row_lo,
        row_upper=row_hi,
        integer=is_int if integer else None,
    )


def _parameters(options: SolveOptions) -> str:
    """The MILP solver's options: the gap, the seed, one thread when deterministic, and the
    node limit that bounds the search by work (the root's cuts and heuristics are bounded by
    the solver's own effort rules, counted in LP iterations, not seconds)."""
    gap, seed, nodes = options.relative_gap, options.seed, options.work_limit + 1  # + the root
    if options.backend == "highs":
        threads = "\nthreads=1" if options.deterministic else ""
        return (
            f"mip_rel_gap={gap}\nrandom_seed={seed}\nmip_max_nodes={nodes}\noutput_flag=false"
            f"{threads}"
        )
    threads = "\nparallel/maxnthreads = 1" if options.deterministic else ""
    return (
        f"limits/gap = {gap}\nrandomization/randomseedshift = {seed}\nlimits/nodes = {nodes}"
        f"{threads}"
    )
