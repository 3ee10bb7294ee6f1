"""Properties of the pure placement path on random small problems, under every policy.

Problems mix what production throws at the solver: GPU types a region lacks or has none of,
replicas running where no GPUs of their type are left, floors beyond the regions, churn budgets
of zero, zones out of reach of the SLO, demand of zero. Whatever the input, `solve` returns a
plan, and the plan keeps GPU capacity, maxReplicas and SLO eligibility, accounts for every
request, and meets each floor and churn budget or says that it does not.

Runs are derandomized (same examples on every run of the same code), bounded in examples and
free of a per-example deadline: a solve has its own time limit.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gridplace_placement.options import SolveOptions
from gridplace_placement.plan import Plan, PlanStatus
from gridplace_placement.policies import POLICIES, Policy
from gridplace_placement.problem import Problem
from gridplace_placement.solver import solve

GPU_TYPES = ("NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-40GB", "NVIDIA-L40S")
OPTIONS = SolveOptions(time_limit_seconds=0.5)
EPS = 1e-6


def bounded(examples: int) -> settings:
    """At most `examples` problems, the same on every run, no per-example deadline."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


@st.composite
def profiles(draw: st.DrawFn, gpu: str) -> dict[str, Any]:
    active = draw(st.floats(150.0, 700.0))
    return {
        "gpuType": gpu,
        "gpusPerReplica": draw(st.sampled_from([1, 1, 2])),
        "decodeBaseSeconds": draw(st.floats(0.005, 0.04)),
        "decodePerSequenceSeconds": draw(st.floats(0.0001, 0.0008)),
        "maxBatch": draw(st.integers(4, 512)),
        "prefillSecondsPerToken": draw(st.floats(0.0, 0.0004)),
        "activePowerWatts": active,
        "idlePowerWatts": active * draw(st.floats(0.1, 0.9)),
    }


@st.composite
def problems(draw: st.DrawFn) -> Problem:
    """A small valid Problem: 1-3 models, 1-4 regions, 1-3 GPU types, 1-3 user zones."""
    types = draw(st.lists(st.sampled_from(GPU_TYPES), min_size=1, max_size=3, unique=True))
    regions = [f"r{i}" for i in range(draw(st.integers(1, 4)))]
    zones = [f"z{i}" for i in range(draw(st.integers(1, 3)))]
    # Per region and type: absent (nodes gone), zero (cordoned) or a count.
    gpus = {
        r: {
            g: n
            for g in types
            if (n := draw(st.sampled_from([None, 0, 1, 2, 4, 8, 12]))) is not None
        }
        for r in regions
    }
    if not any(gpus.values()):  # some region must list a type for any model to be valid
        gpus[regions[0]][types[0]] = draw(st.integers(0, 12))
    listed = sorted({g for kinds in gpus.values() for g in kinds})
    rtt = {
        z: {
            r: draw(st.floats(1.0, 400.0))
            for r in draw(st.lists(st.sampled_from(regions), min_size=1, unique=True))
        }
        for z in zones
    }
    models = []
    for i in range(draw(st.integers(1, 3))):
        accepted = draw(st.lists(st.sampled_from(listed), min_size=1, unique=True))
        min_regions = draw(st.sampled_from([0, 0, 0, 1, 1, 2, 5]))  # 5: beyond most problems
        per_region_min = draw(st.sampled_from([1, 1, 2]))
        min_replicas = draw(st.sampled_from([0, 0, 0, 1, 2, 4]))
        floor = max(min_replicas, min_regions * per_region_min)
        max_replicas = draw(st.one_of(st.none(), st.integers(floor, floor + 8)))
        model: dict[str, Any] = {
            "name": f"m{i}",
            "gpuTypes": accepted,
            "profiles": {g: draw(profiles(g)) for g in accepted},
            "sloP95TtftSeconds": draw(st.floats(0.4, 2.5)),
            "promptTokens": draw(st.floats(100.0, 1500.0)),
            "outputTokens": draw(st.floats(50.0, 400.0)),
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "availability": {
                "minRegions": min_regions,
                "perRegionMin": per_region_min,
                "surviveRegionLoss": draw(st.booleans()),
            },
            "weights": {
                "latency": draw(st.floats(0.0, 2.0)),
                "carbon": draw(st.floats(0.0, 2.0)),
                "cost": draw(st.floats(0.0, 2.0)),
            },
            "churnBudget": draw(st.one_of(st.none(), st.integers(0, 3))),
            "demand": {
                z: draw(st.one_of(st.just(0.0), st.floats(0.1, 80.0)))
                for z in draw(st.lists(st.sampled_from(zones), unique=True))
            },
        }
        if draw(st.booleans()):
            model["forbiddenRegions"] = draw(st.lists(st.sampled_from(regions), unique=True))
        if draw(st.booleans()):
            model["allowedRegions"] = draw(
                st.lists(st.sampled_from(regions), min_size=1, unique=True)
            )
        models.append(model)
    # What runs now, also in pools whose region has none of the type left, in regions the
    # model may no longer use, or on a type it no longer accepts.
    current = [
        {
            "model": m["name"],
            "region": draw(st.sampled_from(regions)),
            "gpuType": draw(st.sampled_from([*m["gpuTypes"], *m["gpuTypes"], *GPU_TYPES])),
            "replicas": draw(st.integers(1, 5)),
        }
        for m in draw(st.lists(st.sampled_from(models), max_size=4))
    ]
    return Problem.model_validate(
        {
            "models": models,
            "regions": [
                {
                    "name": r,
                    "gpus": gpus[r],
                    "pue": draw(st.floats(1.0, 2.0)),
                    "carbonIntensity": draw(st.floats(0.0, 900.0)),
                    "powerPriceUsdPerMwh": draw(st.floats(-50.0, 300.0)),
                }
                for r in regions
            ],
            "rttMs": rtt,
            "current": current,
            "churnBudget": draw(st.one_of(st.none(), st.integers(0, 4))),
            "churnPenalty": draw(st.sampled_from([0.0, 0.05, 5.0])),
        }
    )


