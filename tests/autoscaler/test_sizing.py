"""Sizing from the capacity model, the user-side p95, and what the planner hands to the solver."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from gridplace_operator.api.conditions import Reason
from gridplace_operator.api.inference_deployment import InferenceDeploymentSpec
from gridplace_operator.api.parsed import IdepRef, Rejection
from gridplace_operator.autoscale.decide import (
    History,
    Inputs,
    ScalingPolicy,
    capacity_size,
    decide,
    history_from_status,
    longest_rtt_s,
    outcome,
    status_of,
    unreachable,
    user_p95,
)
from gridplace_operator.planning.problem import placement_model

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


def model(bounds: tuple[int, int] | None = None) -> Any:
    spec = InferenceDeploymentSpec.model_validate(SPEC)
    built = placement_model(IdepRef("ns", "m"), spec, {"z": 2.0}, bounds)
    assert not isinstance(built, Rejection)
    return built


def test_size_is_the_fewest_replicas_whose_capacity_covers_the_rate() -> None:
    m = model()
    replica = m.replica_model(GPU)
    for rps in (0.5, 3.0, 9.0, 20.0):
        n = capacity_size(m, rps, GPU, limit=100).replicas
        assert replica.capacity(n) >= rps
        assert n == 1 or replica.capacity(n - 1) < rps


def test_no_demand_needs_no_replicas_and_too_much_says_so() -> None:
    m = model()
    assert capacity_size(m, 0.0, GPU, limit=10).replicas == 0
    short = capacity_size(m, 1e6, GPU, limit=10)
    assert short.replicas == 10  # never a size above the limit
    assert short.unreachable is not None and "maxReplicas 10 carry" in short.unreachable


def test_a_prompt_whose_prefill_alone_exceeds_the_slo_is_unreachable_at_any_size() -> None:
    slow = {**SPEC, "slo": {"p95TimeToFirstTokenSeconds": 0.05}}
    spec = InferenceDeploymentSpec.model_validate(slow)
    built = placement_model(IdepRef("ns", "m"), spec, {"z": 2.0})
    assert not isinstance(built, Rejection)
    sized = capacity_size(built, 1.0, GPU, limit=10)
    assert sized.unreachable is not None and "prefill" in sized.unreachable
    assert unreachable(built, 1.0, [GPU], limit=10) == sized.unreachable


def test_a_rate_one_allowed_gpu_type_carries_is_not_unreachable() -> None:
    h100 = "NVIDIA-H100-80GB-HBM3"
    fast: dict[str, Any] = {"gpuType": h100, "maxBatch": 8, "decodeBaseSeconds": 0.008,
            "decodePerSequenceSeconds": 0.0002, "prefillSecondsPerToken": 0.00002,
            "activePowerWatts": 700, "idlePowerWatts": 100}  # fmt: skip
    both = {**SPEC, "model": {**SPEC["model"], "gpuTypes": [GPU, h100]}}
    both["model"]["performance"] = {"gpus": [*SPEC["model"]["performance"]["gpus"], fast]}
    spec = InferenceDeploymentSpec.model_validate(both)
    built = placement_model(IdepRef("ns", "m"), spec, {"z": 2.0})
    assert not isinstance(built, Rejection)
    rps = built.replica_model(GPU).capacity(10) * 1.5  # beyond ten L40S, within ten H100
    assert capacity_size(built, rps, GPU, 10).unreachable is not None
    assert unreachable(built, rps, [GPU, h100], 10) is None
    assert unreachable(built, rps, [GPU], 10) is not None


def test_the_autoscaler_bounds_become_the_placement_models_bounds() -> None:
    assert (model().min_replicas, model().max_replicas) == (1, 12)
    assert (model((3, 7)).min_replicas, model((3, 7)).max_replicas) == (3, 7)
    pinned = InferenceDeploymentSpec.model_validate(
        {**SPEC, "scaling": {"minReplicas": 1, "maxReplicas": 12, "replicas": 3}}
    )
    built = placement_model(IdepRef("ns", "m"), pinned, {"z": 2.0}, (5, 7))
    assert not isinstance(built, Rejection)
    assert (built.min_replicas, built.max_replicas) == (3, 3)


def test_user_p95_adds_the_longest_rtt_routed_to_each_region() -> None:
    rtt = {"us": {"east": 5.0, "west": 60.0}, "eu": {"east": 90.0}}
    longest = longest_rtt_s([("us", "east"), ("eu", "east"), ("us", "west")], rtt)
    assert longest == pytest.approx({"east": 0.09, "west": 0.06})
    assert user_p95({"east": 0.3, "west": 0.5}, longest) == pytest.approx(0.56)
    assert user_p95({}, longest) is None


def test_status_carries_the_decision_the_plan_and_their_inputs() -> None:
    policy = ScalingPolicy(1, 10, 0, 300, 4, 0.1)
    inputs = Inputs(
        now_s=1_700_000_000.0, target_p95_s=1.0, current=2, ready=2, metrics_available=True,
        observed_p95_s=2.5, observed_rps=7.25, demand_rps=7.0,
    )  # fmt: skip
    decision = decide(inputs, policy, History())
    status = status_of(decision, outcome(decision, 4))
    assert status.desired_replicas == 4
    assert status.planned_requests_per_second == pytest.approx(7.975)
    assert status.reason == Reason.SCALING_UP
    assert (status.observed_p95_seconds, status.observed_requests_per_second) == (2.5, 7.25)


def test_a_restarted_operator_keeps_the_shown_total_and_rate_for_a_window() -> None:
    policy = ScalingPolicy(1, 10, 0, 300, 4, 0.1)
    shown = {"desiredReplicas": 6, "plannedRequestsPerSecond": 11.0, "reason": "OnTarget",
             "lastScaleTime": "2026-01-01T00:00:00Z"}  # fmt: skip
    history = history_from_status(shown, 1000.0)
    assert (history.floor, history.rate) == (6, 11.0)
    assert history.last_scale_s == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    low = Inputs(now_s=1010.0, target_p95_s=1.0, current=6, ready=6, metrics_available=True,
                 observed_p95_s=0.2, observed_rps=1.0, demand_rps=1.0)  # fmt: skip
    early = decide(low, policy, history)
    assert (early.rate_rps, early.min_total) == (11.0, 6)  # nothing shrinks at once
    late = decide(replace(low, now_s=1400.0), policy, early.history)
    assert late.rate_rps == pytest.approx(1.1)
    assert late.min_total == 2  # within max_step of 6
    assert history_from_status(None, 0.0) == History()
