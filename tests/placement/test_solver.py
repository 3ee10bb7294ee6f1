import json
from typing import Any

import numpy as np
import pytest
from scipy.optimize import Bounds, LinearConstraint, milp

from gridplace_placement.budget import Budget
from gridplace_placement.builder import compile_problem, restrict
from gridplace_placement.candidates import candidates
from gridplace_placement.extract import Allocation, assemble, evaluate
from gridplace_placement.formulation import mir
from gridplace_placement.generator import random_problem
from gridplace_placement.options import Backend, SolveOptions
from gridplace_placement.plan import Plan, PlanStatus, Timing
from gridplace_placement.policies import POLICIES, Policy
from gridplace_placement.problem import Problem, load_problem
from gridplace_placement.solver import (
    _solve_milp,
    column_generation,
    lp_bound,
    lp_relaxation,
    solve,
    transfer,
)

H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-40GB"
L40S = "NVIDIA-L40S"


def make_problem(
    *,
    regions: dict[str, dict[str, Any]],
    rtt: dict[str, dict[str, float]],
    demand: dict[str, float],
    **model: Any,
) -> dict[str, Any]:
    """One 8B chat model on H100s; regions map name -> overrides (gpus, carbon, price)."""
    return {
        "models": [
            {
                "name": "chat",
                "profile": "meta-llama/Meta-Llama-3.1-8B-Instruct",
                "gpuTypes": [H100],
                "sloP95TtftSeconds": 1.0,
                "demand": demand,
                **model,
            }
        ],
        "regions": [
            {
                "name": name,
                "gpus": {H100: 16},
                "carbonIntensity": 300,
                "powerPriceUsdPerMwh": 60,
                **spec,
            }
            for name, spec in regions.items()
        ],
        "rttMs": rtt,
    }


@pytest.fixture
def two_regions() -> dict[str, Any]:
    """A clean region and a dirty one, both near the users."""
    return make_problem(
        regions={"clean": {"carbonIntensity": 50}, "dirty": {"carbonIntensity": 700}},
        rtt={"users": {"clean": 10, "dirty": 10}},
        demand={"users": 40.0},
    )


def plan_for(data: dict[str, Any], **options: Any) -> Plan:
    return solve(Problem.model_validate(data), SolveOptions(**options))


def replicas_in(plan: Plan, region: str) -> int:
    return sum(p.replicas for p in plan.pools if p.region == region)


def test_prefers_the_clean_region_and_meets_the_slo(two_regions: dict[str, Any]) -> None:
    plan = plan_for(two_regions)
    assert plan.status == PlanStatus.OPTIMAL
    assert replicas_in(plan, "clean") > 0
    assert replicas_in(plan, "dirty") == 0
    assert all(z.slo_met for z in plan.zones)
    assert plan.unserved_rps == 0


def test_gpu_capacity_holds(two_regions: dict[str, Any]) -> None:
    two_regions["regions"][0]["gpus"] = {H100: 2}
    plan = plan_for(two_regions)
    assert replicas_in(plan, "clean") == 2  # full: dropping the limit would put all here
    assert replicas_in(plan, "dirty") > 0
    assert plan.unserved_rps == 0
    assert any("GPU capacity full in clean" in r for r in plan.models[0].reasons)


def test_queueing_capacity_holds_exactly(two_regions: dict[str, Any]) -> None:
    plan = plan_for(two_regions)
    for pool in plan.pools:
        assert pool.load_rps <= pool.capacity_rps + 1e-6
    model = Problem.model_validate(two_regions).models[0]
    replica = model.replica_model(H100)
    for pool in plan.pools:
        assert pool.p95_wait_seconds <= replica.wait_budget_s + 1e-9
    per_replica = replica.capacity(1)
    total = sum(p.replicas for p in plan.pools)
    assert total >= 40.0 / per_replica  # dropping the pool capacity would need 1 replica