def check_plan(problem: Problem, plan: Plan, policy: Policy) -> None:
    """Every property a plan of any policy must have."""
    models = {m.name: m for m in problem.models}
    capacity = {r.name: r.gpus for r in problem.regions}
    solved = plan.status != PlanStatus.NO_SOLUTION
    event(f"status {plan.status}")
    if any(a.replicas and not capacity[a.region].get(a.gpu_type) for a in problem.current):
        event("replicas run where no GPUs of their type are left")
    if any(o.floor_unmet for o in plan.models):
        event("a floor unmet")
    if plan.unserved_rps > 0:
        event("demand unserved")
    if plan.moved_replicas:
        event("replicas moved")

    # GPU capacity per (region, type): a type the region does not list has none.
    used: dict[tuple[str, str], int] = defaultdict(int)
    for pool in plan.pools:
        model = models[pool.model]
        assert pool.replicas >= 0
        assert pool.gpu_type in model.gpu_types and model.region_allowed(pool.region)
        used[(pool.region, pool.gpu_type)] += (
            pool.replicas * model.profiles[pool.gpu_type].gpus_per_replica
        )
        if pool.replicas:  # the linearised capacity holds under the exact queueing model
            assert pool.load_rps <= pool.capacity_rps + EPS * (1.0 + pool.capacity_rps)
    for (region, gpu), n in used.items():
        assert n <= capacity[region].get(gpu, 0), (region, gpu, n)

    # Routes only where the SLO is eligible; served + unserved == demand.
    served: dict[tuple[str, str], float] = defaultdict(float)
    for route in plan.routes:
        model = models[route.model]
        rtt_ms = problem.rtt_ms[route.zone].get(route.region)
        assert rtt_ms is not None, route
        budget = model.slo_p95_ttft_seconds - model.prefill_seconds(route.gpu_type)
        assert rtt_ms / 1000.0 <= budget - model.queue_wait_budget(route.gpu_type) + 1e-9
        assert route.rate_rps > 0
        served[(route.model, route.zone)] += route.rate_rps
    demand = {(m.name, z): d for m in problem.models for z, d in m.demand.items() if d > 0}
    outcomes = {(z.model, z.zone): z for z in plan.zones}
    assert set(outcomes) == set(demand)
    for key, rate in demand.items():
        zone = outcomes[key]
        assert zone.demand_rps == pytest.approx(rate)
        assert served[key] + zone.unserved_rps == pytest.approx(rate, rel=1e-6, abs=1e-6)
        assert zone.unserved_rps >= 0
        if served[key] > EPS:
            assert zone.slo_met, zone
    assert set(served) <= set(demand)
    assert plan.unserved_rps == pytest.approx(sum(z.unserved_rps for z in plan.zones), abs=1e-6)

    # maxReplicas, floors met or reported, churn budgets kept or reported.
    stops: dict[str, int] = defaultdict(int)
    planned = plan.replicas()
    running: dict[tuple[str, str, str], int] = defaultdict(int)
    for a in problem.current:
        running[(a.model, a.region, a.gpu_type)] += a.replicas
    for (name, region, gpu), n in running.items():
        stops[name] += max(n - planned.get((name, region, gpu), 0), 0)
    short = plan.status == PlanStatus.INFEASIBLE_WITH_SLACK or not solved
    for outcome in plan.models:
        model = models[outcome.name]
        total = sum(n for (m, _, _), n in planned.items() if m == model.name)
        assert outcome.replicas == total
        if model.max_replicas is not None:
            assert total <= model.max_replicas
        per_region: dict[str, int] = defaultdict(int)
        for (m, region, _), n in planned.items():
            if m == model.name:
                per_region[region] += n
        floor = model.availability
        met = total >= model.min_replicas and (
            sum(1 for n in per_region.values() if n >= floor.per_region_min) >= floor.min_regions
        )
        assert met == (outcome.floor_unmet is None), outcome
        if not met:
            assert short and outcome.floor_unmet in outcome.reasons
        assert outcome.moved_replicas <= stops[model.name]  # a move always stops a replica
        if model.churn_budget is not None and outcome.moved_replicas > model.churn_budget:
            event("a model's churn budget exceeded")
            assert short, outcome
    if problem.churn_budget is not None and plan.moved_replicas > problem.churn_budget:
        event("the problem's churn budget exceeded")
        assert short
    assert plan.moved_replicas == sum(o.moved_replicas for o in plan.models)

    if policy in ("gridplace", "naive"):  # the baselines do not plan for a region's loss
        # The certified bound holds for every plan the MILP counts, up to solver tolerances.
        assert plan.objective >= plan.lower_bound - 1e-6 * (1.0 + abs(plan.objective))
        for outcome in plan.models:
            if not models[outcome.name].availability.survive_region_loss:
                continue
            mine = [p for p in plan.pools if p.model == outcome.name]
            load = sum(p.load_rps for p in mine)
            for region in {p.region for p in mine}:
                left = sum(p.capacity_rps for p in mine if p.region != region)
                assert left >= load - EPS * (1.0 + load), (outcome.name, region)


