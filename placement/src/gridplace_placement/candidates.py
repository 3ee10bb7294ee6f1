"""Candidates: the pools and routes that could matter to a plan, with their coefficients.

Pruning (so the solver never sees what cannot matter):
- pools p = (model, region, GPU type): the model accepts the type, the region is allowed and has
  such GPUs (or runs the model there now), and some user zone reaches it within the SLO
  (or the model's floors need more regions than its users reach);
- routes k = (model, zone, pool) with demand in the zone and RTT within the route budget.

Coefficients: each pool's rate, carbon and dollars per replica and per request, normalised per
model into one objective; each route's latency and energy cost; each demand's penalty when
unserved; and the slack the churn budgets grant to scaling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from gridplace_placement.arrays import FloatArray, IntArray, mean_by, pair_index
from gridplace_placement.capacity import max_arrival_array
from gridplace_placement.packing import size_class, slots
from gridplace_placement.problem import Model, Problem

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
class _Sites:
    """The regions and zones as arrays, indexed like the problem's lists and `gpu_types`."""

    gpu_index: dict[str, int]
    rtt: FloatArray  # seconds by (zone, region); inf where not measured
    cap: FloatArray  # GPUs by (region, GPU type)
    node_free: dict[int, IntArray]  # as Candidates.node_free
    pue: FloatArray
    intensity: FloatArray  # gCO2/kWh
    price: FloatArray  # $/MWh, never below 0
    gpu_hour: FloatArray  # $ per GPU-hour by (region, GPU type)
    current: FloatArray  # running replicas by (model, region, GPU type)


@dataclass(frozen=True)
class _ReplicaTypes:
    """One replica of each (model, accepted GPU type): its queueing model, power and the RTT
    its SLO leaves to the network."""

    model: IntArray
    gpu: IntArray
    slots: FloatArray
    service: FloatArray  # seconds per request
    wait_budget: FloatArray
    scv: FloatArray
    prefill: FloatArray
    gpus_per_replica: IntArray
    idle_w: FloatArray
    rate: FloatArray  # linearised capacity: req/s one replica carries within its wait budget
    route_budget: FloatArray  # what the SLO leaves after prefill and the queue's share
    dyn_j: FloatArray  # dynamic energy per request, joules
    usable: NDArray[np.bool_]  # the replica carries some traffic within its SLO


@dataclass(frozen=True)
class _Grid:
    """Every (replica type, region) before pruning, with the pools it may open."""

    model: IntArray
    gpu: IntArray
    region: IntArray
    replica_type: IntArray  # index into _ReplicaTypes
    allowed: NDArray[np.bool_]  # by (model, region)
    keep: NDArray[np.bool_]  # usable, allowed, and with GPUs or replicas running there


@dataclass(frozen=True)
class _Pairs:
    """The (model, zone) pairs with demand."""

    model: IntArray
    zone: IntArray
    rate: FloatArray


@dataclass(frozen=True)
class _Weights:
    """Per model, the objective's weight of each term divided by that term's value when the
    model's demand is served at the average of its pools: weights then trade relative changes."""

    carbon: FloatArray
    usd: FloatArray
    latency: FloatArray
    scale_load: FloatArray  # req/s the references are taken at