def test_slo_eligibility_excludes_far_regions() -> None:
    data = make_problem(
        regions={"near": {"carbonIntensity": 700}, "far": {"carbonIntensity": 10}},
        rtt={"users": {"near": 10, "far": 600}},
        demand={"users": 20.0},
    )
    plan = plan_for(data)
    assert {r.region for r in plan.routes} == {"near"}  # far is cleaner but too slow
    assert plan.zones[0].predicted_p95_ttft_seconds is not None
    assert plan.zones[0].predicted_p95_ttft_seconds <= 1.0
    assert any("far is outside the SLO from zone users" in r for r in plan.models[0].reasons)


def test_availability_floor_spreads_regions(two_regions: dict[str, Any]) -> None:
    two_regions["models"][0]["availability"] = {"minRegions": 2, "perRegionMin": 2}
    plan = plan_for(two_regions)
    assert replicas_in(plan, "clean") >= 2
    assert replicas_in(plan, "dirty") >= 2


def test_a_floor_of_one_region_runs_a_replica_without_region_binaries(
    two_regions: dict[str, Any],
) -> None:
    two_regions["models"][0]["availability"] = {"minRegions": 1}
    two_regions["models"][0]["demand"] = {}  # nothing to serve: only the floor asks for one
    problem = Problem.model_validate(two_regions)
    assert compile_problem(problem).columns.region_used.size == 0
    plan = plan_for(two_regions)
    assert sum(p.replicas for p in plan.pools) == 1
    two_regions["models"][0]["availability"] = {"minRegions": 2}  # two need the binaries
    assert compile_problem(Problem.model_validate(two_regions)).columns.region_used.size > 0
    plan = plan_for(two_regions)
    assert replicas_in(plan, "clean") >= 1 and replicas_in(plan, "dirty") >= 1


def test_survive_region_loss_keeps_capacity_elsewhere(two_regions: dict[str, Any]) -> None:
    two_regions["models"][0]["availability"] = {"surviveRegionLoss": True}
    plan = plan_for(two_regions)
    for lost in ("clean", "dirty"):
        remaining = sum(p.capacity_rps for p in plan.pools if p.region != lost)
        assert remaining >= 40.0 - 1e-6


def test_min_and_max_replicas(two_regions: dict[str, Any]) -> None:
    two_regions["models"][0]["maxReplicas"] = 2
    capped = plan_for(two_regions)
    assert sum(p.replicas for p in capped.pools) == 2
    assert capped.unserved_rps > 0  # shortage reported, not raised
    assert capped.status == PlanStatus.INFEASIBLE_WITH_SLACK

    two_regions["models"][0]["maxReplicas"] = None
    two_regions["models"][0]["minReplicas"] = 12
    held = plan_for(two_regions)
    assert sum(p.replicas for p in held.pools) == 12  # demand alone needs far fewer


@pytest.mark.parametrize("policy", ["gridplace", "naive"])
def test_churn_budget_counts_moves_not_scaling(two_regions: dict[str, Any], policy: Policy) -> None:
    rate = float(candidates(Problem.model_validate(two_regions)).pools.rate[0])
    two_regions["models"][0]["demand"] = {"users": 2.5 * rate}  # needs 3 replicas
    two_regions["current"] = [{"model": "chat", "region": "dirty", "gpuType": H100, "replicas": 8}]
    free = solve(Problem.model_validate(two_regions), policy=policy)
    assert replicas_in(free, "clean") == 3 and free.moved_replicas == 3
    two_regions["churnBudget"] = 1
    limited = solve(Problem.model_validate(two_regions), policy=policy)
    # The 5 replicas falling demand frees stop beyond the budget; one of the 3 moves.
    assert limited.stopped_replicas == 6 and limited.moved_replicas == 1
    assert (replicas_in(limited, "dirty"), replicas_in(limited, "clean")) == (2, 1)
    assert limited.status == PlanStatus.OPTIMAL or policy == "naive"
    if policy == "gridplace":
        assert any(
            "churn budget (1) held replicas in dirty" in r for r in limited.models[0].reasons
        )
    two_regions["churnBudget"] = 0
    frozen = solve(Problem.model_validate(two_regions), policy=policy)
    assert (replicas_in(frozen, "dirty"), replicas_in(frozen, "clean")) == (3, 0)
    assert frozen.moved_replicas == 0 and frozen.unserved_rps == 0


