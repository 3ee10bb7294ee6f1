"""Compile a Problem into pruned index arrays and one sparse MILP, built in bulk with numpy.

Index sets (after pruning, so the solver never sees what cannot matter):
- pools p = (model, region, GPU type): the model accepts the type, the region is allowed and has
  such GPUs (or runs the model there now), and some user zone reaches it within the SLO
  (or the model's floors need more regions than its users reach);
- routes k = (model, zone, pool) with demand in the zone and RTT within the route budget.

Variables: replicas n[p] (integer), routed rate x[k] >= 0, unserved s[m,u] >= 0 with a binary
"some demand unserved" per model (a fixed charge above any replica's cost), stopped
replicas c[p] >= 0 (pools running now), moved replicas per model (what the churn penalty and
the churn budgets count),
region-used z[m,r] (binary, models with a region floor), served S[m] and linear capacity C[m]
(models that must survive a region loss), and slacks for the floors and the churn budgets
(global and per model). All slacks are penalised far above any service cost, so a shortage
shows up in the plan instead of an infeasible solve.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import coo_matrix, csr_matrix

from gridplace_placement.capacity import max_arrival_array
from gridplace_placement.packing import size_class, slots
from gridplace_placement.problem import Problem

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

J_PER_KWH = 3.6e6
# Unserved demand costs this many times the per-request cost of the model's most expensive pool
# at full replicas: leaving even 1% of a replica's capacity unserved costs more than starting it.
SLACK_FACTOR = 100.0
MIN_REFERENCE = 1e-12  # a carbon (gCO2/h) or cost ($/h) reference this small counts as none


@dataclass(frozen=True)
class Pools:
    model: IntArray
    region: IntArray
    gpu: IntArray  # index into Compiled.gpu_types
    gpus_per_replica: IntArray
    rate: FloatArray  # req/s one replica carries at the p95 budget (linearised capacity)
    upper: FloatArray  # most replicas: GPUs free / GPUs per replica, and maxReplicas
    current: FloatArray
    carbon_per_replica: FloatArray  # gCO2/h of one replica's idle draw
    carbon_per_request: FloatArray  # gCO2/h per req/s of dynamic energy
    usd_per_replica: FloatArray  # $/h: idle energy + GPU-hours
    usd_per_request: FloatArray  # $/h per req/s of dynamic energy
    cost_per_replica: FloatArray  # normalised objective per replica
    cost_per_request: FloatArray  # normalised objective per req/s (energy part)
    slots: FloatArray  # queueing view of one replica, for the exact check
    service_rate: FloatArray
    scv: FloatArray
    wait_budget: FloatArray
    prefill: FloatArray

    @property
    def size(self) -> int:
        return int(self.model.size)


@dataclass(frozen=True)
class Routes:
    model: IntArray
    zone: IntArray
    pool: IntArray
    rtt_s: FloatArray
    cost: FloatArray  # normalised objective per req/s: latency + energy
    pair: IntArray  # index of the route's (model, zone) demand

    @property
    def size(self) -> int:
        return int(self.model.size)


@dataclass(frozen=True)
class Demands:
    model: IntArray
    zone: IntArray
    rate: FloatArray
    penalty: FloatArray  # objective per req/s unserved
    charge: FloatArray  # fixed objective once any of the pair's model's demand is unserved
    best_rate: FloatArray  # best per-replica rate among the pools the pair's routes reach


@dataclass
class Milp:
    """A MILP in array form: min c.x  s.t.  row_lo <= A x <= row_hi, lo <= x <= hi."""

    lower: list[FloatArray] = field(default_factory=list)
    upper: list[FloatArray] = field(default_factory=list)
    cost: list[FloatArray] = field(default_factory=list)
    integer: list[NDArray[np.bool_]] = field(default_factory=list)
    rows: list[IntArray] = field(default_factory=list)
    cols: list[IntArray] = field(default_factory=list)
    vals: list[FloatArray] = field(default_factory=list)
    row_lower: list[FloatArray] = field(default_factory=list)
    row_upper: list[FloatArray] = field(default_factory=list)
    num_vars: int = 0
    num_rows: int = 0

    def variables(
        self,
        count: int,
        lower: float | FloatArray,
        upper: float | FloatArray,
        cost: float | FloatArray,
        *,
        integer: bool = False,
    ) -> IntArray:
        """Add `count` variables; return their column indices."""
        self.lower.append(np.broadcast_to(np.asarray(lower, dtype=np.float64), (count,)).copy())
        self.upper.append(np.broadcast_to(np.asarray(upper, dtype=np.float64), (count,)).copy())
        self.cost.append(np.broadcast_to(np.asarray(cost, dtype=np.float64), (count,)).copy())
        self.integer.append(np.full(count, integer))
        cols = np.arange(self.num_vars, self.num_vars + count, dtype=np.int64)
        self.num_vars += count
        return cols

    def constraints(
        self, count: int, lower: float | FloatArray, upper: float | FloatArray
    ) -> IntArray:
        """Add `count` empty rows; fill them with `terms`."""
        self.row_lower.append(np.broadcast_to(np.asarray(lower, dtype=np.float64), (count,)).copy())
        self.row_upper.append(np.broadcast_to(np.asarray(upper, dtype=np.float64), (count,)).copy())
        rows = np.arange(self.num_rows, self.num_rows + count, dtype=np.int64)
        self.num_rows += count
        return rows

    def terms(self, rows: IntArray, cols: IntArray, vals: float | FloatArray) -> None:
        self.rows.append(np.asarray(rows, dtype=np.int64))
        self.cols.append(np.asarray(cols, dtype=np.int64))
        self.vals.append(np.broadcast_to(np.asarray(vals, dtype=np.float64), rows.shape).copy())

    def with_bounds(self, lower: FloatArray, upper: FloatArray) -> Milp:
        """The same model with new variable bounds (full-length arrays)."""
        return replace(self, lower=[lower], upper=[upper])

    def arrays(
        self,
    ) -> tuple[
        FloatArray, FloatArray, FloatArray, NDArray[np.bool_], csr_matrix, FloatArray, FloatArray
    ]:
        matrix = coo_matrix(
            (np.concatenate(self.vals), (np.concatenate(self.rows), np.concatenate(self.cols))),
            shape=(self.num_rows, self.num_vars),
        ).tocsr()
        return (
            np.concatenate(self.lower),
            np.concatenate(self.upper),
            np.concatenate(self.cost),
            np.concatenate(self.integer),
            matrix,
            np.concatenate(self.row_lower),
            np.concatenate(self.row_upper),
        )


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
class ModelCuts:
    """One rounding cut per (model, distinct per-replica rate of its pools), sorted by model."""

    model: IntArray
    rate: FloatArray
    start: IntArray  # per model m, its cuts are start[m]:start[m + 1]


@dataclass(frozen=True)
class Candidates:
    """Every pool and SLO-eligible route that could matter, with their coefficients."""

    problem: Problem
    gpu_types: tuple[str, ...]
    pools: Pools
    routes: Routes
    demands: Demands
    slo_excluded: dict[int, list[tuple[str, str]]]  # model -> (zone, nearest region excluded)
    floor_penalty: float
    capacity: FloatArray  # GPUs by (region, GPU type)
    best_rate: FloatArray  # per model, over every candidate pool
    model_cuts: ModelCuts  # the divisors of the models' rounding cuts
    whole_model: NDArray[np.bool_]  # models whose pools all stay (floors, survival, minimum)
    free_stops: FloatArray  # per model: running replicas its demand, floors or GPUs no longer need
    free_starts: FloatArray  # per model: replicas its demand may need beyond those running, and
    # replacements for those the GPUs no longer hold
    node_free: dict[int, IntArray]  # region * len(gpu_types) + gpu -> free GPUs per node, where
    # the region lists its nodes (replicas are then packed per node)


@dataclass(frozen=True)
class Compiled:
    """The MILP over a subset of the candidates' routes (and the pools they touch)."""

    problem: Problem
    gpu_types: tuple[str, ...]
    pools: Pools
    routes: Routes
    demands: Demands
    slo_excluded: dict[int, list[tuple[str, str]]]
    milp: Milp
    columns: Columns
    floor_penalty: float
    candidates: Candidates
    pool_ids: IntArray  # index of each pool among the candidates
    route_ids: IntArray  # index of each route among the candidates