def candidates(problem: Problem) -> Candidates:
    """Prune what cannot matter and compute per-pool and per-route coefficients."""
    models, regions = problem.models, problem.regions
    gpu_types = tuple(
        sorted({g for r in regions for g in r.gpus} | {g for m in models for g in m.gpu_types})
    )
    n_m = len(models)
    sites = _sites(problem, gpu_types)
    slo = np.array([m.slo_p95_ttft_seconds for m in models])
    types = _replica_types(models, sites.gpu_index, slo)
    grid = _grid(problem, sites, types)
    pairs = _demand_pairs(problem)
    k_demand, k_cand, k_rtt = _slo_routes(grid, pairs, sites.rtt, types.route_budget, n_m)
    needs_regions = np.array(
        [m.availability.min_regions > 0 or m.min_replicas > 0 for m in models], dtype=bool
    )
    pool_ids = _pools_that_matter(grid, k_cand, sites.current, needs_regions)
    remap = np.full(grid.model.size, -1, dtype=np.int64)
    remap[pool_ids] = np.arange(pool_ids.size)
    pools = _pools(problem, sites, types, grid, pool_ids)
    demand_m = np.bincount(pairs.model, weights=pairs.rate, minlength=n_m).astype(np.float64)
    weights = _weights(models, pools, demand_m, slo)
    pools = _with_costs(pools, weights)
    k_pool = remap[k_cand]
    k_m, k_u = pairs.model[k_demand], pairs.zone[k_demand]
    routes = Routes(
        model=k_m,
        zone=k_u,
        pool=k_pool,
        rtt_s=k_rtt,
        cost=weights.latency[k_m] * k_rtt + pools.cost_per_request[k_pool],
        pair=pair_index(k_m, k_u, pairs.model, pairs.zone),
    )
    penalty_m, charge_m = _unserved_costs(pools, weights, slo, n_m)
    demands = Demands(
        model=pairs.model,
        zone=pairs.zone,
        rate=pairs.rate,
        penalty=penalty_m[pairs.model],
        charge=charge_m[pairs.model] + 1.0,
        best_rate=_best_rate_per_pair(routes, pools, pairs.model.size),
    )
    floor_penalty = 10.0 * float(np.sum(penalty_m * weights.scale_load + charge_m)) + 1.0
    whole = needs_regions | np.array(
        [m.availability.survive_region_loss for m in models], dtype=bool
    )
    best_rate = np.zeros(n_m)
    np.maximum.at(best_rate, pools.model, pools.rate)
    free_stops, free_starts = _churn_slack(models, pools, sites.cap, demand_m, best_rate)
    return Candidates(
        problem,
        gpu_types,
        pools,
        routes,
        demands,
        _slo_excluded(problem, types, grid.allowed, pairs, sites.rtt),
        floor_penalty,
        sites.cap,
        best_rate,
        _model_cuts(pools, n_m),
        whole,
        free_stops,
        free_starts,
        sites.node_free,
    )


def _sites(problem: Problem, gpu_types: tuple[str, ...]) -> _Sites:
    """The regions' GPUs, nodes, energy and prices, the zones' RTTs and what runs where."""
    models, regions, zones = problem.models, problem.regions, problem.zones
    gpu_index = {g: i for i, g in enumerate(gpu_types)}
    region_index = {r.name: i for i, r in enumerate(regions)}
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
    return _Sites(
        gpu_index=gpu_index,
        rtt=rtt,
        cap=cap,
        node_free=node_free,
        pue=np.array([r.pue for r in regions]),
        intensity=np.array([r.carbon_intensity for r in regions]),
        price=np.maximum(np.array([r.power_price_usd_per_mwh for r in regions]), 0.0),
        gpu_hour=gpu_hour,
        current=current,
    )


def _replica_types(
    models: Sequence[Model], gpu_index: dict[str, int], slo: FloatArray
) -> _ReplicaTypes:
    """Per (model, GPU type) replica parameters; the linearised rate is one replica's capacity."""
    mg_model, mg_gpu, slot_counts, service, budget, scv, prefill, gpr, active_w, idle_w = (
        [] for _ in range(10)
    )
    for m, model in enumerate(models):
        for gname in model.gpu_types:
            rm = model.replica_model(gname)
            prof = model.profiles[gname]
            mg_model.append(m)
            mg_gpu.append(gpu_index[gname])
            slot_counts.append(rm.slots)
            service.append(rm.service_time_s)
            budget.append(rm.wait_budget_s)
            scv.append(rm.scv)
            prefill.append(rm.prefill_s)
            gpr.append(prof.gpus_per_replica)
            active_w.append(prof.active_power_watts)
            idle_w.append(prof.idle_power_watts)
    mg_m = np.array(mg_model, dtype=np.int64)
    slot_countsa = np.array(slot_counts, dtype=np.float64)
    service_a = np.array(service)
    rate = max_arrival_array(slot_countsa, 1.0 / service_a, np.array(budget), np.array(scv))
    return _ReplicaTypes(
        model=mg_m,
        gpu=np.array(mg_gpu, dtype=np.int64),
        slots=slot_countsa,
        service=service_a,
        wait_budget=np.array(budget),
        scv=np.array(scv),
        prefill=np.array(prefill),
        gpus_per_replica=np.array(gpr, dtype=np.int64),
        idle_w=np.array(idle_w),
        rate=rate,
        route_budget=slo[mg_m] - np.array(prefill) - np.array(budget),
        dyn_j=(np.array(active_w) - np.array(idle_w)) * service_a / np.maximum(slot_countsa, 1.0),
        usable=rate > 0,
    )