@pytest.mark.parametrize("policy", ["gridplace", "naive"])
def test_churn_budget_per_model(two_regions: dict[str, Any], policy: Policy) -> None:
    frozen = two_regions["models"][0]
    two_regions["models"] = [
        {**frozen, "name": "frozen", "churnBudget": 0},
        {**frozen, "name": "mover", "churnBudget": 2},
    ]
    two_regions["current"] = [
        {"model": name, "region": "dirty", "gpuType": H100, "replicas": 3}
        for name in ("frozen", "mover")
    ]
    plan = solve(Problem.model_validate(two_regions), policy=policy)
    stopped = {m.name: m.stopped_replicas for m in plan.models}
    moved = {m.name: m.moved_replicas for m in plan.models}
    assert moved == {"frozen": 0, "mover": 2}  # the frozen model cannot use the mover's budget
    assert stopped == moved  # the demand needs what runs: every stop is a move
    assert plan.status in (PlanStatus.OPTIMAL, PlanStatus.FEASIBLE)
    if policy == "gridplace":
        reasons = {m.name: m.reasons for m in plan.models}
        assert "churn budget: 0 of 0 moves used (0 running replicas stopped)" in reasons["frozen"]
        assert "churn budget: 2 of 2 moves used (2 running replicas stopped)" in reasons["mover"]


@pytest.mark.parametrize("remainder", [1e-3, 1e-2, 0.05])
def test_small_remainder_is_served_while_gpus_are_free(
    two_regions: dict[str, Any], remainder: float
) -> None:
    rate = float(candidates(Problem.model_validate(two_regions)).pools.rate[0])
    two_regions["models"][0]["demand"] = {"users": 3 * rate + remainder * rate}
    plan = plan_for(two_regions)
    assert plan.unserved_rps == 0
    assert sum(p.replicas for p in plan.pools) == 4
    assert plan.status == PlanStatus.OPTIMAL


def test_unserved_reason_tells_free_capacity_from_none(two_regions: dict[str, Any]) -> None:
    c = compile_problem(Problem.model_validate(two_regions))
    dropped = Allocation(np.zeros(c.pools.size), np.zeros(c.routes.size))
    timing = Timing(
        compile_seconds=0, bound_seconds=0, solve_seconds=0, extract_seconds=0, total_seconds=0
    )
    plan = assemble(
        c, dropped, policy="gridplace", solved=True, target_gap=0.0, bound=0.0, timing=timing
    )
    assert plan.models[0].reasons[0] == (
        "40 req/s from zone users unserved: GPU capacity within the SLO is free, "
        "but the search stopped before using it"
    )
    two_regions["models"][0]["maxReplicas"] = 2
    capped = plan_for(two_regions)
    assert "unserved: maxReplicas=2 reached" in capped.models[0].reasons[0]
    for region in two_regions["regions"]:
        region["gpus"] = {H100: 0}
    none = plan_for(two_regions)
    assert "unserved: no GPU capacity left in a region within the SLO" in none.models[0].reasons[0]


@pytest.mark.parametrize("policy", ["gridplace", "naive"])
def test_churn_penalty_charges_moves_not_scale_downs(
    two_regions: dict[str, Any], policy: Policy
) -> None:
    two_regions["churnPenalty"] = 100.0  # far above any hour's carbon or cost saving
    rate = float(candidates(Problem.model_validate(two_regions)).pools.rate[0])
    two_regions["models"][0]["demand"] = {"users": 2.5 * rate}  # needs 3 replicas
    # Demand fell: 8 run in the clean region, the 5 no longer needed go free of charge.
    two_regions["current"] = [{"model": "chat", "region": "clean", "gpuType": H100, "replicas": 8}]
    fell = solve(Problem.model_validate(two_regions), policy=policy)
    assert replicas_in(fell, "clean") == 3
    assert fell.stopped_replicas == 5
    # Running the 3 needed in the dirty region: moving them to the clean one is charged.
    two_regions["current"] = [{"model": "chat", "region": "dirty", "gpuType": H100, "replicas": 8}]
    held = solve(Problem.model_validate(two_regions), policy=policy)
    assert replicas_in(held, "dirty") == 3
    assert replicas_in(held, "clean") == 0
    two_regions["churnPenalty"] = 0.0
    moved = solve(Problem.model_validate(two_regions), policy=policy)
    assert replicas_in(moved, "clean") == 3
    assert replicas_in(moved, "dirty") == 0


