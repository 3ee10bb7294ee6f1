"""The Lagrangian bound by model: valid for every plan of the full problem, above the LP's."""

import numpy as np
import pytest
from scipy.optimize import Bounds, LinearConstraint, milp

from gridplace_placement.budget import Budget
from gridplace_placement.builder import compile_problem
from gridplace_placement.candidates import candidates
from gridplace_placement.extract import Allocation
from gridplace_placement.generator import random_problem
from gridplace_placement.lagrangian import PACE_SAMPLE, Lagrangian, price_models
from gridplace_placement.options import WORK_LIMIT, SolveOptions
from gridplace_placement.plan import PlanStatus
from gridplace_placement.problem import Problem
from gridplace_placement.solver import column_generation, solve


def shrunk(models: int, regions: int, seed: int, gpu_share: float) -> Problem:
    """A generated problem with a share of its GPUs, so that capacity binds."""
    data = random_problem(models, regions, gpu_types=3, zones=6, seed=seed).model_dump(
        by_alias=True
    )
    for region in data["regions"]:
        region["gpus"] = {g: int(n * gpu_share) for g, n in region["gpus"].items()}
    return Problem.model_validate(data)


def exact_optimum(problem: Problem) -> float:
    """The MILP over every candidate route, solved to optimality by HiGHS on its own."""
    lower, upper, cost, integer, matrix, row_lower, row_upper = compile_problem(
        problem
    ).milp.arrays()
    result = milp(
        cost,
        integrality=integer.astype(np.int64),
        bounds=Bounds(lower, upper),
        constraints=LinearConstraint(matrix, row_lower, row_upper),
        options={"mip_rel_gap": 0.0, "time_limit": 60.0},
    )
    assert result.status == 0
    return float(result.fun)


def solve_every_model(lagrangian: Lagrangian) -> None:
    upper = lagrangian.full.milp.arrays()[1]
    for m, cols in enumerate(lagrangian.cols_of):
        if cols.size:
            dual, _ = lagrangian._solve(
                m,
                lagrangian.price[cols],
                upper[cols],
                budget=Budget.starting_now(30),
                relative_gap=1e-6,
                max_nodes=WORK_LIMIT,
            )
            lagrangian.lower[m] = max(lagrangian.lower[m], dual)


@pytest.mark.parametrize(
    ("seed", "gpu_share"),
    [(1, 1.0), (2, 0.25), (3, 0.3)],
    ids=["gpus-free", "gpus-tight", "gpus-tight-2"],
)
def test_bound_lies_between_the_lp_and_the_optimum(seed: int, gpu_share: float) -> None:
    problem = shrunk(15, 5, seed, gpu_share)
    # One route per zone to start: the LP prices most routes in later, and the models' MILPs
    # must still cover every candidate route for the bound to hold for the full problem.
    lp = column_generation(candidates(problem), routes_per_zone=1)
    lagrangian = price_models(lp)
    assert lagrangian is not None
    assert lagrangian.full.route_ids.size == lagrangian.full.candidates.routes.size
    assert lagrangian.bound == pytest.approx(lp.bound, rel=1e-6)  # the LP's, split by model
    assert lagrangian.churn_price > 0  # the problem-wide churn budget is priced too
    if gpu_share < 1:
        assert (lagrangian.gpu_price > 0).any()  # GPUs bind and are priced
    solve_every_model(lagrangian)
    optimum = exact_optimum(problem)
    assert lagrangian.bound <= optimum + 1e-6 * abs(optimum)
    assert lagrangian.bound > lp.bound + 1e-3 * abs(lp.bound)


def test_solve_certifies_what_the_lp_bound_cannot() -> None:
    # The benchmark's 100 x 20 instance: its optimum lies 0.94% above the LP bound.
    problem = random_problem(100, 20, gpu_types=4, zones=20, seed=0)
    lp = column_generation(candidates(problem))
    plan = solve(problem, SolveOptions(relative_gap=0.005, time_limit_seconds=30))
    assert plan.objective - lp.bound > 0.009 * plan.objective  # the LP alone: far from 0.5%
    assert plan.status == PlanStatus.OPTIMAL
    assert plan.gap <= 0.005
    assert plan.lower_bound > lp.bound
    assert plan.lower_bound <= plan.objective