def _grid(problem: Problem, sites: _Sites, types: _ReplicaTypes) -> _Grid:
    """Candidate pools: every usable (model, gpu) x allowed region with GPUs or current
    replicas."""
    models, regions = problem.models, problem.regions
    n_r = len(regions)
    allowed = np.array([[m.region_allowed(r.name) for r in regions] for m in models])
    pm = np.repeat(types.model, n_r)
    pg = np.repeat(types.gpu, n_r)
    pr = np.tile(np.arange(n_r), types.model.size)
    pmg = np.repeat(np.arange(types.model.size), n_r)
    fits = _fitting(sites.cap, sites.node_free, pr, pg, types.gpus_per_replica[pmg])
    running = sites.current[pm, pr, pg] > 0
    keep = types.usable[pmg] & allowed[pm, pr] & ((fits > 0) | running)
    return _Grid(model=pm, gpu=pg, region=pr, replica_type=pmg, allowed=allowed, keep=keep)


def _demand_pairs(problem: Problem) -> _Pairs:
    """Each (model, zone) with demand, in the order of the models and their demand maps."""
    d_model, d_zone, d_rate = [], [], []
    zone_index = {z: i for i, z in enumerate(problem.zones)}
    for m, model in enumerate(problem.models):
        for zone, rate in model.demand.items():
            if rate > 0:
                d_model.append(m)
                d_zone.append(zone_index[zone])
                d_rate.append(rate)
    return _Pairs(
        model=np.array(d_model, dtype=np.int64),
        zone=np.array(d_zone, dtype=np.int64),
        rate=np.array(d_rate, dtype=np.float64),
    )


def _slo_routes(
    grid: _Grid, pairs: _Pairs, rtt: FloatArray, route_budget: FloatArray, n_m: int
) -> tuple[IntArray, IntArray, FloatArray]:
    """Route candidates: each demand pair x the model's kept pools, those within the route
    budget. Returns per route its pair, its pool in the grid and its RTT."""
    cand = np.flatnonzero(grid.keep)
    order = np.argsort(grid.model[cand], kind="stable")
    cand = cand[order]
    starts = np.searchsorted(grid.model[cand], np.arange(n_m + 1))
    per_model = starts[1:] - starts[:-1]
    reps = per_model[pairs.model]
    k_demand = np.repeat(np.arange(pairs.model.size), reps)
    offsets = np.arange(k_demand.size) - np.repeat(np.cumsum(reps) - reps, reps)
    k_cand = (
        cand[starts[pairs.model[k_demand]] + offsets]
        if k_demand.size
        else np.zeros(0, dtype=np.int64)
    )
    k_rtt = rtt[pairs.zone[k_demand], grid.region[k_cand]]
    eligible = k_rtt <= route_budget[grid.replica_type[k_cand]] + 1e-12
    return k_demand[eligible], k_cand[eligible], k_rtt[eligible]


def _pools_that_matter(
    grid: _Grid, k_cand: IntArray, current: FloatArray, needs_regions: NDArray[np.bool_]
) -> IntArray:
    """Grid indices of the pools kept: routed ones, those running now, and for floors all
    candidates of that model."""
    routed = np.zeros(grid.model.size, dtype=bool)
    routed[k_cand] = True
    running = current[grid.model, grid.region, grid.gpu] > 0
    return np.flatnonzero(grid.keep & (routed | running | needs_regions[grid.model]))