def test_shortage_is_reported_not_raised(two_regions: dict[str, Any]) -> None:
    for region in two_regions["regions"]:
        region["gpus"] = {H100: 0}
    plan = plan_for(two_regions)
    assert plan.status == PlanStatus.INFEASIBLE_WITH_SLACK
    assert plan.unserved_rps == pytest.approx(40.0)
    assert plan.zones[0].predicted_p95_ttft_seconds is None
    assert not plan.zones[0].slo_met
    assert "unserved" in plan.models[0].reasons[0]


def test_unmeetable_floor_is_reported(two_regions: dict[str, Any]) -> None:
    two_regions["models"][0]["availability"] = {"minRegions": 3}
    plan = plan_for(two_regions)
    assert plan.status == PlanStatus.INFEASIBLE_WITH_SLACK
    assert replicas_in(plan, "clean") >= 1 and replicas_in(plan, "dirty") >= 1
    assert plan.models[0].floor_unmet == (
        "availability floor unmet: 2 of minRegions=3 regions run perRegionMin=1 replicas; "
        "2 allowed regions have the GPUs for it"
    )


@pytest.mark.parametrize("policy", POLICIES)
def test_a_floor_beyond_the_regions_says_so_under_every_policy(policy: Policy) -> None:
    regions = {f"r{i}": {"gpus": {H100: 4}} for i in range(6)}
    regions["r5"]["gpus"] = {H100: 0}  # a region without GPUs cannot hold the floor either
    data = make_problem(
        regions=regions, rtt={"users": dict.fromkeys(regions, 10.0)}, demand={"users": 10.0}
    )
    data["models"][0]["availability"] = {"minRegions": 64, "perRegionMin": 2}
    plan = solve(Problem.model_validate(data), policy=policy)
    outcome = plan.models[0]
    assert plan.status == PlanStatus.INFEASIBLE_WITH_SLACK
    assert outcome.floor_unmet == (
        "availability floor unmet: 5 of minRegions=64 regions run perRegionMin=2 replicas; "
        "5 allowed regions have the GPUs for it"
    )
    assert outcome.reasons[0] == outcome.floor_unmet
    assert "floorUnmet" in plan.model_dump_json(by_alias=True)
    data["models"][0]["availability"] = {"minRegions": 5, "perRegionMin": 2}
    met = solve(Problem.model_validate(data), policy=policy)
    assert met.models[0].floor_unmet is None
    assert met.status != PlanStatus.INFEASIBLE_WITH_SLACK


def test_unmet_min_replicas_is_reported(two_regions: dict[str, Any]) -> None:
    for region in two_regions["regions"]:
        region["gpus"] = {H100: 3}
    two_regions["models"][0]["minReplicas"] = 10
    plan = plan_for(two_regions)
    assert sum(p.replicas for p in plan.pools) == 6
    assert plan.models[0].floor_unmet == (
        "minReplicas unmet: 6 of minReplicas=10 replicas; the GPUs of its allowed regions hold 6"
    )
    assert plan.status == PlanStatus.INFEASIBLE_WITH_SLACK
    two_regions["models"][0]["minReplicas"] = 6
    assert plan_for(two_regions).models[0].floor_unmet is None


def test_degenerate_inputs() -> None:
    idle = make_problem(regions={"only": {}}, rtt={"users": {"only": 5}}, demand={})
    plan = plan_for(idle)
    assert plan.status == PlanStatus.OPTIMAL
    assert plan.pools == [] and plan.objective == 0.0
    one = make_problem(regions={"only": {}}, rtt={"users": {"only": 5}}, demand={"users": 5.0})
    plan = plan_for(one)
    assert plan.status == PlanStatus.OPTIMAL and replicas_in(plan, "only") >= 1