def compile_problem(problem: Problem) -> Compiled:
    """The MILP over every candidate route."""
    cands = candidates(problem)
    return restrict(cands, np.ones(cands.routes.size, dtype=bool))


def restrict(cands: Candidates, route_mask: NDArray[np.bool_]) -> Compiled:
    """Build the MILP over the masked routes, the pools they use, pools running now and every
    pool of models with floors (whose pricing would need rows that do not exist yet)."""
    p = cands.pools
    keep = (p.current > 0) | cands.whole_model[p.model]
    keep[cands.routes.pool[route_mask]] = True
    pool_ids = np.flatnonzero(keep)
    remap = np.full(p.size, -1, dtype=np.int64)
    remap[pool_ids] = np.arange(pool_ids.size)
    route_ids = np.flatnonzero(route_mask)
    pools = _take(p, pool_ids)
    routes = _take(cands.routes, route_ids)
    routes = replace(routes, pool=remap[routes.pool])
    # Every (demand pair, kept pool) the candidates allow, routed in this model or not: a
    # zone's rounding cut must count all pools its demand could reach, or adding a route later
    # would loosen a row instead of adding a column (and the pricing bound would not hold).
    reach = remap[cands.routes.pool] >= 0
    milp, columns = _build(
        cands.problem,
        pools=pools,
        routes=routes,
        reach_pair=cands.routes.pair[reach],
        reach_pool=remap[cands.routes.pool[reach]],
        demands=cands.demands,
        cap=cands.capacity,
        floor_penalty=cands.floor_penalty,
        n_gpu=len(cands.gpu_types),
        model_cuts=cands.model_cuts,
        free_stops=cands.free_stops,
        free_starts=cands.free_starts,
        node_free=cands.node_free,
    )
    return Compiled(
        cands.problem,
        cands.gpu_types,
        pools,
        routes,
        cands.demands,
        cands.slo_excluded,
        milp,
        columns,
        cands.floor_penalty,
        cands,
        pool_ids,
        route_ids,
    )