def _pools(
    problem: Problem, sites: _Sites, types: _ReplicaTypes, grid: _Grid, pool_ids: IntArray
) -> Pools:
    """The kept pools with their capacity, replicas and footprint; the normalised costs are
    left at zero for `_with_costs`, which needs the footprints of every pool first."""
    p_m, p_r, p_g, p_mg = (
        grid.model[pool_ids],
        grid.region[pool_ids],
        grid.gpu[pool_ids],
        grid.replica_type[pool_ids],
    )
    p_gpr = types.gpus_per_replica[p_mg]
    models = problem.models
    max_rep = np.array([m.max_replicas if m.max_replicas is not None else 10**9 for m in models])
    p_upper = np.maximum(
        np.minimum(_fitting(sites.cap, sites.node_free, p_r, p_g, p_gpr), max_rep[p_m]), 0
    ).astype(np.float64)
    idle_kwh = types.idle_w[p_mg] / 1000.0  # per replica-hour
    dyn_kwh = types.dyn_j[p_mg] * 3600.0 / J_PER_KWH  # per hour at 1 req/s
    pue, intensity, price = sites.pue[p_r], sites.intensity[p_r], sites.price[p_r]
    zero = np.zeros(pool_ids.size)
    return Pools(
        model=p_m,
        region=p_r,
        gpu=p_g,
        gpus_per_replica=p_gpr,
        rate=types.rate[p_mg],
        upper=p_upper,
        current=sites.current[p_m, p_r, p_g],
        carbon_per_replica=idle_kwh * pue * intensity,
        carbon_per_request=dyn_kwh * pue * intensity,
        usd_per_replica=idle_kwh * pue * price / 1000.0 + p_gpr * sites.gpu_hour[p_r, p_g],
        usd_per_request=dyn_kwh * pue * price / 1000.0,
        cost_per_replica=zero,
        cost_per_request=zero,
        slots=types.slots[p_mg],
        service_rate=1.0 / types.service[p_mg],
        scv=types.scv[p_mg],
        wait_budget=types.wait_budget[p_mg],
        prefill=types.prefill[p_mg],
    )


def _weights(
    models: Sequence[Model], pools: Pools, demand_m: FloatArray, slo: FloatArray
) -> _Weights:
    """Each model's weights over the references of its own demand (see `_Weights`)."""
    n_m = len(models)
    p_m, p_rate = pools.model, pools.rate
    mean_rate = mean_by(p_m, p_rate, n_m, default=1.0)
    scale_load = np.maximum(demand_m, mean_rate)
    per_request_carbon = pools.carbon_per_replica / p_rate + pools.carbon_per_request
    per_request_usd = pools.usd_per_replica / p_rate + pools.usd_per_request
    ref_carbon = scale_load * mean_by(p_m, per_request_carbon, n_m, default=0.0)
    ref_usd = scale_load * mean_by(p_m, per_request_usd, n_m, default=0.0)
    ref_latency = scale_load * slo
    w = np.array([[m.weights.latency, m.weights.carbon, m.weights.cost] for m in models]).reshape(
        -1, 3
    )
    return _Weights(
        carbon=_safe_div(w[:, 1], ref_carbon),
        usd=_safe_div(w[:, 2], ref_usd),
        latency=w[:, 0] / ref_latency,
        scale_load=scale_load,
    )


def _with_costs(pools: Pools, weights: _Weights) -> Pools:
    """The pools with their carbon and dollars weighed into one objective."""
    w_c, w_u = weights.carbon[pools.model], weights.usd[pools.model]
    return replace(
        pools,
        cost_per_replica=w_c * pools.carbon_per_replica + w_u * pools.usd_per_replica,
        cost_per_request=w_c * pools.carbon_per_request + w_u * pools.usd_per_request,
    )