def test_plans_from_the_models_milps_keep_gpu_capacity() -> None:
    problem = shrunk(15, 5, 2, 0.25)
    plan = solve(problem, SolveOptions(relative_gap=0.0, time_limit_seconds=5))
    gpus = {(r.name, g): n for r in problem.regions for g, n in r.gpus.items()}
    per_replica = {
        (m.name, g): m.profiles[g].gpus_per_replica for m in problem.models for g in m.gpu_types
    }
    used: dict[tuple[str, str], int] = {}
    for pool in plan.pools:
        key = (pool.region, pool.gpu_type)
        used[key] = used.get(key, 0) + pool.replicas * per_replica[(pool.model, pool.gpu_type)]
    assert used
    assert all(n <= gpus[key] for key, n in used.items())
    assert plan.lower_bound <= exact_optimum(problem) + 1e-6


def test_bound_holds_with_survival_floors_and_per_model_budgets() -> None:
    """Every per-model row kind in the models' MILPs: surviving a region loss, replica and
    region floors, a per-model churn budget beside the problem-wide one."""
    data = random_problem(12, 5, gpu_types=3, zones=6, seed=4).model_dump(by_alias=True)
    for i, model in enumerate(data["models"]):
        if i % 3 == 0:
            model["availability"] = {"surviveRegionLoss": True}
        elif i % 3 == 1:
            model["minReplicas"] = 3
            model["availability"] = {"minRegions": 2, "perRegionMin": 1}
        model["churnBudget"] = 1
    problem = Problem.model_validate(data)
    lp = column_generation(candidates(problem), routes_per_zone=1)
    lagrangian = price_models(lp)
    assert lagrangian is not None
    solve_every_model(lagrangian)
    optimum = exact_optimum(problem)
    assert lp.bound <= lagrangian.bound <= optimum + 1e-6 * abs(optimum)
    plan = solve(problem, SolveOptions(relative_gap=0.0, time_limit_seconds=10))
    assert plan.lower_bound <= optimum + 1e-6 * abs(optimum)


def test_search_hands_over_once_the_bound_stops_rising() -> None:
    """Where the models' MILPs cannot lift the bound (here: each model's bound is already its
    exact minimum at the prices), the search stops after a sample of models instead of
    solving them all, leaving the time to the MILP solver over all models."""
    problem = shrunk(15, 5, 2, 0.25)
    lp = column_generation(candidates(problem))
    lagrangian = price_models(lp)
    assert lagrangian is not None
    solve_every_model(lagrangian)
    n = lagrangian.full
    empty = Allocation(np.zeros(n.pools.size), np.zeros(n.routes.size))  # far from certified
    lagrangian.search(
        empty, 1e-4, lp.bound, Budget.starting_now(60), max_models=1000, max_nodes=WORK_LIMIT
    )
    assert int(lagrangian.solved.sum()) == PACE_SAMPLE < len(problem.models)


def test_a_column_of_no_model_priced_at_zero_adds_nothing_to_the_bound() -> None:
    # No churn to spend but a floor no region can hold: the LP prices the problem-wide churn
    # overrun (unbounded above) at exactly zero, and 0 x inf must not make the bound NaN.
    h100 = "NVIDIA-H100-80GB-HBM3"
    profile = {
        "gpuType": h100,
        "gpusPerReplica": 2,
        "decodeBaseSeconds": 0.03,
        "decodePerSequenceSeconds": 0.0004,
        "maxBatch": 4,
        "prefillSecondsPerToken": 0.0,
        "activePowerWatts": 150,
        "idlePowerWatts": 75,
    }
    problem = Problem.model_validate(
        {
            "models": [
                {
                    "name": "chat",
                    "gpuTypes": [h100],
                    "profiles": {h100: profile},
                    "sloP95TtftSeconds": 1.0,
                    "availability": {"minRegions": 1, "perRegionMin": 2},
                    "weights": {"latency": 0, "carbon": 0, "cost": 0},
                }
            ],
            "regions": [
                {"name": "a", "gpus": {h100: 2}, "carbonIntensity": 100, "powerPriceUsdPerMwh": 50},
                {"name": "b", "carbonIntensity": 100, "powerPriceUsdPerMwh": 50},
            ],
            "rttMs": {"users": {"a": 1.0}},
            "churnBudget": 0,
        }
    )
    lp = column_generation(candidates(problem))
    lagrangian = price_models(lp)
    assert lagrangian is not None
    assert lagrangian.bound == pytest.approx(lp.bound)
