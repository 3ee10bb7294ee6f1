import math

import numpy as np
import pytest

from gridplace_placement.capacity import (
    ReplicaModel,
    erlang_b,
    erlang_c,
    erlang_c_array,
    p95_wait_array,
    slots_at_target,
)


@pytest.mark.parametrize(
    ("servers", "load", "expected"),
    [
        (1, 0.5, 0.5),  # M/M/1: P(wait) = rho
        (2, 1.0, 1 / 3),  # B(2,1)=0.2 -> C = 2*0.2 / (2 - 0.8)
        (3, 2.0, 4 / 9),  # B(3,2)=4/19 -> C = (12/19) / (3 - 30/19)
    ],
)
def test_erlang_c_matches_hand_computed_values(servers: int, load: float, expected: float) -> None:
    assert erlang_c(servers, load) == pytest.approx(expected, rel=1e-12)
    vector = erlang_c_array(np.array([float(servers)]), np.array([load]))
    assert vector[0] == pytest.approx(expected, rel=1e-9)


def test_erlang_b_first_steps_by_hand() -> None:
    # B(1,A) = A/(1+A); B(2,A) = A^2/2 / (1 + A + A^2/2)
    assert erlang_b(1, 3.0) == pytest.approx(0.75)
    assert erlang_b(2, 3.0) == pytest.approx(4.5 / 8.5)


@pytest.mark.parametrize(("servers", "load"), [(1000, 950.0), (5000, 4950.0), (20000, 19500.0)])
def test_erlang_c_is_stable_and_consistent_for_thousands_of_servers(
    servers: int, load: float
) -> None:
    exact = erlang_c(servers, load)
    assert 0.0 < exact < 1.0
    assert erlang_c_array(np.array([float(servers)]), np.array([load]))[0] == pytest.approx(
        exact, rel=1e-6
    )


def test_overloaded_queue_always_waits_and_has_infinite_p95() -> None:
    assert erlang_c(4, 4.0) == 1.0
    wait = p95_wait_array(np.array([4.0]), np.array([5.0]), np.array([1.0]), np.array([1.0]))
    assert math.isinf(wait[0])


def test_p95_wait_of_mm1_by_hand() -> None:
    # M/M/1, lam=0.5, mu=1: P(W>t) = 0.5 exp(-0.5 t) = 0.05  ->  t = ln(10)/0.5
    wait = p95_wait_array(np.array([1.0]), np.array([0.5]), np.array([1.0]), np.array([1.0]))
    assert wait[0] == pytest.approx(math.log(10) / 0.5)


def test_mgc_correction_scales_the_wait() -> None:
    args = (np.array([1.0]), np.array([0.5]), np.array([1.0]))
    exp_wait = p95_wait_array(*args, np.array([1.0]))[0]
    det_wait = p95_wait_array(*args, np.array([0.0]))[0]
    assert det_wait == pytest.approx(exp_wait / 2)


def test_slots_follow_time_per_token_target() -> None:
    assert slots_at_target(0.010, 0.00025, 128, 0.050) == 128  # (50-10)/0.25 = 160, capped
    assert slots_at_target(0.010, 0.00025, 512, 0.050) == 160
    assert slots_at_target(0.060, 0.00025, 512, 0.050) == 0


def test_pool_capacity_reproduces_worked_example_and_pooling_gain() -> None:
    # a=10 ms, b=0.25 ms, 50 ms target -> 128 slots; 256 tokens at 42 ms; 0.45 s wait budget.
    replica = ReplicaModel(
        slots=128, service_time_s=256 * 0.042, prefill_s=0.0, wait_budget_s=0.45, scv=1.0
    )
    caps = [replica.capacity(n) for n in (1, 2, 4, 8, 32)]
    for got, reference in zip(caps, [10.4, 21.8, 44.9, 91.7, 374.9], strict=True):
        assert got == pytest.approx(reference, rel=0.01)
    per_replica = [c / n for c, n in zip(caps, (1, 2, 4, 8, 32), strict=True)]
    assert per_replica == sorted(per_replica)  # pooling never hurts
    full = 128 / (256 * 0.042)
    assert caps[-1] / 32 < full  # never above the service rate of all slots


def test_capacity_is_the_largest_rate_within_budget() -> None:
    replica = ReplicaModel(slots=8, service_time_s=2.0, prefill_s=0.1, wait_budget_s=0.3, scv=1.0)
    cap = replica.capacity(3)
    assert replica.p95_wait(3, cap) <= 0.3 + 1e-9
    assert replica.p95_wait(3, cap * 1.01) > 0.3