def _unserved_costs(
    pools: Pools, weights: _Weights, slo: FloatArray, n_m: int
) -> tuple[FloatArray, FloatArray]:
    """Per model, the penalty per req/s unserved and the charge once any is unserved: both
    above serving it anywhere, even with a replica of its own."""
    p_m, p_rate = pools.model, pools.rate
    unit = pools.cost_per_replica / p_rate + pools.cost_per_request
    worst = np.zeros(n_m)
    np.maximum.at(worst, p_m, unit)
    penalty = SLACK_FACTOR * (worst + weights.latency * slo) + 1.0 / weights.scale_load
    # However small the remainder, leaving it unserved also costs more than a whole extra
    # replica anywhere (with its latency), so serving all demand wins whenever capacity exists.
    full_replica = pools.cost_per_replica + p_rate * (
        pools.cost_per_request + weights.latency[p_m] * slo[p_m]
    )
    charge = np.zeros(n_m)
    np.maximum.at(charge, p_m, SLACK_FACTOR * full_replica)
    return penalty, charge


def _best_rate_per_pair(routes: Routes, pools: Pools, n_pairs: int) -> FloatArray:
    """Per demand pair, the best per-replica rate among the pools its routes reach."""
    best = np.zeros(n_pairs)
    np.maximum.at(best, routes.pair, pools.rate[routes.pool])
    return best


def _slo_excluded(
    problem: Problem,
    types: _ReplicaTypes,
    allowed: NDArray[np.bool_],
    pairs: _Pairs,
    rtt: FloatArray,
) -> dict[int, list[tuple[str, str]]]:
    """Per model, each zone with an allowed region beyond every route budget of the model, and
    the nearest such region: why that zone's users are not served from there."""
    route_budget_m = np.full(len(problem.models), -np.inf)
    np.maximum.at(route_budget_m, types.model[types.usable], types.route_budget[types.usable])
    excluded: dict[int, list[tuple[str, str]]] = {}
    for i in range(pairs.model.size):
        m, u = int(pairs.model[i]), int(pairs.zone[i])
        out = np.flatnonzero(allowed[m] & (rtt[u] > route_budget_m[m]) & np.isfinite(rtt[u]))
        if out.size:
            nearest = out[np.argmin(rtt[u, out])]
            excluded.setdefault(m, []).append(
                (problem.zones[u], problem.regions[int(nearest)].name)
            )
    return excluded


def _churn_slack(
    models: Sequence[Model],
    pools: Pools,
    cap: FloatArray,
    demand_m: FloatArray,
    best_rate: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Per model, the stops and the starts that are scaling, not moves.

    Churn is charged on moves only. Stopping running replicas beyond what the model needs at
    its best rate follows falling demand; starting replicas up to what it needs at its worst
    rate follows rising demand: neither is a move. Both bounds are generous, so scaling is
    never charged and a move (a stop and a start) always is, beyond that slack.
    """
    n_m = len(models)
    p_m, p_rate, p_cur, p_gpr = pools.model, pools.rate, pools.current, pools.gpus_per_replica
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
    np.add.at(held_gpus, (pools.region, pools.gpu), p_cur * p_gpr)
    short_gpus = np.maximum(held_gpus - cap, 0.0)[pools.region, pools.gpu]
    forced_m = np.bincount(
        p_m, weights=np.minimum(p_cur, np.ceil(short_gpus / p_gpr)), minlength=n_m
    ).astype(np.float64)
    free_stops = np.minimum(
        np.maximum(running_m - np.maximum(need, floor_need), 0.0) + forced_m, running_m
    )
    free_starts = np.maximum(np.maximum(need_most, floor_need) - running_m, 0.0) + forced_m
    return free_stops, free_starts


def _model_cuts(pools: Pools, n_m: int) -> ModelCuts:
    """The divisors of each model's rounding cuts: the distinct per-replica rates of its
    pools."""
    cut_pairs = np.unique(np.stack([pools.model, pools.rate], axis=1)[pools.rate > 0], axis=0)
    cut_model = cut_pairs[:, 0].astype(np.int64)
    return ModelCuts(cut_model, cut_pairs[:, 1], np.searchsorted(cut_model, np.arange(n_m + 1)))


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


def _safe_div(num: FloatArray, den: FloatArray) -> FloatArray:
    """num / den, and 0 where den is nil: a model's carbon or cost reference below
    MIN_REFERENCE (gCO2/h, $/h) would overflow its weight (a subnormal power price did)."""
    ok = den > MIN_REFERENCE
    return np.where(ok, num / np.where(ok, den, 1.0), 0.0)
