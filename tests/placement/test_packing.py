"""Replicas packed per node: no plan asks for a replica that no node can hold."""

from typing import Any

import numpy as np
import pytest

from gridplace_placement.builder import compile_problem
from gridplace_placement.packing import fits, place, size_class, slots, take
from gridplace_placement.plan import Plan
from gridplace_placement.policies import POLICIES, Policy
from gridplace_placement.problem import Problem
from gridplace_placement.solver import solve

H100 = "NVIDIA-H100-80GB-HBM3"
BIG = "codellama/CodeLlama-70b-hf"  # 4 H100s per replica
SMALL = "meta-llama/Meta-Llama-3.1-8B-Instruct"  # 1 H100 per replica


def test_size_class_rounds_up_to_a_power_of_two() -> None:
    assert size_class(np.array([1, 2, 3, 4, 5, 8])).tolist() == [1, 2, 4, 4, 8, 8]


def test_slots_count_whole_replicas_per_node() -> None:
    assert slots(np.array([3, 2]), 4) == 0
    assert slots(np.array([3, 2]), 2) == 2
    assert slots(np.array([8, 5]), 4) == 3


def test_first_fit_decreasing_places_large_replicas_first() -> None:
    assert place([3, 2], [4, 1, 1]) == [False, True, True]
    assert fits([4, 1], [1, 4])
    assert not fits([2, 2], [4])


def test_taking_unknown_replicas_empties_the_largest_nodes_first() -> None:
    assert take([4, 2, 1], 3) == (1, 2, 1)
    assert take([4, 2], 10) == (0, 0)


def region(name: str, nodes: list[int], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "gpus": {H100: sum(nodes)},
        "nodeGpus": {H100: nodes},
        "carbonIntensity": 300,
        "powerPriceUsdPerMwh": 60,
        **extra,
    }


def model(name: str, profile: str, demand: float, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "profile": profile,
        "gpuTypes": [H100],
        "sloP95TtftSeconds": 5.0,
        "tpotTargetSeconds": 0.3,
        "demand": {"zone": demand},
        **extra,
    }


def problem(regions: list[dict[str, Any]], models: list[dict[str, Any]]) -> Problem:
    return Problem.model_validate(
        {
            "models": models,
            "regions": regions,
            "rttMs": {"zone": {r["name"]: 10.0 + i for i, r in enumerate(regions)}},
        }
    )


def placed_fit(p: Problem, plan: Plan) -> bool:
    """Every region's planned replicas fit its nodes by first-fit-decreasing."""
    size = {m.name: m.profiles[H100].gpus_per_replica for m in p.models}
    by_region: dict[str, list[int]] = {}
    for pool in plan.pools:
        by_region.setdefault(pool.region, []).extend([size[pool.model]] * pool.replicas)
    nodes = {r.name: r.node_gpus[H100] for r in p.regions}
    return all(fits(nodes[r], size_class(np.array(s)).tolist()) for r, s in by_region.items())


def test_nodes_must_sum_to_the_pool() -> None:
    bad = region("a", [3, 2])
    bad["gpus"] = {H100: 6}
    with pytest.raises(ValueError, match="sums to 5"):
        problem([bad], [model("small", SMALL, 1.0)])


def test_a_four_gpu_replica_is_not_planned_on_two_fragments() -> None:
    """5 free GPUs pooled hold a 4-GPU replica; nodes with 3 and 2 free do not."""
    p = problem([region("near", [3, 2]), region("far", [4, 4])], [model("big", BIG, 0.5)])
    plan = solve(p)
    assert {pool.region for pool in plan.pools if pool.replicas} == {"far"}
    assert placed_fit(p, plan)


def test_upper_bounds_count_slots_not_gpus() -> None:
    p = problem([region("near", [3, 2])], [model("big", BIG, 0.5), model("small", SMALL, 1.0)])
    c = compile_problem(p)
    size = c.pools.gpus_per_replica
    assert c.pools.upper[size == 1].tolist() == [5.0]
    assert (c.pools.upper[size == 4] == 0).all()  # pruned or bounded at 0


def test_mixed_sizes_on_fragmented_nodes_fit() -> None:
    """Sizes 4 and 1 competing for nodes with 5, 3 and 2 free: the plan's replicas fit."""
    p = problem(
        [region("a", [5, 3, 2]), region("b", [4, 1, 1])],
        [model("big", BIG, 2.0), model("small", SMALL, 30.0)],
    )
    plan = solve(p)
    assert placed_fit(p, plan)
    assert sum(pool.replicas for pool in plan.pools if pool.model == "big") >= 1


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_plans_only_what_fits(policy: Policy) -> None:
    p = problem(
        [region("a", [3, 3, 2]), region("b", [4, 2, 1])],
        [model("big", BIG, 3.0), model("small", SMALL, 20.0)],
    )
    assert placed_fit(p, solve(p, policy=policy))


@pytest.mark.parametrize("seed", range(12))
def test_random_plans_fit_by_first_fit_decreasing(seed: int) -> None:
    """Property: over random fragmented nodes and demands, every plan's replicas fit."""
    rng = np.random.default_rng(seed)
    regions = [
        region(f"r{i}", rng.integers(0, 9, size=int(rng.integers(1, 5))).tolist()) for i in range(3)
    ]
    regions = [r for r in regions if sum(r["nodeGpus"][H100])] or [region("r0", [8])]
    models = [
        model("big", BIG, float(rng.uniform(0.1, 4.0))),
        model("mid", "codellama/CodeLlama-34b-hf", float(rng.uniform(0.1, 4.0))),
        model("small", SMALL, float(rng.uniform(1.0, 40.0))),
    ]
    p = problem(regions, models)
    plan = solve(p)
    assert placed_fit(p, plan)
