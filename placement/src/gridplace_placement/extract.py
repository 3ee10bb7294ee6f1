"""Turn replicas and routed rates over the compiled index sets into a checked, explained Plan."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridplace_placement.arrays import FloatArray
from gridplace_placement.builder import Compiled
from gridplace_placement.capacity import max_arrival_array, p95_wait_array
from gridplace_placement.explain import floors_unmet, reasons_by_model
from gridplace_placement.plan import (
    ModelOutcome,
    Plan,
    PlanStatus,
    PoolPlan,
    Route,
    Timing,
    ZoneOutcome,
)

EPS = 1e-6


@dataclass(frozen=True)
class Allocation:
    """Replicas per pool and routed rate per route, over the compiled index sets."""

    replicas: FloatArray
    routed: FloatArray


@dataclass(frozen=True)
class Evaluation:
    objective: float
    per_model: FloatArray  # each model's share of the objective (all but the global budget)
    unserved: FloatArray  # per demand pair
    stopped: FloatArray  # per pool
    moved: FloatArray  # per model: what the churn penalty and budgets count
    floor_short: int  # replicas or regions missing from floors
    churn_over: float
    # The objective with the churn budgets on the MILP's stricter measure (`charged_moves`):
    # what the optimiser compares plans by, so that they keep the budgets under both measures
    # and its bound, which holds for that objective, holds for them.
    search_objective: float


def evaluate(c: Compiled, a: Allocation) -> Evaluation:
    """Objective of an assignment under the linearised model, with its slacks. Every term but
    the problem-wide churn budget belongs to one model, so `per_model` splits the objective."""
    p, k, d, prob = c.pools, c.routes, c.demands, c.problem
    n_m = len(prob.models)
    served = np.zeros(d.rate.size)
    width = int(max(k.zone.max(initial=0), d.zone.max(initial=0))) + 1
    key = d.model * width + d.zone
    order = np.argsort(key)
    pos = order[np.searchsorted(key[order], k.model * width + k.zone)] if k.size else k.model
    np.add.at(served, pos, a.routed)
    unserved = d.rate - served
    unserved = np.where(unserved > EPS * np.maximum(d.rate, 1.0), unserved, 0.0)  # float noise
    stopped = np.maximum(p.current - a.replicas, 0.0)
    per_model = np.bincount(p.model, weights=a.replicas, minlength=n_m)
    n_r = len(prob.regions)
    min_rep = np.array([m.min_replicas for m in prob.models], dtype=np.float64)
    short_m = np.maximum(min_rep - per_model, 0.0)
    by_region = np.bincount(p.model * n_r + p.region, weights=a.replicas, minlength=n_m * n_r)
    per_region_min = np.array(
        [m.availability.per_region_min for m in prob.models], dtype=np.float64
    )
    min_regions = np.array([m.availability.min_regions for m in prob.models], dtype=np.float64)
    used = (by_region.reshape(n_m, n_r) >= per_region_min[:, None] - 1e-9).sum(axis=1)
    short_m += np.maximum(min_regions - used, 0.0)
    moved = moved_replicas(c, a.replicas)
    budget_m = np.array([np.inf if m.churn_budget is None else m.churn_budget for m in prob.models])
    over_m = np.maximum(moved - budget_m, 0.0)
    over_all = (
        max(float(moved.sum()) - prob.churn_budget, 0.0) if prob.churn_budget is not None else 0.0
    )
    strict = charged_moves(c, a.replicas)
    over_strict = float(np.maximum(strict - budget_m, 0.0).sum())
    if prob.churn_budget is not None:
        over_strict += max(float(strict.sum()) - prob.churn_budget, 0.0)
    charged = np.zeros(n_m)
    charged[d.model[unserved > 0]] = d.charge[unserved > 0]
    model_cost = (
        np.bincount(p.model, weights=p.cost_per_replica * a.replicas, minlength=n_m)
        + np.bincount(k.model, weights=k.cost * a.routed, minlength=n_m)
        + np.bincount(d.model, weights=d.penalty * unserved, minlength=n_m)
        + charged
        + prob.churn_penalty * strict
        + c.floor_penalty * (short_m + over_m)
    )
    objective = float(model_cost.sum()) + c.floor_penalty * over_all
    return Evaluation(
        objective,
        model_cost,
        unserved,
        stopped,
        moved,
        round(float(short_m.sum())),
        over_all + float(over_m.sum()),
        objective + c.floor_penalty * (over_strict - over_all - float(over_m.sum())),
    )


def moved_replicas(c: Compiled, replicas: FloatArray) -> FloatArray:
    """Per model, the replicas the plan moves (what the churn budgets count): stops beyond
    those falling demand frees, or starts beyond those rising demand needs as far as they
    replace stopped replicas. A plan that stops nothing moves nothing; the MILP bounds the
    stricter `charged_moves`, so its plans keep the budgets under both."""
    stopped, excess_stops, excess_starts = _churn(c, replicas)
    moves = np.maximum(excess_stops, np.minimum(stopped, excess_starts))
    return np.round(np.maximum(moves, 0.0), 9).astype(np.float64)  # whole, up to float noise


def charged_moves(c: Compiled, replicas: FloatArray) -> FloatArray:
    """Per model, the MILP's measure of moves, which the churn penalty is paid on: stops beyond
    those falling demand frees, or any starts beyond those rising demand needs."""
    _, excess_stops, excess_starts = _churn(c, replicas)
    return np.round(np.maximum(np.maximum(excess_stops, excess_starts), 0.0), 9).astype(np.float64)


def _churn(c: Compiled, replicas: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per model: replicas stopped, stops beyond the free ones, starts beyond the free ones
    (zero for models that run nothing now)."""
    p, n_m, cands = c.pools, len(c.problem.models), c.candidates
    stopped: FloatArray = np.bincount(
        p.model, np.maximum(p.current - replicas, 0.0), minlength=n_m
    ).astype(np.float64)
    started = np.bincount(p.model, np.maximum(replicas - p.current, 0.0), minlength=n_m)
    runs = np.bincount(p.model, p.current, minlength=n_m) > 0
    excess_stops: FloatArray = np.where(runs, stopped - cands.free_stops, 0.0)
    excess_starts: FloatArray = np.where(runs, started - cands.free_starts, 0.0)
    return stopped, excess_stops, excess_starts


