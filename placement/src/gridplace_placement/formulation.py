"""The placement MILP over a set of pools and routes, one function per constraint family.

Variables: replicas n[p] (integer), routed rate x[k] >= 0, unserved s[m,u] >= 0 with a binary
"some demand unserved" per model (a fixed charge above any replica's cost), stopped
replicas c[p] >= 0 (pools running now), moved replicas per model (what the churn penalty and
the churn budgets count),
region-used z[m,r] (binary, models with a region floor), served S[m] and linear capacity C[m]
(models that must survive a region loss), and slacks for the floors and the churn budgets
(global and per model). All slacks are penalised far above any service cost, so a shortage
shows up in the plan instead of an infeasible solve.

`Columns` says where each block of variables and rows sits, for the solver's pricing and for
reading plans back. The variables and rows are added in a fixed order, so the same inputs give
the same model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridplace_placement.arrays import FloatArray, IntArray
from gridplace_placement.candidates import Demands, ModelCuts, Pools, Routes
from gridplace_placement.milp import Milp
from gridplace_placement.packing import size_class, slots
from gridplace_placement.problem import Problem


@dataclass(frozen=True)
class Columns:
    replicas: IntArray
    routed: IntArray
    unserved: IntArray
    stopped: IntArray  # per pool with current replicas (index into pools: stopped_pool)
    stopped_pool: IntArray
    region_used: IntArray
    region_used_key: IntArray  # (model, region) pairs, shape (k, 2)
    churn_over: IntArray
    floor_short: IntArray
    capacity_rows: IntArray  # one per (region, gpu) pair in capacity_key
    capacity_key: IntArray  # shape (k, 2)
    churn_row: IntArray
    demand_rows: IntArray  # per demand pair
    pool_rows: IntArray  # per pool
    gpu_rows: IntArray  # per region * len(gpu_types) + gpu, -1 where no pool uses it
    max_rows: IntArray  # per model
    cut_rows: IntArray  # per model cut (Candidates.model_cuts), -1 where none is needed
    cut_frac: FloatArray  # per model cut: f of its right-hand side (for pricing)
    zone_cut_rows: IntArray  # per demand pair, -1 without a rounding cut
    zone_cut_frac: FloatArray  # per demand pair: f of its cut
    served_rows: IntArray  # per model, -1 unless it must survive a region loss
    move_rows: IntArray  # per model, -1 unless it runs replicas now (starts that are moves)
    slot_rows: IntArray  # per (region, GPU type, size class) packing row (packing.py)
    slot_key: IntArray  # its region * len(gpu_types) + gpu
    slot_size: IntArray  # its size class


@dataclass(frozen=True)
class _Core:
    """The MILP being written, what it is over, and the columns every family refers to."""

    lp: Milp
    problem: Problem
    pools: Pools
    routes: Routes
    demands: Demands
    n: IntArray  # replicas per pool
    x: IntArray  # routed rate per route
    s: IntArray  # unserved rate per demand pair


@dataclass(frozen=True)
class _ChurnColumns:
    stopped: IntArray
    stopped_pool: IntArray
    churn_over: IntArray  # the global budget's slack, then each model budget's
    churn_row: IntArray
    move_rows: IntArray


def build_milp(
    problem: Problem,
    *,
    pools: Pools,
    routes: Routes,
    reach_pair: IntArray,
    reach_pool: IntArray,
    demands: Demands,
    cap: FloatArray,
    floor_penalty: float,
    n_gpu: int,
    model_cuts: ModelCuts,
    free_stops: FloatArray,
    free_starts: FloatArray,
    node_free: dict[int, IntArray],
) -> tuple[Milp, Columns]:
    """The MILP over these pools and routes. (`reach_pair`, `reach_pool`) are every (demand
    pair, pool) the candidates allow, routed in this model or not: the zones' rounding cuts
    count them all."""
    lp = Milp()
    n = lp.variables(pools.size, 0.0, pools.upper, pools.cost_per_replica, integer=True)
    x = lp.variables(routes.size, 0.0, np.inf, routes.cost)
    s = lp.variables(demands.rate.size, 0.0, demands.rate, demands.penalty)
    core = _Core(lp, problem, pools, routes, demands, n, x, s)
    _unserved_charge(core)
    demand_rows = _demand_rows(core)
    pool_rows = _pool_capacity_rows(core)
    cut_rows, cut_frac = _model_rounding_cuts(core, model_cuts)
    zone_cut_rows, zone_cut_frac = _zone_rounding_cuts(core, reach_pair, reach_pool)
    key = pools.region * n_gpu + pools.gpu
    cap_rows, cap_key, gpu_rows = _gpu_capacity_rows(core, key, cap, len(problem.regions) * n_gpu)
    slot_rows, slot_key, slot_size = _slot_rows(core, key, node_free)
    max_rows = _max_replica_rows(core)
    short_min = _min_replica_rows(core, floor_penalty)
    short_any, z, mr_pairs, short_regions = _region_floor_rows(core, floor_penalty)
    served_rows = _survival_rows(core)
    churn = _churn_rows(core, free_stops, free_starts, floor_penalty)
    return lp, Columns(
        replicas=n,
        routed=x,
        unserved=s,
        stopped=churn.stopped,
        stopped_pool=churn.stopped_pool,
        region_used=z,
        region_used_key=mr_pairs,
        churn_over=churn.churn_over,
        floor_short=np.concatenate([short_min, short_any, short_regions]),
        capacity_rows=cap_rows,
        capacity_key=cap_key,
        churn_row=churn.churn_row,
        demand_rows=demand_rows,
        pool_rows=pool_rows,
        gpu_rows=gpu_rows,
        max_rows=max_rows,
        cut_rows=cut_rows,
        cut_frac=cut_frac,
        zone_cut_rows=zone_cut_rows,
        zone_cut_frac=zone_cut_frac,
        served_rows=served_rows,
        move_rows=churn.move_rows,
        slot_rows=slot_rows,
        slot_key=slot_key,
        slot_size=slot_size,
    )


def _unserved_charge(core: _Core) -> None:
    """short[m] = 1 when any of model m's demand is unserved: s[m,u] <= demand[m,u] * short[m].
    Its charge makes leaving a remainder unserved cost more than a whole extra replica."""
    lp, demands, s = core.lp, core.demands, core.s
    short_models, short_of = np.unique(demands.model, return_inverse=True)
    first = np.zeros(short_models.size, dtype=np.int64)
    first[short_of] = np.arange(short_of.size)
    short = lp.variables(short_models.size, 0.0, 1.0, demands.charge[first], integer=True)
    rows = lp.constraints(demands.rate.size, -np.inf, 0.0)
    lp.terms(rows, s, 1.0)
    lp.terms(rows, short[short_of], -demands.rate)


def _demand_rows(core: _Core) -> IntArray:
    """Demand: routed + unserved = demand, per (model, zone)."""
    lp, demands, routes, x, s = core.lp, core.demands, core.routes, core.x, core.s
    rows = lp.constraints(demands.rate.size, demands.rate, demands.rate)
    lp.terms(rows[routes.pair], x, 1.0)
    lp.terms(rows, s, 1.0)
    return rows


def _pool_capacity_rows(core: _Core) -> IntArray:
    """Pool capacity (linearised queueing model): sum routed <= rate * replicas."""
    lp, pools, routes, n, x = core.lp, core.pools, core.routes, core.n, core.x
    rows = lp.constraints(pools.size, -np.inf, 0.0)
    lp.terms(rows[routes.pool], x, 1.0)
    lp.terms(rows, n, -pools.rate)
    return rows


def _model_rounding_cuts(core: _Core, model_cuts: ModelCuts) -> tuple[IntArray, FloatArray]:
    """Integer rounding cuts (mixed-integer rounding of sum rate*n >= demand - unserved), valid
    for every integer plan; they lift the LP bound by each model's last partial replica.
    Per model and divisor R (each per-replica rate its pools have), beta = demand / R and
    f = frac(beta): sum_p mir(rate_p / R, f) n[p] + sum_u s[m,u] / (R f) >= ceil(beta).
    Returns each cut's row (-1 without) and f."""
    lp, pools, demands, n, s = core.lp, core.pools, core.demands, core.n, core.s
    n_m = len(core.problem.models)
    demand_m = np.bincount(demands.model, weights=demands.rate, minlength=n_m).astype(np.float64)
    cut_of, cut_frac = _cut_rows(lp, demand_m[model_cuts.model], model_cuts.rate)
    pool_of, cut, coef = model_cut_terms(model_cuts, pools.model, pools.rate, cut_frac)
    sel = cut_of[cut] >= 0
    lp.terms(cut_of[cut[sel]], n[pool_of[sel]], coef[sel])
    pair_of, cut, _ = model_cut_terms(model_cuts, demands.model, demands.rate, cut_frac)
    sel = cut_of[cut] >= 0
    lp.terms(
        cut_of[cut[sel]], s[pair_of[sel]], 1.0 / (model_cuts.rate[cut[sel]] * cut_frac[cut[sel]])
    )
    return cut_of, cut_frac


