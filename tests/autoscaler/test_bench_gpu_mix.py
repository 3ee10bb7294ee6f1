"""The autoscaling benchmark's stand-in for the joint solve with two GPU types: the cheapest mix
whose pools carry the rate, within the bounds, sized by the placement package's capacity model
and priced by the solver's own coefficients."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bench_kit import autoscale_bench

from gridplace_operator.autoscale.decide import capacity_size

ROOT = Path(__file__).resolve().parents[2]
H100, L40S = "NVIDIA-H100-80GB-HBM3", "NVIDIA-L40S"


bench = autoscale_bench()
LIMIT = 30


def setup(tpot_s: float) -> Any:
    return bench.Setup(
        slo_s=2.0, tpot_s=tpot_s, min_replicas=1, max_replicas=LIMIT, startup_s=60,
        control_s=15, window_s=60, up_window_s=30, down_window_s=300, max_step=4, tolerance=0.1,
        hpa_target_fraction=0.5, queue_budget_fraction=0.9, seed=1,
    )  # fmt: skip


SIZES = (np.array([1155]), np.array([211]))


@pytest.fixture(scope="module")
def model() -> Any:
    # At a 100 ms time per output token both types carry traffic (at 50 ms an L40S has 2 slots).
    return bench.bench_model(setup(0.1), SIZES, (H100, L40S))


@pytest.fixture(scope="module")
def planner(model: Any) -> Any:
    return bench.mix_planner(model, LIMIT)


def brute_force(planner: Any, rps: float, low: int, high: int) -> tuple[int, ...]:
    """Every (n_h100, n_l40s) with a total in [low, high]: the cheapest that carries `rps`, the
    fewest replicas on a tie; else the one carrying the most."""
    mixes = [m for m in itertools.product(range(high + 1), repeat=2) if low <= sum(m) <= high]
    fit = [m for m in mixes if planner.carries(m) >= rps]
    if not fit:
        return max(mixes, key=lambda m: (round(planner.carries(m), 9), -m[0]))
    return min(fit, key=lambda m: (round(planner.cost(m, rps), 12), sum(m)))


def test_the_tables_are_the_placement_capacity_model(model: Any, planner: Any) -> None:
    for t, gpu in enumerate((H100, L40S)):
        replica = model.replica_model(gpu)
        assert planner.capacity[t][0] == 0.0
        assert planner.capacity[t][7] == pytest.approx(replica.capacity(7))


@pytest.mark.parametrize("rps", [0.3, 1.0, 3.0, 7.5, 8.9, 15.0, 22.0, 47.0, 80.0])
def test_the_mix_carries_the_rate_and_nothing_cheaper_does(planner: Any, rps: float) -> None:
    mix = planner.choose(rps, 1, LIMIT)
    assert planner.carries(mix) >= rps
    assert 1 <= sum(mix) <= LIMIT
    assert planner.cost(mix, rps) == pytest.approx(
        planner.cost(brute_force(planner, rps, 1, LIMIT), rps)
    )


def test_the_cheaper_type_is_preferred_when_both_suffice(planner: Any) -> None:
    # One replica of either type carries 1 req/s; an L40S costs half the idle power of an H100.
    assert planner.capacity[1][1] >= 1.0
    assert planner.cost((0, 1), 1.0) < planner.cost((1, 0), 1.0)
    assert planner.choose(1.0, 1, LIMIT) == (0, 1)
    # Where one H100 does the work of several L40S, it is the cheaper way to carry the rate.
    assert planner.choose(7.0, 1, LIMIT) == (1, 0)


def test_the_bounds_hold_and_a_rate_beyond_them_gets_the_most_capacity(planner: Any) -> None:
    assert sum(planner.choose(1.0, 5, LIMIT)) == 5  # a floor adds replicas, however cheap
    mix = planner.choose(1e6, 1, 4)
    assert sum(mix) == 4
    assert planner.carries(mix) == pytest.approx(planner.carries(brute_force(planner, 1e6, 1, 4)))
    assert mix == (4, 0)


def test_one_type_is_the_autoscalers_fewest_replicas() -> None:
    one = bench.bench_model(setup(0.05), SIZES, (H100,))
    planner = bench.mix_planner(one, LIMIT)
    for rps in (0.0, 0.5, 4.0, 30.0, 200.0):
        want = capacity_size(one, rps, H100, LIMIT).replicas
        assert planner.choose(rps, 0, LIMIT) == (want,)
        assert planner.choose(rps, 3, 6) == (max(3, min(6, want)),)


def test_the_solver_stand_in_carries_the_rate_within_the_bounds(model: Any) -> None:
    solver = bench.mix_planner(model, LIMIT, "solve")
    for rps in (1.0, 8.9, 47.0):
        mix = solver.choose(rps, 1, LIMIT)
        assert solver.carries(mix) >= rps
        assert 1 <= sum(mix) <= LIMIT
    assert sum(solver.choose(1.0, 5, LIMIT)) == 5
    # with replicas running, the answer still carries the rate within the bounds
    mix = solver.choose(10.0, 3, 6, current=(3, 0))
    assert solver.carries(mix) >= 10.0 and 3 <= sum(mix) <= 6