def test_same_input_gives_identical_plan() -> None:
    problem = load_problem("examples/plan-small.yaml")
    first, second = solve(problem), solve(problem)
    strip = {"timing"}
    assert first.model_dump(exclude=strip) == second.model_dump(exclude=strip)


@pytest.mark.parametrize("backend", ["highs", "scip"])
def test_gap_is_certified_by_the_lp_bound(backend: Backend) -> None:
    problem = load_problem("examples/plan-small.yaml")
    plan = solve(problem, SolveOptions(backend=backend))
    assert plan.objective >= plan.lower_bound - 1e-9
    expected = (plan.objective - plan.lower_bound) / plan.objective
    assert plan.gap == pytest.approx(max(expected, 0.0), abs=1e-12)
    assert plan.gap <= 0.01
    for policy in POLICIES[1:]:
        other = solve(problem, policy=policy)
        assert other.objective >= plan.lower_bound - 1e-9


def test_plan_is_json_serialisable() -> None:
    plan = solve(load_problem("examples/plan-small.yaml"))
    text = plan.model_dump_json(by_alias=True)
    assert "predictedP95TtftSeconds" in text
    assert Plan.model_validate(json.loads(text)) == plan


@pytest.mark.parametrize("policy", POLICIES[1:])
def test_baselines_respect_gpu_capacity_and_slo(policy: Policy) -> None:
    data = make_problem(
        regions={
            "a": {"gpus": {H100: 3}, "carbonIntensity": 100, "powerPriceUsdPerMwh": 30},
            "b": {"gpus": {H100: 3}, "carbonIntensity": 200},
            "c": {"gpus": {H100: 8}, "carbonIntensity": 600},
            "far": {"gpus": {H100: 32}, "carbonIntensity": 1},
        },
        rtt={"u1": {"a": 5, "b": 40, "c": 80, "far": 500}, "u2": {"b": 5, "c": 20, "far": 500}},
        demand={"u1": 40.0, "u2": 30.0},
    )
    plan = solve(Problem.model_validate(data), policy=policy)
    limits = {"a": 3, "b": 3, "c": 8, "far": 32}
    for region, limit in limits.items():
        assert replicas_in(plan, region) <= limit
    assert all(r.region != "far" for r in plan.routes)
    for pool in plan.pools:
        assert pool.load_rps <= pool.capacity_rps + 1e-6


def test_pruning_drops_unreachable_pools() -> None:
    data = make_problem(
        regions={"near": {}, "far": {}},
        rtt={"users": {"near": 10, "far": 900}},
        demand={"users": 10.0},
        gpuTypes=[H100, A100],
    )
    data["regions"][0]["gpus"] = {H100: 4, A100: 4}
    compiled = compile_problem(Problem.model_validate(data))
    regions = {int(r) for r in compiled.pools.region}
    assert regions == {0}  # no pool in the far region: nobody reaches it within the SLO


def test_column_generation_bound_matches_the_full_lp() -> None:
    problem = random_problem(30, 8, gpu_types=3, zones=8, seed=3)
    full, _ = lp_relaxation(compile_problem(problem))
    restricted, bound, _ = lp_bound(candidates(problem), routes_per_zone=2)
    assert restricted.routes.size < compile_problem(problem).routes.size  # it did prune
    assert bound <= full + 1e-6 * abs(full)  # a valid lower bound
    assert bound >= full * (1 - 2e-3)  # and a tight one


def test_small_problems_solve_the_full_lp_at_once() -> None:
    problem = random_problem(30, 8, gpu_types=3, zones=8, seed=3)
    cands = candidates(problem)
    whole = column_generation(cands, full_below=cands.routes.size + 1)
    priced = column_generation(cands, routes_per_zone=2, full_below=cands.routes.size, tolerance=0)
    assert whole.compiled.route_ids.size == cands.routes.size
    assert priced.compiled.route_ids.size < cands.routes.size
    full, _ = lp_relaxation(compile_problem(problem))
    assert whole.bound == pytest.approx(full, rel=1e-9)
    assert not whole.shortfall.any()
    assert priced.bound <= full + 1e-6 * abs(full)
    # A looser tolerance stops pricing earlier; the bound it reports still holds.
    rough = column_generation(cands, routes_per_zone=2, tolerance=0.5)
    assert rough.compiled.route_ids.size < priced.compiled.route_ids.size
    assert rough.bound <= full + 1e-6 * abs(full)