_T = TypeVar("_T", Pools, Routes)


def _take(obj: _T, idx: IntArray) -> _T:
    return type(obj)(**{f.name: getattr(obj, f.name)[idx] for f in fields(obj)})


def candidates(problem: Problem) -> Candidates:
    """Prune what cannot matter and compute per-pool and per-route coefficients."""
    models, regions = problem.models, problem.regions
    gpu_types = tuple(
        sorted({g for r in regions for g in r.gpus} | {g for m in models for g in m.gpu_types})
    )
    gpu_index = {g: i for i, g in enumerate(gpu_types)}
    region_index = {r.name: i for i, r in enumerate(regions)}
    zones = problem.zones
    n_m, n_r, n_g, n_u = len(models), len(regions), len(gpu_types), len(zones)

    rtt = np.full((n_u, n_r), np.inf)
    for u, zone in enumerate(zones):
        for name, ms in problem.rtt_ms[zone].items():
            rtt[u, region_index[name]] = ms / 1000.0
    cap = np.zeros((n_r, n_g))
    node_free: dict[int, IntArray] = {}
    for r, reg in enumerate(regions):
        for g, count in reg.gpus.items():
            cap[r, gpu_index[g]] = count
        for g, free in reg.node_gpus.items():
            node_free[r * n_g + gpu_index[g]] = np.array(free, dtype=np.int64)
    pue = np.array([r.pue for r in regions])
    intensity = np.array([r.carbon_intensity for r in regions])
    price = np.maximum(np.array([r.power_price_usd_per_mwh for r in regions]), 0.0)
    gpu_hour = np.zeros((n_r, n_g))
    for r, reg in enumerate(regions):
        for g, usd in reg.gpu_hour_price_usd.items():
            if g in gpu_index:
                gpu_hour[r, gpu_index[g]] = usd
    current = np.zeros((n_m, n_r, n_g))
    model_index = {m.name: i for i, m in enumerate(models)}
    for a in problem.current:
        if a.gpu_type in gpu_index:
            current[model_index[a.model], region_index[a.region], gpu_index[a.gpu_type]] += (
                a.replicas
            )

    # Per (model, GPU type) replica parameters; the linearised rate is one replica's capacity.
    mg_model, mg_gpu, slots, service, budget, scv, prefill, gpr, active_w, idle_w = (
        [] for _ in range(10)
    )
    for m, model in enumerate(models):
        for gname in model.gpu_types:
            rm = model.replica_model(gname)
            prof = model.profiles[gname]
            mg_model.append(m)
            mg_gpu.append(gpu_index[gname])
            slots.append(rm.slots)
            service.append(rm.service_time_s)
            budget.append(rm.wait_budget_s)
            scv.append(rm.scv)
            prefill.append(rm.prefill_s)
            gpr.append(prof.gpus_per_replica)
            active_w.append(prof.active_power_watts)
            idle_w.append(prof.idle_power_watts)
    mg_m = np.array(mg_model, dtype=np.int64)
    mg_g = np.array(mg_gpu, dtype=np.int64)
    slots_a = np.array(slots, dtype=np.float64)
    service_a = np.array(service)
    rate_mg = max_arrival_array(slots_a, 1.0 / service_a, np.array(budget), np.array(scv))
    # Route budget: what the SLO leaves after prefill and the queue's share.
    slo = np.array([m.slo_p95_ttft_seconds for m in models])
    route_budget_mg = slo[mg_m] - np.array(prefill) - np.array(budget)
    dyn_j_mg = (np.array(active_w) - np.array(idle_w)) * service_a / np.maximum(slots_a, 1.0)
    usable_mg = rate_mg > 0

    # Candidate pools: every usable (model, gpu) x allowed region with GPUs or current replicas.
    allowed = np.array([[m.region_allowed(r.name) for r in regions] for m in models])
    pm = np.repeat(mg_m, n_r)
    pg = np.repeat(mg_g, n_r)
    pr = np.tile(np.arange(n_r), mg_m.size)
    pmg = np.repeat(np.arange(mg_m.size), n_r)
    has_gpus = _fitting(cap, node_free, pr, pg, np.array(gpr, dtype=np.int64)[pmg]) > 0
    keep = usable_mg[pmg] & allowed[pm, pr] & (has_gpus | (current[pm, pr, pg] > 0))

    # Demand pairs and their SLO-eligible pools.
    d_model, d_zone, d_rate = [], [], []
    zone_index = {z: i for i, z in enumerate(zones)}
    for m, model in enumerate(models):
        for zone, rate in model.demand.items():
            if rate > 0:
                d_model.append(m)
                d_zone.append(zone_index[zone])
                d_rate.append(rate)
    dm = np.array(d_model, dtype=np.int64)
    du = np.array(d_zone, dtype=np.int64)
    drate = np.array(d_rate, dtype=np.float64)

    cand = np.flatnonzero(keep)
    # Route candidates: each demand pair x the model's candidate pools.
    order = np.argsort(pm[cand], kind="stable")
    cand = cand[order]
    starts = np.searchsorted(pm[cand], np.arange(n_m + 1))
    per_model = starts[1:] - starts[:-1]
    reps = per_model[dm]
    k_demand = np.repeat(np.arange(dm.size), reps)
    offsets = np.arange(k_demand.size) - np.repeat(np.cumsum(reps) - reps, reps)
    k_cand = cand[starts[dm[k_demand]] + offsets] if k_demand.size else np.zeros(0, dtype=np.int64)
    k_rtt = rtt[du[k_demand], pr[k_cand]]
    eligible = k_rtt <= route_budget_mg[pmg[k_cand]] + 1e-12
    k_demand, k_cand, k_rtt = k_demand[eligible], k_cand[eligible], k_rtt[eligible]

    # Keep routed pools, pools running now, and for floors all candidates of that model.
    routed = np.zeros(pm.size, dtype=bool)
    routed[k_cand] = True
    needs_regions = np.array(
        [m.availability.min_regions > 0 or m.min_replicas > 0 for m in models], dtype=bool
    )
    pool_mask = keep & (routed | (current[pm, pr, pg] > 0) | needs_regions[pm])
    pool_ids = np.flatnonzero(pool_mask)
    remap = np.full(pm.size, -1, dtype=np.int64)
    remap[pool_ids] = np.arange(pool_ids.size)

    p_m, p_r, p_g, p_mg = pm[pool_ids], pr[pool_ids], pg[pool_ids], pmg[pool_ids]
    p_gpr = np.array(gpr, dtype=np.int64)[p_mg]
    max_rep = np.array([m.max_replicas if m.max_replicas is not None else 10**9 for m in models])
    p_cur = current[p_m, p_r, p_g]
    p_upper = np.maximum(
        np.minimum(_fitting(cap, node_free, p_r, p_g, p_gpr), max_rep[p_m]), 0
    ).astype(np.float64)
    p_rate = rate_mg[p_mg]
    idle_kwh = np.array(idle_w)[p_mg] / 1000.0  # per replica-hour
    dyn_kwh = dyn_j_mg[p_mg] * 3600.0 / J_PER_KWH  # per hour at 1 req/s
    carbon_rep = idle_kwh * pue[p_r] * intensity[p_r]
    carbon_req = dyn_kwh * pue[p_r] * intensity[p_r]
    usd_rep = idle_kwh * pue[p_r] * price[p_r] / 1000.0 + p_gpr * gpu_hour[p_r, p_g]
    usd_req = dyn_kwh * pue[p_r] * price[p_r] / 1000.0

    # Normalisation per model: each term divided by its value when the model's demand is
    # served at the average of its pools, so weights trade relative changes.
    demand_m = np.bincount(dm, weights=drate, minlength=n_m)
    mean_rate = _mean_by(p_m, p_rate, n_m, default=1.0)
    scale_load = np.maximum(demand_m, mean_rate)
    ref_carbon = scale_load * _mean_by(p_m, carbon_rep / p_rate + carbon_req, n_m, default=0.0)
    ref_usd = scale_load * _mean_by(p_m, usd_rep / p_rate + usd_req, n_m, default=0.0)
    ref_latency = scale_load * slo
    w = np.array([[m.weights.latency, m.weights.carbon, m.weights.cost] for m in models]).reshape(
        -1, 3
    )
    w_c = _safe_div(w[:, 1], ref_carbon)
    w_u = _safe_div(w[:, 2], ref_usd)
    w_l = w[:, 0] / ref_latency
    cost_rep = w_c[p_m] * carbon_rep + w_u[p_m] * usd_rep
    cost_req = w_c[p_m] * carbon_req + w_u[p_m] * usd_req

    pools = Pools(
        model=p_m,
        region=p_r,
        gpu=p_g,
        gpus_per_replica=p_gpr,
        rate=p_rate,
        upper=p_upper,
        current=p_cur,
        carbon_per_replica=carbon_rep,
        carbon_per_request=carbon_req,
        usd_per_replica=usd_rep,
        usd_per_request=usd_req,
        cost_per_replica=cost_rep,
        cost_per_request=cost_req,
        slots=slots_a[p_mg],
        service_rate=1.0 / service_a[p_mg],
        scv=np.array(scv)[p_mg],
        wait_budget=np.array(budget)[p_mg],
        prefill=np.array(prefill)[p_mg],
    )
    k_pool = remap[k_cand]
    k_m, k_u = dm[k_demand], du[k_demand]
    routes = Routes(
        model=k_m,
        zone=k_u,
        pool=k_pool,
        rtt_s=k_rtt,
        cost=w_l[k_m] * k_rtt + cost_req[k_pool],
        pair=_pair_index(k_m, k_u, dm, du),
    )
    # Unserved demand costs more than serving it anywhere, even with a replica of its own.
    unit = cost_rep / p_rate + cost_req
    worst = np.zeros(n_m)
    np.maximum.at(worst, p_m, unit)
    penalty_m = SLACK_FACTOR * (worst + w_l * slo) + 1.0 / scale_load
    # However small the remainder, leaving it unserved also costs more than a whole extra
    # replica anywhere (with its latency), so serving all demand wins whenever capacity exists.
    full_replica = cost_rep + p_rate * (cost_req + w_l[p_m] * slo[p_m])
    charge_m = np.zeros(n_m)
    np.maximum.at(charge_m, p_m, SLACK_FACTOR * full_replica)
    pair_rate = np.zeros(dm.size)
    np.maximum.at(pair_rate, routes.pair, p_rate[k_pool])
    demands = Demands(
        model=dm,
        zone=du,
        rate=drate,
        penalty=penalty_m[dm],
        charge=charge_m[dm] + 1.0,
        best_rate=pair_rate,
    )

    slo_excluded: dict[int, list[tuple[str, str]]] = {}
    route_budget_m = np.full(n_m, -np.inf)
    np.maximum.at(route_budget_m, mg_m[usable_mg], route_budget_mg[usable_mg])
    for i in range(dm.size):
        m, u = int(dm[i]), int(du[i])
        out = np.flatnonzero(allowed[m] & (rtt[u] > route_budget_m[m]) & np.isfinite(rtt[u]))
        if out.size:
            nearest = out[np.argmin(rtt[u, out])]
            slo_excluded.setdefault(m, []).append((zones[u], regions[int(nearest)].name))

    floor_penalty = 10.0 * float(np.sum(penalty_m * scale_load + charge_m)) + 1.0
    whole = needs_regions | np.array(
        [m.availability.survive_region_loss for m in models], dtype=bool
    )
    best_rate = np.zeros(n_m)
    np.maximum.at(best_rate, p_m, p_rate)
    # Churn is charged on moves only. Stopping running replicas beyond what the model needs at
    # its best rate follows falling demand; starting replicas up to what it needs at its worst
    # rate follows rising demand: neither is a move. Both bounds are generous, so scaling is
    # never charged and a move (a stop and a start) always is, beyond that slack.
    worst_rate = np.full(n_m, np.inf)
    np.minimum.at(worst_rate, p_m, p_rate)
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(best_rate > 0, np.ceil(demand_m / best_rate - 1e-9), 0.0)
        need_most = np.where(np.isfinite(worst_rate), np.ceil(demand_m / worst_rate - 1e-9), 0.0)
    floor_need = np.array(
        [
            max(m.min_replicas, m.availability.min_regions * m.availability.per_region_min)
            for m in models
        ],
        dtype=np.float64,
    )
    running_m = np.bincount(p_m, weights=p_cur, minlength=n_m)
    # Replicas their pool's GPUs no longer hold (cordoned or lost nodes) stop whatever the plan
    # does: neither their stops nor their replacements elsewhere are moves a budget counts.
    held_gpus = np.zeros_like(cap)
    np.add.at(held_gpus, (p_r, p_g), p_cur * p_gpr)
    short_gpus = np.maximum(held_gpus - cap, 0.0)[p_r, p_g]
    forced_m = np.bincount(
        p_m, weights=np.minimum(p_cur, np.ceil(short_gpus / p_gpr)), minlength=n_m
    ).astype(np.float64)
    free_stops = np.minimum(
        np.maximum(running_m - np.maximum(need, floor_need), 0.0) + forced_m, running_m
    )
    cut_pairs = np.unique(np.stack([p_m, p_rate], axis=1)[p_rate > 0], axis=0)
    cut_model = cut_pairs[:, 0].astype(np.int64)
    model_cuts = ModelCuts(
        cut_model, cut_pairs[:, 1], np.searchsorted(cut_model, np.arange(n_m + 1))
    )
    free_starts = np.maximum(np.maximum(need_most, floor_need) - running_m, 0.0) + forced_m
    return Candidates(
        problem,
        gpu_types,
        pools,
        routes,
        demands,
        slo_excluded,
        floor_penalty,
        cap,
        best_rate,
        model_cuts,
        whole,
        free_stops,
        free_starts,
        node_free,
    )


