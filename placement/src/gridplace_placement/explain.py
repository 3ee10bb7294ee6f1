"""Short human reasons for a model's placement: which constraint or cost term decided it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from gridplace_placement.arrays import FloatArray
    from gridplace_placement.builder import Compiled

MAX_ITEMS = 3


def reasons_by_model(
    c: Compiled,
    replicas: FloatArray,
    load: FloatArray,
    unserved: FloatArray,
    moved: FloatArray,
    *,
    optimised: bool,
    charged: tuple[FloatArray, FloatArray] | None = None,
) -> dict[int, list[str]]:
    """Reasons per model index. Cost comparisons between regions are given only for optimised
    plans: a baseline did not choose by cost. `charged`: per model, the moves the MILP counts
    (its churn budgets bind on that count) as planned and with one more replica started."""
    p, k, d, prob = c.pools, c.routes, c.demands, c.problem
    regions, zones = prob.regions, prob.zones
    gpus_used = np.zeros((len(regions), len(c.gpu_types)))
    np.add.at(gpus_used, (p.region, p.gpu), replicas * p.gpus_per_replica)
    capacity = c.candidates.capacity  # zero where a region has none of a type
    full = gpus_used[p.region, p.gpu] + p.gpus_per_replica > capacity[p.region, p.gpu]
    # Running replicas the region's GPUs of the type no longer hold (cordoned, taken or gone).
    lost = capacity[p.region, p.gpu] < p.current * p.gpus_per_replica
    unit = p.cost_per_replica / np.maximum(p.rate, 1e-12) + p.cost_per_request
    routed_pool = np.zeros(p.size, dtype=bool)
    routed_pool[k.pool] = True
    churn_binding = prob.churn_budget is not None and float(moved.sum()) >= prob.churn_budget - 1e-9

    unmet = floors_unmet(c, replicas)
    by_model = np.argsort(p.model, kind="stable")
    starts = np.searchsorted(p.model[by_model], np.arange(len(prob.models) + 1))
    out: dict[int, list[str]] = {}
    for i, model in enumerate(prob.models):
        mine = by_model[starts[i] : starts[i + 1]]
        reasons: list[str] = [unmet[i]] if i in unmet else []
        for q in mine[lost[mine]][:MAX_ITEMS]:
            reasons.append(
                f"GPUs lost in {regions[int(p.region[q])].name} ({c.gpu_types[int(p.gpu[q])]}): "
                f"{capacity[p.region[q], p.gpu[q]]:g} left for {p.current[q]:g} running replicas"
            )
        at_max = model.max_replicas is not None and replicas[mine].sum() >= model.max_replicas
        budget = _spent_budget(c, i, charged)
        for j in np.flatnonzero((d.model == i) & (unserved > 1e-6))[:MAX_ITEMS]:
            if at_max:
                why = f"maxReplicas={model.max_replicas} reached"
            elif model.availability.survive_region_loss:
                why = "surviveRegionLoss: the other regions could not carry it if one were lost"
            elif not _free_capacity_within_slo(
                c, i, int(d.zone[j]), gpus_used=gpus_used, replicas=replicas, load=load
            ):
                why = "no GPU capacity left in a region within the SLO"
            elif budget is not None:
                why = (
                    f"GPU capacity within the SLO is free, but starting a replica there would "
                    f"pass the churn budget ({budget})"
                )
            else:
                why = "GPU capacity within the SLO is free, but the search stopped before using it"
            reasons.append(
                f"{unserved[j]:.3g} req/s from zone {zones[int(d.zone[j])]} unserved: {why}"
            )
        used = mine[replicas[mine] > 0]
        worst_used = float(unit[used].max()) if used.size else np.inf
        blocked = mine[full[mine] & ~lost[mine] & routed_pool[mine] & (unit[mine] < worst_used)]
        for q in blocked[np.argsort(unit[blocked])][:MAX_ITEMS]:
            reasons.append(
                f"GPU capacity full in {regions[int(p.region[q])].name} "
                f"({c.gpu_types[int(p.gpu[q])]}), which would cost less"
            )
        for zone, region in c.slo_excluded.get(i, [])[:MAX_ITEMS]:
            ms = prob.rtt_ms[zone][region]
            reasons.append(f"{region} is outside the SLO from zone {zone} ({ms:g} ms RTT)")
        spare = mine[routed_pool[mine] & ~full[mine] & (replicas[mine] == 0)]
        if optimised and used.size:
            main = used[np.argmax(load[used])]
            other = spare[~np.isin(p.region[spare], p.region[used])]
            if other.size:
                alt = other[np.argmin(unit[other])]
                reasons.append(
                    f"{_region_terms(c, int(p.region[main]))} preferred over "
                    f"{_region_terms(c, int(p.region[alt]))} on latency, carbon and cost"
                )
        stopped = float(np.maximum(p.current[mine] - replicas[mine], 0.0).sum())
        if model.churn_budget is not None and p.current[mine].sum() > 0:
            reasons.append(
                f"churn budget: {moved[i]:g} of {model.churn_budget} moves used "
                f"({stopped:g} running replicas stopped)"
            )
        model_binding = model.churn_budget is not None and moved[i] >= model.churn_budget - 1e-9
        open_pools = mine[routed_pool[mine] & ~full[mine]]
        if (churn_binding or model_binding) and open_pools.size:
            cheapest_open = float(unit[open_pools].min())
            held = mine[(p.current[mine] > 0) & (replicas[mine] > 0) & (unit[mine] > cheapest_open)]
            for q in held[:MAX_ITEMS]:
                budget = model.churn_budget if model_binding else prob.churn_budget
                reasons.append(
                    f"churn budget ({budget}) held replicas in "
                    f"{regions[int(p.region[q])].name} ({c.gpu_types[int(p.gpu[q])]})"
                )
        n_regions = len({int(r) for r in p.region[used]})
        floor = model.availability.min_regions
        if floor and n_regions <= floor and i not in unmet:
            reasons.append(f"availability floor: at least {floor} regions")
        if model.min_replicas and replicas[mine].sum() <= model.min_replicas and i not in unmet:
            reasons.append(f"minReplicas={model.min_replicas} sets the replica count")
        if model.max_replicas is not None and replicas[mine].sum() >= model.max_replicas:
            reasons.append(f"maxReplicas={model.max_replicas} caps the replica count")
        out[i] = reasons
    return out


def _spent_budget(c: Compiled, m: int, charged: tuple[FloatArray, FloatArray] | None) -> int | None:
    """The churn budget (model m's, else the problem's) one more started replica of model m
    would pass, as the MILP counts moves; None if neither would be passed."""
    if charged is None:
        return None
    now, started = charged
    own, shared = c.problem.models[m].churn_budget, c.problem.churn_budget
    if own is not None and started[m] > own + 1e-9:
        return own
    if shared is not None and float(now.sum() - now[m] + started[m]) > shared + 1e-9:
        return shared
    return None


def floors_unmet(c: Compiled, replicas: FloatArray) -> dict[int, str]:
    """Per model index whose plan misses its availability floor (minRegions regions with
    perRegionMin replicas each) or minReplicas: what it misses and what could hold it."""
    p, prob = c.pools, c.problem
    n_r = len(prob.regions)
    out: dict[int, str] = {}
    for i, model in enumerate(prob.models):
        mine = p.model == i
        by_region = np.bincount(p.region[mine], weights=replicas[mine], minlength=n_r)
        # Pool upper bounds count each model's GPUs alone: what the others leave may be less.
        room = np.bincount(p.region[mine], weights=p.upper[mine], minlength=n_r)
        floor, per_region = model.availability.min_regions, model.availability.per_region_min
        missed = []
        have = int((by_region >= per_region - 1e-9).sum())
        if have < floor:
            fit = int((room >= per_region).sum())
            missed.append(
                f"availability floor unmet: {have} of minRegions={floor} regions run "
                f"perRegionMin={per_region} replicas; {fit} allowed regions have the GPUs for it"
            )
        total = float(replicas[mine].sum())
        if total < model.min_replicas - 1e-9:
            most = float(p.upper[mine].sum())
            if model.max_replicas is not None:
                most = min(most, float(model.max_replicas))
            missed.append(
                f"minReplicas unmet: {total:g} of minReplicas={model.min_replicas} replicas; "
                f"the GPUs of its allowed regions hold {most:g}"
            )
        if missed:
            out[i] = "; ".join(missed)
    return out


def _free_capacity_within_slo(
    c: Compiled,
    model: int,
    zone: int,
    *,
    gpus_used: FloatArray,
    replicas: FloatArray,
    load: FloatArray,
) -> bool:
    """Whether any SLO-eligible pool for (model, zone) has room: free GPUs for one more
    replica, or spare capacity in the replicas it runs."""
    cands = c.candidates
    cp, ck = cands.pools, cands.routes
    pools = np.unique(ck.pool[(ck.model == model) & (ck.zone == zone)])
    gpus_free = (
        cands.capacity[cp.region[pools], cp.gpu[pools]] - gpus_used[cp.region[pools], cp.gpu[pools]]
    )
    if (gpus_free >= cp.gpus_per_replica[pools]).any():
        return True
    mine = np.isin(c.pool_ids, pools)
    return bool((replicas[mine] * c.pools.rate[mine] - load[mine] > 1e-6).any())


def _region_terms(c: Compiled, r: int) -> str:
    reg = c.problem.regions[r]
    return f"{reg.name} ({reg.carbon_intensity:g} gCO2/kWh, ${reg.power_price_usd_per_mwh:g}/MWh)"