def _zone_rounding_cuts(
    core: _Core, reach_pair: IntArray, reach_pool: IntArray
) -> tuple[IntArray, FloatArray]:
    """Per (model, zone): the zone's served demand flows only into the pools its routes reach,
    so the same rounding holds over those pools with the best rate among them. Returns each
    pair's row (-1 without) and f."""
    lp, pools, demands, n, s = core.lp, core.pools, core.demands, core.n, core.s
    zone_cut_of, frac_u = _cut_rows(lp, demands.rate, demands.best_rate)
    best_u = np.where(demands.best_rate > 0, demands.best_rate, 1.0)
    zone_coef = mir(pools.rate[reach_pool] / best_u[reach_pair], frac_u[reach_pair])
    sel = zone_cut_of[reach_pair] >= 0
    lp.terms(zone_cut_of[reach_pair][sel], n[reach_pool[sel]], zone_coef[sel])
    sel = zone_cut_of >= 0
    lp.terms(zone_cut_of[sel], s[sel], 1.0 / (demands.best_rate[sel] * frac_u[sel]))
    return zone_cut_of, frac_u


def _gpu_capacity_rows(
    core: _Core, key: IntArray, cap: FloatArray, n_keys: int
) -> tuple[IntArray, IntArray, IntArray]:
    """GPU capacity per (region, GPU type) some pool uses: sum GPUs of the pools <= GPUs there.
    Returns the rows, their (region, GPU type) and the row of each of the `n_keys` keys (-1
    where no pool uses it)."""
    lp, pools, n = core.lp, core.pools, core.n
    uniq, inverse = np.unique(key, return_inverse=True)
    first = np.zeros(uniq.size, dtype=np.int64)
    first[inverse] = np.arange(key.size)
    cap_key = np.stack([pools.region[first], pools.gpu[first]], axis=1)
    cap_rows = lp.constraints(uniq.size, -np.inf, cap[cap_key[:, 0], cap_key[:, 1]])
    lp.terms(cap_rows[inverse], n, pools.gpus_per_replica.astype(np.float64))
    gpu_rows = np.full(n_keys, -1, dtype=np.int64)
    gpu_rows[uniq] = cap_rows
    return cap_rows, cap_key, gpu_rows