def test_generated_instances_are_reproducible_and_certified() -> None:
    a = random_problem(20, 6, gpu_types=2, zones=6, seed=7)
    b = random_problem(20, 6, gpu_types=2, zones=6, seed=7)
    assert a == b
    plan = solve(a)
    assert plan.objective >= plan.lower_bound - 1e-9
    assert plan.unserved_rps == 0
    assert all(z.slo_met for z in plan.zones)


def test_baselines_keep_running_replicas(two_regions: dict[str, Any]) -> None:
    two_regions["current"] = [{"model": "chat", "region": "dirty", "gpuType": H100, "replicas": 3}]
    two_regions["churnBudget"] = 0
    for policy in POLICIES[1:5]:
        plan = solve(Problem.model_validate(two_regions), policy=policy)
        assert plan.stopped_replicas == 0
        assert replicas_in(plan, "dirty") >= 3
        # Starting replicas beside those that keep running moves nothing: the budget holds.
        assert plan.moved_replicas == 0
        assert plan.status != PlanStatus.INFEASIBLE_WITH_SLACK


def test_pinned_totals_under_a_zero_churn_budget_still_get_a_plan() -> None:
    # The operator pins each model's total (the autoscaler's decision) and may have no churn
    # budget left; fixing replicas while diving then leaves the LP infeasible, which must not
    # abort the solve.
    base = random_problem(8, 4, gpu_types=2, zones=4, seed=0)
    pinned = tuple(
        m.model_copy(update={"min_replicas": 6, "max_replicas": 6, "churn_budget": 0})
        for m in base.models
    )
    problem = base.model_copy(update={"models": pinned})
    plan = solve(problem, SolveOptions(time_limit_seconds=1))
    used: dict[tuple[str, str], int] = {}
    models = {m.name: m for m in problem.models}
    for pool in plan.pools:
        per_replica = models[pool.model].profiles[pool.gpu_type].gpus_per_replica
        used[(pool.region, pool.gpu_type)] = used.get((pool.region, pool.gpu_type), 0) + (
            pool.replicas * per_replica
        )
    capacity = {(r.name, g): n for r in problem.regions for g, n in r.gpus.items()}
    assert all(n <= capacity[key] for key, n in used.items())
    assert plan.status != PlanStatus.NO_SOLUTION


def test_rounding_cuts_certify_one_replica_per_isolated_zone(two_regions: dict[str, Any]) -> None:
    # Two zones, each reaching only its own region, each needing a fraction of a replica: the
    # LP alone would pay for that fraction; the per-zone rounding cut makes it pay a replica.
    rate = float(candidates(Problem.model_validate(two_regions)).pools.rate[0])
    two_regions["rttMs"] = {"east": {"clean": 10}, "west": {"dirty": 10}}
    two_regions["models"][0]["demand"] = {"east": 0.3 * rate, "west": 0.3 * rate}
    problem = Problem.model_validate(two_regions)
    plan = solve(problem)
    assert plan.replicas() == {("chat", "clean", H100): 1, ("chat", "dirty", H100): 1}
    assert plan.gap < 1e-6 and plan.status == PlanStatus.OPTIMAL
    bound, _ = lp_relaxation(compile_problem(problem))
    assert bound == pytest.approx(plan.objective, rel=1e-6)


def test_mixed_integer_rounding_coefficients() -> None:
    # floor(a) + min(frac(a), f) / f: a pool slower than the divisor counts less than one.
    ratio = np.array([1.0, 0.2, 0.5, 1.5, 0.8])
    frac = np.array([0.3, 0.5, 0.25, 0.5, 0.5])
    assert mir(ratio, frac).tolist() == pytest.approx([1.0, 0.4, 1.0, 2.0, 1.0])