def _fitting(
    cap: FloatArray, node_free: dict[int, IntArray], region: IntArray, gpu: IntArray, gpr: IntArray
) -> IntArray:
    """Most replicas of `gpr` GPUs each (region, GPU type) holds: its GPUs // gpr, or where it
    lists its nodes, the slots of the replicas' size class (a replica never spans nodes)."""
    most = (cap[region, gpu] // gpr).astype(np.int64)
    n_g = cap.shape[1]
    cls = size_class(gpr)
    for i in np.flatnonzero(np.isin(region * n_g + gpu, list(node_free))):
        most[i] = slots(node_free[int(region[i] * n_g + gpu[i])], int(cls[i]))
    return most


def _build(
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
    models = problem.models
    n_m = len(models)
    lp = Milp()
    n = lp.variables(pools.size, 0.0, pools.upper, pools.cost_per_replica, integer=True)
    x = lp.variables(routes.size, 0.0, np.inf, routes.cost)
    s = lp.variables(demands.rate.size, 0.0, demands.rate, demands.penalty)
    # short[m] = 1 when any of model m's demand is unserved: s[m,u] <= demand[m,u] * short[m].
    short_models, short_of = np.unique(demands.model, return_inverse=True)
    first = np.zeros(short_models.size, dtype=np.int64)
    first[short_of] = np.arange(short_of.size)
    short = lp.variables(short_models.size, 0.0, 1.0, demands.charge[first], integer=True)
    rows = lp.constraints(demands.rate.size, -np.inf, 0.0)
    lp.terms(rows, s, 1.0)
    lp.terms(rows, short[short_of], -demands.rate)

    # Demand: routed + unserved = demand, per (model, zone).
    pair = routes.pair
    demand_rows = lp.constraints(demands.rate.size, demands.rate, demands.rate)
    lp.terms(demand_rows[pair], x, 1.0)
    lp.terms(demand_rows, s, 1.0)

    # Pool capacity (linearised queueing model): sum routed <= rate * replicas.
    pool_rows = lp.constraints(pools.size, -np.inf, 0.0)
    lp.terms(pool_rows[routes.pool], x, 1.0)
    lp.terms(pool_rows, n, -pools.rate)

    # Integer rounding cuts (mixed-integer rounding of sum rate*n >= demand - unserved), valid
    # for every integer plan; they lift the LP bound by each model's last partial replica.
    # Per model and divisor R (each per-replica rate its pools have), beta = demand / R and
    # f = frac(beta): sum_p mir(rate_p / R, f) n[p] + sum_u s[m,u] / (R f) >= ceil(beta).
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
    # Per (model, zone): the zone's served demand flows only into the pools its routes reach,
    # so the same rounding holds over those pools with the best rate among them.
    zone_cut_of, frac_u = _cut_rows(lp, demands.rate, demands.best_rate)
    best_u = np.where(demands.best_rate > 0, demands.best_rate, 1.0)
    zone_coef = mir(pools.rate[reach_pool] / best_u[reach_pair], frac_u[reach_pair])
    sel = zone_cut_of[reach_pair] >= 0
    lp.terms(zone_cut_of[reach_pair][sel], n[reach_pool[sel]], zone_coef[sel])
    sel = zone_cut_of >= 0
    lp.terms(zone_cut_of[sel], s[sel], 1.0 / (demands.best_rate[sel] * frac_u[sel]))

    # GPU capacity per (region, GPU type): sum GPUs of the pools <= GPUs there.
    key = pools.region * n_gpu + pools.gpu
    uniq, inverse = np.unique(key, return_inverse=True)
    first = np.zeros(uniq.size, dtype=np.int64)
    first[inverse] = np.arange(key.size)
    cap_key = np.stack([pools.region[first], pools.gpu[first]], axis=1)
    cap_rows = lp.constraints(uniq.size, -np.inf, cap[cap_key[:, 0], cap_key[:, 1]])
    lp.terms(cap_rows[inverse], n, pools.gpus_per_replica.astype(np.float64))
    gpu_rows = np.full(len(problem.regions) * n_gpu, -1, dtype=np.int64)
    gpu_rows[uniq] = cap_rows
    slot_rows, slot_key, slot_size = _slot_rows(lp, pools, n, key, node_free)

    # Replica bounds per model and the availability floors (soft, heavily penalised).
    max_rep = np.array([m.max_replicas if m.max_replicas is not None else np.inf for m in models])
    min_rep = np.array([float(m.min_replicas) for m in models])
    max_rows = lp.constraints(n_m, -np.inf, max_rep)
    lp.terms(max_rows[pools.model], n, 1.0)

    def replica_floor(of: IntArray, minimum: FloatArray) -> IntArray:
        """Soft rows: each model in `of` runs at least `minimum` replicas; returns the slacks."""
        short = lp.variables(of.size, 0.0, np.inf, floor_penalty)
        rows = lp.constraints(of.size, minimum, np.inf)
        row_of = np.full(n_m, -1)
        row_of[of] = rows
        sel = row_of[pools.model] >= 0
        lp.terms(row_of[pools.model][sel], n[sel], 1.0)
        lp.terms(rows, short, 1.0)
        return short

    needs_min = np.flatnonzero(min_rep > 0)
    short_min = replica_floor(needs_min, min_rep[needs_min])

    floors = np.array([m.availability.min_regions for m in models])
    per_region_min = np.array([float(m.availability.per_region_min) for m in models])
    floor_models = np.flatnonzero(floors > 0)
    # One region with one replica is one replica anywhere: no region binaries for that floor
    # (the default availability), which keeps HiGHS' search and its memory small.
    any_one = floor_models[(floors[floor_models] == 1) & (per_region_min[floor_models] == 1)]
    short_any = replica_floor(any_one, np.ones(any_one.size))
    floor_models = np.setdiff1d(floor_models, any_one)
    mr_sel = np.isin(pools.model, floor_models)
    mr_key = pools.model[mr_sel] * len(problem.regions) + pools.region[mr_sel]
    mr_uniq, mr_inv = np.unique(mr_key, return_inverse=True)
    mr_pairs = np.stack([mr_uniq // len(problem.regions), mr_uniq % len(problem.regions)], axis=1)
    z = lp.variables(mr_uniq.size, 0.0, 1.0, 0.0, integer=True)
    rows = lp.constraints(mr_uniq.size, 0.0, np.inf)  # sum_g n[m,r,g] >= perRegionMin * z
    lp.terms(rows[mr_inv], n[mr_sel], 1.0)
    lp.terms(rows, z, -per_region_min[mr_pairs[:, 0]])
    short_regions = lp.variables(floor_models.size, 0.0, np.inf, floor_penalty)
    rows = lp.constraints(floor_models.size, floors[floor_models].astype(np.float64), np.inf)
    row_of = np.full(n_m, -1)
    row_of[floor_models] = rows
    lp.terms(row_of[mr_pairs[:, 0]], z, 1.0)
    lp.terms(rows, short_regions, 1.0)

    # Survive the loss of any one region: C[m] - C[m,r] >= served[m] for every region r.
    survive = np.flatnonzero([m.availability.survive_region_loss for m in models])
    served_rows = np.full(n_m, -1, dtype=np.int64)
    if survive.size:
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
        sk = pools.model[sp] * len(problem.regions) + pools.region[sp]
        s_uniq, s_inv = np.unique(sk, return_inverse=True)
        s_model = idx[s_uniq // len(problem.regions)]
        rows = lp.constraints(s_uniq.size, 0.0, np.inf)
        lp.terms(rows, cap_m[s_model], 1.0)
        lp.terms(rows, served[s_model], -1.0)
        lp.terms(rows[s_inv], n[sp], -pools.rate[sp])

    # Churn: stopped >= current - replicas. Moves, per model: moved >= stopped - free stops
    # and moved >= started - free starts, with started = sum replicas - running + stopped.
    # The churn penalty and the budgets (soft) count moves, so scaling is never limited.
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

    return lp, Columns(
        replicas=n,
        routed=x,
        unserved=s,
        stopped=stopped,
        stopped_pool=running,
        region_used=z,
        region_used_key=mr_pairs,
        churn_over=np.concatenate([churn_over, model_over]),
        floor_short=np.concatenate([short_min, short_any, short_regions]),
        capacity_rows=cap_rows,
        capacity_key=cap_key,
        churn_row=churn_row,
        demand_rows=demand_rows,
        pool_rows=pool_rows,
        gpu_rows=gpu_rows,
        max_rows=max_rows,
        cut_rows=cut_of,
        cut_frac=cut_frac,
        zone_cut_rows=zone_cut_of,
        zone_cut_frac=frac_u,
        served_rows=served_rows,
        move_rows=move_rows,
        slot_rows=slot_rows,
        slot_key=slot_key,
        slot_size=slot_size,
    )


def _slot_rows(
    lp: Milp, pools: Pools, n: IntArray, key: IntArray, node_free: dict[int, IntArray]
) -> tuple[IntArray, IntArray, IntArray]:
    """Per-node packing (packing.py): for each (region, GPU type) that lists its nodes and each
    size class s of its pools, sum over pools of class c >= s of (c / s) n <= the nodes' slots
    of class s. Exact for power-of-two sizes, so no plan asks for a replica that has no node.
    The GPU row already is the row of class 1 when no size was rounded up; it is not repeated.
    Returns the rows, their key and their class."""
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


def _pair_index(a_m: IntArray, a_u: IntArray, b_m: IntArray, b_u: IntArray) -> IntArray:
    """Position in (b_m, b_u) of each (a_m, a_u) pair (all pairs of a exist in b)."""
    width = int(max(a_u.max(initial=0), b_u.max(initial=0))) + 1
    b_key = b_m * width + b_u
    order = np.argsort(b_key)
    pos = np.searchsorted(b_key[order], a_m * width + a_u)
    return order[pos] if pos.size else pos


def _mean_by(group: IntArray, values: FloatArray, size: int, default: float) -> FloatArray:
    total = np.bincount(group, weights=values, minlength=size)
    count = np.bincount(group, minlength=size)
    return np.where(count > 0, total / np.maximum(count, 1), default)


def _safe_div(num: FloatArray, den: FloatArray) -> FloatArray:
    """num / den, and 0 where den is nil: a model's carbon or cost reference below
    MIN_REFERENCE (gCO2/h, $/h) would overflow its weight (a subnormal power price did)."""
    ok = den > MIN_REFERENCE
    return np.where(ok, num / np.where(ok, den, 1.0), 0.0)


def group_by(keys: IntArray, size: int) -> list[IntArray]:
    """Indices of `keys` per key value 0..size-1 (e.g. each model's pools), in index order."""
    order = np.argsort(keys, kind="stable")
    bounds = np.searchsorted(keys[order], np.arange(size + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(size)]


def gpu_use(c: Compiled, replicas: FloatArray) -> FloatArray:
    """GPUs used by (region, GPU type), shaped like the candidates' capacity, flattened."""
    p = c.pools
    n_g = len(c.gpu_types)
    return np.bincount(
        p.region * n_g + p.gpu,
        weights=replicas * p.gpus_per_replica,
        minlength=len(c.problem.regions) * n_g,
    ).astype(np.float64)