def unserved_beside_free_gpus(problem: Problem, plan: Plan) -> list[tuple[str, str, str, str]]:
    """(model, zone, region, GPU type) where the zone's demand is left unserved although the
    region, within the SLO, has the GPUs for one more replica and the model is below
    maxReplicas. Models that must survive a region's loss or have a churn budget are skipped:
    either may rightly leave demand unserved."""
    models = {m.name: m for m in problem.models}
    used: dict[tuple[str, str], int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    for pool in plan.pools:
        gpr = models[pool.model].profiles[pool.gpu_type].gpus_per_replica
        used[(pool.region, pool.gpu_type)] += pool.replicas * gpr
        total[pool.model] += pool.replicas
    found = []
    for zone in plan.zones:
        model = models[zone.model]
        if zone.unserved_rps <= EPS or model.availability.survive_region_loss:
            continue
        if model.churn_budget is not None or problem.churn_budget is not None:
            continue
        if model.max_replicas is not None and total[model.name] >= model.max_replicas:
            continue
        for region in problem.regions:
            rtt_ms = problem.rtt_ms[zone.zone].get(region.name)
            if rtt_ms is None or not model.region_allowed(region.name):
                continue
            for g in model.gpu_types:
                budget = model.slo_p95_ttft_seconds - model.prefill_seconds(g)
                free = region.gpus.get(g, 0) - used[(region.name, g)]
                if (
                    rtt_ms / 1000.0 <= budget - model.queue_wait_budget(g) - 1e-9
                    and free >= model.profiles[g].gpus_per_replica
                    and model.replica_model(g).capacity(1) > 0
                ):
                    found.append((model.name, zone.zone, region.name, g))
    return found


def floors_clearly_feasible(problem: Problem) -> bool:
    """Whether every model's floors fit without any trade-off: each (region, type) that counts
    could hold every model's whole floor at once, and no churn budget could hold replicas."""
    if problem.churn_budget is not None or any(m.churn_budget is not None for m in problem.models):
        return False
    need: dict[str, float] = defaultdict(float)
    for m in problem.models:
        floor = max(m.min_replicas, m.availability.min_regions * m.availability.per_region_min)
        for g in m.gpu_types:
            need[g] += floor * m.profiles[g].gpus_per_replica
    for m in problem.models:
        roomy = {
            r.name
            for r in problem.regions
            for g in m.gpu_types
            if m.region_allowed(r.name)
            and r.gpus.get(g, 0) >= need[g]
            and m.replica_model(g).capacity(1) > 0
        }
        wanted = max(m.availability.min_regions, 1 if m.min_replicas else 0)
        if len(roomy) < wanted:
            return False
    return True


@pytest.mark.filterwarnings("error::RuntimeWarning")
@bounded(150)
@given(problems())
def test_the_optimiser_plans_every_problem(problem: Problem) -> None:
    plan = solve(problem, OPTIONS)
    check_plan(problem, plan, "gridplace")
    assert plan.status != PlanStatus.NO_SOLUTION
    assert not unserved_beside_free_gpus(problem, plan)
    if floors_clearly_feasible(problem):
        event("floors clearly feasible")
        assert all(o.floor_unmet is None for o in plan.models), plan.models


@pytest.mark.filterwarnings("error::RuntimeWarning")
@bounded(100)
@given(problems())
def test_the_greedy_baselines_plan_every_problem(problem: Problem) -> None:
    for policy in POLICIES[1:5]:
        plan = solve(problem, OPTIONS, policy=policy)
        check_plan(problem, plan, policy)
        assert plan.status != PlanStatus.NO_SOLUTION
        assert not unserved_beside_free_gpus(problem, plan), policy


@pytest.mark.filterwarnings("error::RuntimeWarning")
@bounded(80)
@given(problems())
def test_the_naive_formulation_plans_every_problem(problem: Problem) -> None:
    check_plan(problem, solve(problem, OPTIONS, policy="naive"), "naive")