def test_a_spent_budget_still_returns_the_dived_plan() -> None:
    problem = random_problem(20, 6, gpu_types=2, zones=6, seed=5)
    tight = solve(problem, SolveOptions(time_limit_seconds=1e-6))  # no time left for SCIP
    assert tight.status != PlanStatus.NO_SOLUTION
    assert tight.unserved_rps == pytest.approx(solve(problem).unserved_rps, abs=1e-6)
    assert tight.objective >= tight.lower_bound - 1e-9


def test_plans_carry_between_restrictions_of_the_candidates() -> None:
    problem = random_problem(10, 5, gpu_types=2, zones=5, seed=2)
    cands = candidates(problem)
    whole = restrict(cands, np.ones(cands.routes.size, dtype=bool))
    plan = solve(problem)
    n = np.zeros(whole.pools.size)
    for i in range(whole.pools.size):
        key = (
            problem.models[int(whole.pools.model[i])].name,
            problem.regions[int(whole.pools.region[i])].name,
            whole.gpu_types[int(whole.pools.gpu[i])],
        )
        n[i] = plan.replicas().get(key, 0)
    used = n > 0
    part = restrict(cands, np.isin(cands.routes.pool, whole.pool_ids[used]))
    a = Allocation(n, np.zeros(whole.routes.size))
    there = transfer(a, whole, part)
    assert there.replicas.sum() == n.sum()
    back = transfer(there, part, whole)
    assert back.replicas.tolist() == n.tolist()


def test_milp_bound_certifies_small_models_the_lp_rounds_down() -> None:
    """Small models with a floor of one replica and demand spread over far zones: the LP
    serves each zone from a fraction of a nearby replica, so its bound stays a few percent
    below any plan. With floors every pool is in the search, so the MILP's own bound holds
    for every plan and certifies it."""
    regions = {
        "us-east-1": {
            "gpus": {H100: 48, L40S: 48},
            "carbonIntensity": 380,
            "powerPriceUsdPerMwh": 62,
        },
        "eu-central-1": {
            "gpus": {H100: 48, L40S: 48},
            "carbonIntensity": 350,
            "powerPriceUsdPerMwh": 95,
        },
        "ap-northeast-1": {
            "gpus": {H100: 48, L40S: 96},
            "carbonIntensity": 590,
            "powerPriceUsdPerMwh": 114.6,
        },
    }
    rtt = {
        "us-east": {"us-east-1": 5.3, "eu-central-1": 93.1, "ap-northeast-1": 149.4},
        "eu-central": {"us-east-1": 92.6, "eu-central-1": 4.0, "ap-northeast-1": 227.1},
        "ap-northeast": {"us-east-1": 149.2, "eu-central-1": 227.6, "ap-northeast-1": 2.5},
    }
    data = make_problem(regions=regions, rtt=rtt, demand={})
    data["models"] = [
        {
            **data["models"][0],
            "name": f"chat-{i}",
            "gpuTypes": [H100, L40S],
            "minReplicas": 1,
            "maxReplicas": 4,
            "demand": demand,
        }
        for i, demand in enumerate(
            [
                {"eu-central": 1.34, "ap-northeast": 1.19, "us-east": 0.53},
                {"ap-northeast": 0.64, "us-east": 0.95},
                {"us-east": 0.7, "eu-central": 0.4},
            ]
        )
    ]
    problem = Problem.model_validate(data)
    _, lp, _ = lp_bound(candidates(problem))
    plan = solve(problem)
    assert plan.objective - lp > 0.01 * plan.objective  # the LP alone could not certify it
    assert plan.status == PlanStatus.OPTIMAL
    assert plan.lower_bound >= lp
    assert plan.gap <= 0.005
    exact = solve(problem, SolveOptions(exact=True))
    assert plan.objective == pytest.approx(exact.objective, rel=1e-6)