def _slot_rows(
    core: _Core, key: IntArray, node_free: dict[int, IntArray]
) -> tuple[IntArray, IntArray, IntArray]:
    """Per-node packing (packing.py): for each (region, GPU type) that lists its nodes and each
    size class s of its pools, sum over pools of class c >= s of (c / s) n <= the nodes' slots
    of class s. Exact for power-of-two sizes, so no plan asks for a replica that has no node.
    The GPU row already is the row of class 1 when no size was rounded up; it is not repeated.
    Returns the rows, their key and their class."""
    lp, pools, n = core.lp, core.pools, core.n
    cls = size_class(pools.gpus_per_replica)
    rows, keys, sizes = [], [], []
    for k in np.unique(key[np.isin(key, list(node_free))]).tolist():
        mine = np.flatnonzero(key == k)
        rounded = bool((cls[mine] != pools.gpus_per_replica[mine]).any())
        for s in np.unique(cls[mine]).tolist():
            if s == 1 and not rounded:
                continue
            sel = mine[cls[mine] >= s]
            row = lp.constraints(1, -np.inf, float(slots(node_free[k], s)))
            lp.terms(np.repeat(row, sel.size), n[sel], (cls[sel] / s).astype(np.float64))
            rows.append(int(row[0]))
            keys.append(k)
            sizes.append(s)
    return (
        np.array(rows, dtype=np.int64),
        np.array(keys, dtype=np.int64),
        np.array(sizes, dtype=np.int64),
    )


