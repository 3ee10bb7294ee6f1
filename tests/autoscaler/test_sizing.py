"""Sizing from the capacity model, the user-side p95, and what the planner hands to the solver."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gridplace_operator.api.conditions import Reason
from gridplace_operator.api.inference_deployment import InferenceDeploymentSpec
from gridplace_operator.autoscaler import (
    History,
    Inputs,
    Policy,
    capacity_size,
    decide,
    longest_rtt_s,
    status_of,
    user_p95,
)
from gridplace_operator.translate import IdepRef, Rejection, placement_model

GPU = "NVIDIA-L40S"
SPEC: dict[str, Any] = {
    "model": {
        "name": "m",
        "gpuTypes": [GPU],
        "performance": {
            "gpus": [
                {
                    "gpuType": GPU,
                    "maxBatch": 4,
                    "decodeBaseSeconds": 0.014,
                    "decodePerSequenceSeconds": 0.0005,
                    "prefillSecondsPerToken": 0.00008,
                    "activePowerWatts": 350,
                    "idlePowerWatts": 100,
                }
            ]
        },
    },
    "slo": {"p95TimeToFirstTokenSeconds": 1.0},
    "scaling": {"minReplicas": 1, "maxReplicas": 12},
    "demand": {"static": [{"zone": "z", "requestsPerSecond": 2}], "meanOutputTokens": 20},
}


def model(total: int | None = None) -> Any:
    spec = InferenceDeploymentSpec.model_validate(SPEC)
    built = placement_model(IdepRef("ns", "m"), spec, {"z": 2.0}, total)
    assert not isinstance(built, Rejection)
    return built


def test_size_is_the_fewest_replicas_whose_capacity_covers_the_rate() -> None:
    m = model()
    replica = m.replica_model(GPU)
    for rps in (0.5, 3.0, 9.0, 20.0):
        n = capacity_size(m, rps, [GPU], limit=100).replicas
        assert replica.capacity(n) >= rps
        assert n == 1 or replica.capacity(n - 1) < rps


def test_no_demand_needs_no_replicas_and_too_much_says_so() -> None:
    m = model()
    assert capacity_size(m, 0.0, [GPU], limit=10).replicas == 0
    short = capacity_size(m, 1e6, [GPU], limit=10)
    assert short.replicas == 10  # never a size above the limit
    assert short.unreachable is not None and "maxReplicas 10 carry" in short.unreachable


def test_a_prompt_whose_prefill_alone_exceeds_the_slo_is_unreachable_at_any_size() -> None:
    slow = {**SPEC, "slo": {"p95TimeToFirstTokenSeconds": 0.05}}
    spec = InferenceDeploymentSpec.model_validate(slow)
    built = placement_model(IdepRef("ns", "m"), spec, {"z": 2.0})
    assert not isinstance(built, Rejection)
    sized = capacity_size(built, 1.0, [GPU], limit=10)
    assert sized.unreachable is not None and "prefill" in sized.unreachable


def test_the_autoscaler_total_fixes_the_placement_models_bounds() -> None:
    assert (model().min_replicas, model().max_replicas) == (1, 12)
    assert (model(7).min_replicas, model(7).max_replicas) == (7, 7)
    pinned = InferenceDeploymentSpec.model_validate(
        {**SPEC, "scaling": {"minReplicas": 1, "maxReplicas": 12, "replicas": 3}}
    )
    built = placement_model(IdepRef("ns", "m"), pinned, {"z": 2.0}, 7)
    assert not isinstance(built, Rejection)
    assert (built.min_replicas, built.max_replicas) == (3, 3)


def test_user_p95_adds_the_longest_rtt_routed_to_each_region() -> None:
    rtt = {"us": {"east": 5.0, "west": 60.0}, "eu": {"east": 90.0}}
    longest = longest_rtt_s([("us", "east"), ("eu", "east"), ("us", "west")], rtt)
    assert longest == pytest.approx({"east": 0.09, "west": 0.06})
    assert user_p95({"east": 0.3, "west": 0.5}, longest) == pytest.approx(0.56)
    assert user_p95({}, longest) is None


def test_status_carries_the_decision_and_its_inputs() -> None:
    policy = Policy(1, 10, 0, 300, 4, 0.1)
    inputs = Inputs(
        now_s=1_700_000_000.0, target_p95_s=1.0, current=2, ready=2, metrics_available=True,
        observed_p95_s=2.5, observed_rps=7.25,
    )  # fmt: skip
    decision = decide(inputs, policy, History())
    status = status_of(decision)
    assert status.desired_replicas == 4
    assert status.reason == Reason.SCALING_UP
    assert (status.observed_p95_seconds, status.observed_requests_per_second) == (2.5, 7.25)
    assert status.last_scale_time == datetime.fromtimestamp(1_700_000_000.0, UTC)