def assemble(
    c: Compiled,
    a: Allocation,
    *,
    policy: str,
    solved: bool,
    target_gap: float,
    bound: float,
    timing: Timing,
    held: dict[int, float] | None = None,
    kept_current: bool = False,
    min_improvement: float = 0.0,
) -> Plan:
    """Build the Plan: exact queueing check, totals, outcomes per zone and model, reasons.
    `held`: models whose current pools hysteresis kept, with the share of their objective the
    plan turned down would have saved."""
    held = held or {}
    prob, p, k, d = c.problem, c.pools, c.routes, c.demands
    models, regions, zones = prob.models, prob.regions, prob.zones
    ev = evaluate(c, a)
    n = np.round(a.replicas)
    load = np.bincount(k.pool, weights=a.routed, minlength=p.size).astype(np.float64)

    # Exact check of the chosen pools with the pooled Erlang-C model.
    slots, mu, scv, budget, prefill = p.slots, p.service_rate, p.scv, p.wait_budget, p.prefill
    used = n > 0
    wait = np.where(
        used, p95_wait_array(n * slots, load, mu, scv), np.where(load > EPS, np.inf, 0.0)
    )
    exact_cap = np.zeros(p.size)
    if used.any():
        exact_cap[used] = max_arrival_array((n * slots)[used], mu[used], budget[used], scv[used])

    carbon_m = np.bincount(
        p.model,
        weights=n * p.carbon_per_replica + load * p.carbon_per_request,
        minlength=len(models),
    )
    gpu_usd = n * _gpu_hour_usd(c)
    energy_usd = n * p.usd_per_replica + load * p.usd_per_request - gpu_usd
    usd_m = np.bincount(p.model, weights=energy_usd + gpu_usd, minlength=len(models))

    pools = [
        PoolPlan(
            model=models[int(p.model[i])].name,
            region=regions[int(p.region[i])].name,
            gpu_type=c.gpu_types[int(p.gpu[i])],
            replicas=int(n[i]),
            current_replicas=int(p.current[i]),
            load_rps=float(load[i]),
            capacity_rps=float(exact_cap[i]),
            p95_wait_seconds=float(wait[i]),
        )
        for i in np.flatnonzero(used | (p.current > 0))
    ]
    demand_of = {
        (int(m), int(u)): float(r) for m, u, r in zip(d.model, d.zone, d.rate, strict=True)
    }
    routes = [
        Route(
            model=models[int(k.model[i])].name,
            zone=zones[int(k.zone[i])],
            region=regions[int(p.region[k.pool[i]])].name,
            gpu_type=c.gpu_types[int(p.gpu[k.pool[i]])],
            rate_rps=float(a.routed[i]),
            share=float(a.routed[i] / demand_of[(int(k.model[i]), int(k.zone[i]))]),
        )
        for i in np.flatnonzero(a.routed > EPS)
    ]
    ttft = k.rtt_s + wait[k.pool] + prefill[k.pool]
    worst: dict[tuple[int, int], float] = {}
    for i in np.flatnonzero(a.routed > EPS):
        key = (int(k.model[i]), int(k.zone[i]))
        worst[key] = max(worst.get(key, 0.0), float(ttft[i]))
    zone_outcomes = []
    for j in range(d.rate.size):
        key = (int(d.model[j]), int(d.zone[j]))
        model = models[key[0]]
        p95 = worst.get(key)
        zone_outcomes.append(
            ZoneOutcome(
                model=model.name,
                zone=zones[key[1]],
                demand_rps=float(d.rate[j]),
                unserved_rps=float(ev.unserved[j]),
                predicted_p95_ttft_seconds=p95,
                slo_met=p95 is not None and p95 <= model.slo_p95_ttft_seconds + 1e-9,
            )
        )
    _, excess_stops, excess_starts = _churn(c, n)
    runs = np.bincount(p.model, p.current, minlength=len(models)) > 0
    if_started = np.where(runs, np.maximum(np.maximum(excess_stops, excess_starts + 1), 0.0), 0.0)
    reasons = reasons_by_model(
        c,
        n,
        load,
        ev.unserved,
        ev.moved,
        optimised=policy == "gridplace",
        charged=(charged_moves(c, n), if_started),
    )
    for m, saving in held.items():
        reasons.setdefault(m, []).insert(
            0,
            f"kept its current pools: the best other plan found would lower its objective by "
            f"{max(saving, 0.0):.2%}, not more than minImprovement {min_improvement:.2%}",
        )
    unmet = floors_unmet(c, n)
    unserved_m = np.bincount(d.model, weights=ev.unserved, minlength=len(models))
    stopped_m = np.bincount(p.model, weights=ev.stopped, minlength=len(models))
    model_outcomes = []
    for m, model in enumerate(models):
        mine = (p.model == m) & used
        model_outcomes.append(
            ModelOutcome(
                name=model.name,
                replicas=int(n[mine].sum()),
                regions=sorted({regions[int(r)].name for r in p.region[mine]}),
                carbon_g_per_hour=float(carbon_m[m]),
                usd_per_hour=float(usd_m[m]),
                unserved_rps=float(unserved_m[m]),
                stopped_replicas=int(stopped_m[m]),
                moved_replicas=round(float(ev.moved[m])),
                kept_current=m in held,
                floor_unmet=unmet.get(m),
                reasons=reasons.get(m, []),
            )
        )
    objective = ev.objective
    gap = max(objective - bound, 0.0) / max(abs(objective), 1e-9)
    slack_used = bool(ev.unserved.sum() > EPS or ev.floor_short or ev.churn_over > EPS)
    if not solved:
        status = PlanStatus.NO_SOLUTION
    elif slack_used:
        status = PlanStatus.INFEASIBLE_WITH_SLACK
    else:
        status = PlanStatus.OPTIMAL if gap <= target_gap + 1e-12 else PlanStatus.FEASIBLE
    return Plan(
        policy=policy,
        status=status,
        objective=objective,
        lower_bound=bound,
        gap=gap,
        carbon_g_per_hour=float(carbon_m.sum()),
        energy_usd_per_hour=float(energy_usd.sum()),
        gpu_usd_per_hour=float(gpu_usd.sum()),
        usd_per_hour=float(usd_m.sum()),
        unserved_rps=float(ev.unserved.sum()),
        stopped_replicas=int(ev.stopped.sum()),
        moved_replicas=round(float(ev.moved.sum())),
        kept_current=kept_current,
        pools=pools,
        routes=routes,
        zones=zone_outcomes,
        models=model_outcomes,
        timing=timing,
        size={
            "pools": p.size,
            "routes": k.size,
            "variables": c.milp.num_vars,
            "constraints": c.milp.num_rows,
        },
    )


def _gpu_hour_usd(c: Compiled) -> FloatArray:
    p, regions = c.pools, c.problem.regions
    prices = np.array(
        [
            regions[int(r)].gpu_hour_price_usd.get(c.gpu_types[int(g)], 0.0)
            for r, g in zip(p.region, p.gpu, strict=True)
        ]
    )
    return prices * p.gpus_per_replica