def _max_replica_rows(core: _Core) -> IntArray:
    """maxReplicas per model: sum of its replicas <= the most (inf where none is set)."""
    lp, models, pools, n = core.lp, core.problem.models, core.pools, core.n
    max_rep = np.array([m.max_replicas if m.max_replicas is not None else np.inf for m in models])
    rows = lp.constraints(len(models), -np.inf, max_rep)
    lp.terms(rows[pools.model], n, 1.0)
    return rows


def _min_replica_rows(core: _Core, floor_penalty: float) -> IntArray:
    """minReplicas, soft: the slacks of the models that set one."""
    min_rep = np.array([float(m.min_replicas) for m in core.problem.models])
    needs_min = np.flatnonzero(min_rep > 0)
    return _replica_floor(core, needs_min, min_rep[needs_min], floor_penalty)


def _region_floor_rows(
    core: _Core, floor_penalty: float
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """Availability floors, soft: at least min_regions regions with per_region_min replicas
    each, counted by region-used binaries z[m,r] (sum_g n[m,r,g] >= perRegionMin * z). Returns
    the slacks of the one-replica floors, the binaries, their (model, region) and the slacks
    of the other floors."""
    lp, pools, n = core.lp, core.pools, core.n
    models, n_r = core.problem.models, len(core.problem.regions)
    floors = np.array([m.availability.min_regions for m in models])
    per_region_min = np.array([float(m.availability.per_region_min) for m in models])
    floor_models = np.flatnonzero(floors > 0)
    # One region with one replica is one replica anywhere: no region binaries for that floor
    # (the default availability), which keeps HiGHS' search and its memory small.
    any_one = floor_models[(floors[floor_models] == 1) & (per_region_min[floor_models] == 1)]
    short_any = _replica_floor(core, any_one, np.ones(any_one.size), floor_penalty)
    floor_models = np.setdiff1d(floor_models, any_one)
    mr_sel = np.isin(pools.model, floor_models)
    mr_key = pools.model[mr_sel] * n_r + pools.region[mr_sel]
    mr_uniq, mr_inv = np.unique(mr_key, return_inverse=True)
    mr_pairs = np.stack([mr_uniq // n_r, mr_uniq % n_r], axis=1)
    z = lp.variables(mr_uniq.size, 0.0, 1.0, 0.0, integer=True)
    rows = lp.constraints(mr_uniq.size, 0.0, np.inf)
    lp.terms(rows[mr_inv], n[mr_sel], 1.0)
    lp.terms(rows, z, -per_region_min[mr_pairs[:, 0]])
    short_regions = lp.variables(floor_models.size, 0.0, np.inf, floor_penalty)
    rows = lp.constraints(floor_models.size, floors[floor_models].astype(np.float64), np.inf)
    row_of = np.full(len(models), -1)
    row_of[floor_models] = rows
    lp.terms(row_of[mr_pairs[:, 0]], z, 1.0)
    lp.terms(rows, short_regions, 1.0)
    return short_any, z, mr_pairs, short_regions


def _replica_floor(core: _Core, of: IntArray, minimum: FloatArray, penalty: float) -> IntArray:
    """Soft rows: each model in `of` runs at least `minimum` replicas; returns the slacks."""
    lp, pools, n, n_m = core.lp, core.pools, core.n, len(core.problem.models)
    short = lp.variables(of.size, 0.0, np.inf, penalty)
    rows = lp.constraints(of.size, minimum, np.inf)
    row_of = np.full(n_m, -1)
    row_of[of] = rows
    sel = row_of[pools.model] >= 0
    lp.terms(row_of[pools.model][sel], n[sel], 1.0)
    lp.terms(rows, short, 1.0)
    return short


def _survival_rows(core: _Core) -> IntArray:
    """Survive the loss of any one region: C[m] - C[m,r] >= served[m] for every region r, with
    C[m] = sum rate * n and S[m] = sum routed. Returns each model's S row (-1 without)."""
    lp, pools, routes, n, x = core.lp, core.pools, core.routes, core.n, core.x
    models, n_r = core.problem.models, len(core.problem.regions)
    n_m = len(models)
    survive = np.flatnonzero([m.availability.survive_region_loss for m in models])
    served_rows = np.full(n_m, -1, dtype=np.int64)
    if not survive.size:
        return served_rows
    cap_m = lp.variables(survive.size, 0.0, np.inf, 0.0)
    served = lp.variables(survive.size, 0.0, np.inf, 0.0)
    idx = np.full(n_m, -1)
    idx[survive] = np.arange(survive.size)
    rows = lp.constraints(survive.size, 0.0, 0.0)  # C[m] = sum rate * n
    sp = idx[pools.model] >= 0
    lp.terms(rows[idx[pools.model][sp]], n[sp], pools.rate[sp])
    lp.terms(rows, cap_m, -1.0)
    rows = lp.constraints(survive.size, 0.0, 0.0)  # S[m] = sum routed
    served_rows[survive] = rows
    sr = idx[routes.model] >= 0
    lp.terms(rows[idx[routes.model][sr]], x[sr], 1.0)
    lp.terms(rows, served, -1.0)
    sk = pools.model[sp] * n_r + pools.region[sp]
    s_uniq, s_inv = np.unique(sk, return_inverse=True)
    s_model = idx[s_uniq // n_r]
    rows = lp.constraints(s_uniq.size, 0.0, np.inf)
    lp.terms(rows, cap_m[s_model], 1.0)
    lp.terms(rows, served[s_model], -1.0)
    lp.terms(rows[s_inv], n[sp], -pools.rate[sp])
    return served_rows


def _churn_rows(
    core: _Core, free_stops: FloatArray, free_starts: FloatArray, floor_penalty: float
) -> _ChurnColumns:
    """Churn: stopped >= current - replicas. Moves, per model: moved >= stopped - free stops
    and moved >= started - free starts, with started = sum replicas - running + stopped.
    The churn penalty and the budgets (soft) count moves, so scaling is never limited."""
    lp, problem, pools, n = core.lp, core.problem, core.pools, core.n
    models = problem.models
    n_m = len(models)
    running = np.flatnonzero(pools.current > 0)
    stopped = lp.variables(running.size, 0.0, pools.current[running], 0.0)
    rows = lp.constraints(running.size, pools.current[running], np.inf)
    lp.terms(rows, stopped, 1.0)
    lp.terms(rows, n[running], 1.0)
    moving = np.unique(pools.model[running])
    moved = lp.variables(moving.size, 0.0, np.inf, problem.churn_penalty)
    of_stop = np.searchsorted(moving, pools.model[running])
    rows = lp.constraints(moving.size, -np.inf, free_stops[moving])
    lp.terms(rows[of_stop], stopped, 1.0)
    lp.terms(rows, moved, -1.0)
    running_m = np.bincount(pools.model, weights=pools.current, minlength=n_m)
    rows = lp.constraints(moving.size, -np.inf, running_m[moving] + free_starts[moving])
    move_rows = np.full(n_m, -1, dtype=np.int64)
    move_rows[moving] = rows
    sel = move_rows[pools.model] >= 0
    lp.terms(move_rows[pools.model][sel], n[sel], 1.0)
    lp.terms(rows[of_stop], stopped, 1.0)
    lp.terms(rows, moved, -1.0)
    churn_over = lp.variables(
        1 if problem.churn_budget is not None else 0, 0.0, np.inf, floor_penalty
    )
    churn_row = lp.constraints(churn_over.size, -np.inf, float(problem.churn_budget or 0))
    if churn_over.size:
        lp.terms(np.repeat(churn_row, moving.size), moved, 1.0)
        lp.terms(churn_row, churn_over, -1.0)
    # Per-model budgets: one soft row per model that has one and runs replicas now.
    budget_models = np.flatnonzero([m.churn_budget is not None for m in models])
    budget_models = budget_models[np.isin(budget_models, moving)]
    model_over = lp.variables(budget_models.size, 0.0, np.inf, floor_penalty)
    budgets = np.array([float(models[m].churn_budget or 0) for m in budget_models])
    rows = lp.constraints(budget_models.size, -np.inf, budgets)
    lp.terms(rows, moved[np.searchsorted(moving, budget_models)], 1.0)
    lp.terms(rows, model_over, -1.0)
    return _ChurnColumns(
        stopped=stopped,
        stopped_pool=running,
        churn_over=np.concatenate([churn_over, model_over]),
        churn_row=churn_row,
        move_rows=move_rows,
    )


def _cut_rows(lp: Milp, demand: FloatArray, best_rate: FloatArray) -> tuple[IntArray, FloatArray]:
    """One rounding-cut row per entry with a fractional beta = demand / best rate: the row of
    each entry (-1 without) and the fractional part of beta."""
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.where(best_rate > 0, demand / best_rate, 0.0)
    frac = beta - np.floor(beta)
    cut = np.flatnonzero((frac > 1e-6) & (best_rate > 0))
    row_of = np.full(demand.size, -1, dtype=np.int64)
    row_of[cut] = lp.constraints(cut.size, np.ceil(beta[cut]), np.inf)
    return row_of, frac


def model_cut_terms(
    cuts: ModelCuts, owner: IntArray, rate: FloatArray, frac: FloatArray
) -> tuple[IntArray, IntArray, FloatArray]:
    """Every (item, cut of the item's model) pair, for items (pools or demand pairs) owned by
    models, with the item's MIR coefficient mir(rate / divisor, f) in that cut."""
    count = cuts.start[owner + 1] - cuts.start[owner]
    item = np.repeat(np.arange(owner.size), count)
    offset = np.arange(item.size) - np.repeat(np.cumsum(count) - count, count)
    cut = cuts.start[owner[item]] + offset
    return item, cut, mir(rate[item] / cuts.rate[cut], frac[cut])


def mir(ratio: FloatArray, frac: FloatArray) -> FloatArray:
    """Mixed-integer rounding coefficient of an integer variable with coefficient `ratio` in a
    >= row whose right-hand side has fractional part `frac`: floor(a) + min(frac(a), f) / f."""
    whole = np.floor(ratio + 1e-12)
    part = ratio - whole
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(
            frac > 0, whole + np.minimum(part, frac) / np.where(frac > 0, frac, 1.0), 1.0
        )