def test_the_greedy_repair_keeps_a_model_able_to_survive_a_region_loss() -> None:
    # Only region a has GPUs: served demand could not survive its loss, so none is served.
    # The repair after the dive used to serve it anyway, into a plan "below" its own bound.
    data = make_problem(
        regions={"a": {}, "b": {"gpus": {H100: 0}}},
        rtt={"users": {"a": 10, "b": 10}},
        demand={"users": 5.0},
        availability={"surviveRegionLoss": True},
    )
    plan = plan_for(data)
    assert plan.unserved_rps == pytest.approx(5.0)
    assert plan.objective >= plan.lower_bound
    assert plan.status == PlanStatus.INFEASIBLE_WITH_SLACK
    assert "unserved: surviveRegionLoss" in plan.models[0].reasons[0]


def test_the_dive_rounds_up_no_further_than_max_replicas() -> None:
    # Surviving a region's loss splits the LP's single replica in halves over two regions;
    # rounding both up used to plan two replicas of a model capped at one.
    data = make_problem(
        regions={"a": {"gpus": {H100: 1}}, "b": {"gpus": {H100: 1}}},
        rtt={"users": {"a": 10, "b": 10}},
        demand={"users": 1.0},
        availability={"surviveRegionLoss": True},
        minReplicas=1,
        maxReplicas=1,
    )
    plan = plan_for(data)
    assert sum(p.replicas for p in plan.pools) == 1
    assert plan.models[0].floor_unmet is None


@pytest.mark.parametrize("policy", POLICIES)
def test_a_vanishing_power_price_does_not_break_the_lp(policy: Policy) -> None:
    # The model's cost reference was a subnormal float; its weight overflowed to infinity and
    # GLOP refused the model (MODEL_INVALID) for every policy.
    data = make_problem(
        regions={"a": {"powerPriceUsdPerMwh": 0}, "b": {"powerPriceUsdPerMwh": 1e-310}},
        rtt={"users": {"a": 10, "b": 10}},
        demand={"users": 5.0},
        weights={"latency": 0, "carbon": 0, "cost": 1},
    )
    for region in data["regions"]:
        region["carbonIntensity"] = 0
    plan = solve(Problem.model_validate(data), policy=policy)
    assert plan.unserved_rps == 0


def test_the_repair_keeps_the_churn_budget_as_the_milp_counts_it() -> None:
    # One replica runs in b, out of the users' reach; with no churn left, starting one in a is
    # a move as the MILP counts it (a start beyond what rising demand needs), so the MILP
    # leaves the demand unserved. The greedy repair used to start it anyway, into a plan whose
    # objective fell below its own certified bound.
    data = make_problem(regions={"a": {}, "b": {}}, rtt={"users": {"a": 10}}, demand={"users": 1.0})
    data["current"] = [{"model": "chat", "region": "b", "gpuType": H100, "replicas": 1}]
    data["churnBudget"] = 0
    problem = Problem.model_validate(data)
    plan = solve(problem)
    assert plan.objective >= plan.lower_bound
    assert plan.replicas() == solve(problem, policy="naive").replicas() == {("chat", "b", H100): 1}
    assert plan.models[0].reasons[0] == (
        "1 req/s from zone users unserved: GPU capacity within the SLO is free, but starting "
        "a replica there would pass the churn budget (0)"
    )


def test_a_milp_stopped_at_its_gap_claims_no_more_than_the_gap_proves() -> None:
    # OR-Tools' HiGHS interface reports the incumbent's objective as the bound when the gap
    # stops the search; taken as proven, it lay above this problem's optimum.
    problem = random_problem(12, 5, gpu_types=2, zones=5, seed=3)
    c = compile_problem(problem)
    lower, upper, cost, integer, matrix, row_lower, row_upper = c.milp.arrays()
    optimum = milp(
        cost,
        integrality=integer.astype(np.int64),
        bounds=Bounds(lower, upper),
        constraints=LinearConstraint(matrix, row_lower, row_upper),
        options={"mip_rel_gap": 0.0, "time_limit": 60.0},
    ).fun
    start = Allocation(np.zeros(c.pools.size), np.zeros(c.routes.size))
    options = SolveOptions(relative_gap=0.05)
    found, solved, bound = _solve_milp(c, options, start, Budget.starting_now(30))
    assert solved
    assert evaluate(c, found).objective > optimum * (1 + 1e-3)  # stopped short of the optimum
    assert bound <= optimum
