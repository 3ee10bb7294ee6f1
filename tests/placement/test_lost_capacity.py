"""Replicas running where the GPUs are gone: a region cordoned, or its nodes taken by another
Region. The plan stops them and serves their demand elsewhere, under every policy."""

import numpy as np
import pytest

from gridplace_placement.baselines import fill_unserved
from gridplace_placement.builder import compile_problem
from gridplace_placement.extract import Allocation, evaluate
from gridplace_placement.plan import PlanStatus
from gridplace_placement.policies import POLICIES, Policy
from gridplace_placement.problem import Problem
from gridplace_placement.solver import solve

H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-40GB"

# A region with no H100 entry at all (its nodes went to another Region), and one that still
# lists the type with none left (cordoned).
LOST = [pytest.param({A100: 4}, id="type-gone"), pytest.param({H100: 0}, id="zero-left")]


def lost_region(lost_gpus: dict[str, int], *, left: int, demand: float) -> Problem:
    """Three H100 replicas of one model run in `lost`, whose GPUs are `lost_gpus`; `left` H100s
    remain in the other region, as near to the users."""
    return Problem.model_validate(
        {
            "models": [
                {
                    "name": "chat",
                    "profile": "meta-llama/Meta-Llama-3.1-8B-Instruct",
                    "gpuTypes": [H100],
                    "sloP95TtftSeconds": 1.0,
                    "demand": {"users": demand},
                }
            ],
            "regions": [
                {
                    "name": "lost",
                    "gpus": lost_gpus,
                    "carbonIntensity": 50,
                    "powerPriceUsdPerMwh": 30,
                },
                {
                    "name": "left",
                    "gpus": {H100: left},
                    "carbonIntensity": 400,
                    "powerPriceUsdPerMwh": 90,
                },
            ],
            "rttMs": {"users": {"lost": 10, "left": 10}},
            "current": [{"model": "chat", "region": "lost", "gpuType": H100, "replicas": 3}],
        }
    )


def replicas_in(plan_replicas: dict[tuple[str, str, str], int], region: str) -> int:
    return sum(n for (_, r, _), n in plan_replicas.items() if r == region)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("lost_gpus", LOST)
def test_a_short_plan_stops_the_lost_replicas(lost_gpus: dict[str, int], policy: Policy) -> None:
    # More demand than the two H100s left can carry: the greedy repair runs over the plan.
    plan = solve(lost_region(lost_gpus, left=2, demand=400.0), policy=policy)
    assert replicas_in(plan.replicas(), "lost") == 0
    assert replicas_in(plan.replicas(), "left") == 2
    assert plan.stopped_replicas == 3
    assert plan.unserved_rps > 0
    assert plan.status == PlanStatus.INFEASIBLE_WITH_SLACK
    assert all(r.region == "left" for r in plan.routes)
    assert f"GPUs lost in lost ({H100}): 0 left for 3 running replicas" in plan.models[0].reasons


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("lost_gpus", LOST)
def test_the_lost_replicas_demand_is_served_elsewhere(
    lost_gpus: dict[str, int], policy: Policy
) -> None:
    plan = solve(lost_region(lost_gpus, left=16, demand=40.0), policy=policy)
    assert replicas_in(plan.replicas(), "lost") == 0
    assert replicas_in(plan.replicas(), "left") > 0
    assert plan.unserved_rps == 0
    assert all(z.slo_met for z in plan.zones)


@pytest.mark.parametrize("lost_gpus", LOST)
def test_the_greedy_repair_skips_pools_without_gpus(lost_gpus: dict[str, int]) -> None:
    c = compile_problem(lost_region(lost_gpus, left=2, demand=400.0))
    nothing = Allocation(np.zeros(c.pools.size), np.zeros(c.routes.size))
    repaired = fill_unserved(c, nothing)
    lost = c.pools.region == 0
    assert repaired.replicas[lost].sum() == 0
    assert repaired.replicas[~lost].sum() == 2
    assert evaluate(c, repaired).unserved.sum() < 400.0


@pytest.mark.parametrize("policy", ["gridplace", "naive"])
@pytest.mark.parametrize("lost_gpus", LOST)
def test_replicas_the_gpus_no_longer_hold_move_outside_the_churn_budget(
    lost_gpus: dict[str, int], policy: Policy
) -> None:
    # A budget of no moves at all: the replicas must leave the lost pool all the same, and
    # neither their stops nor their replacements spend it (a flapping node would otherwise
    # eat the budget with moves nobody chose, then overrun it).
    problem = lost_region(lost_gpus, left=16, demand=40.0)
    model = problem.models[0].model_copy(update={"churn_budget": 0})
    plan = solve(problem.model_copy(update={"models": (model,)}), policy=policy)
    assert replicas_in(plan.replicas(), "lost") == 0
    assert replicas_in(plan.replicas(), "left") >= 3
    assert plan.moved_replicas == 0
    assert plan.status == PlanStatus.OPTIMAL
