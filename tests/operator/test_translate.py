"""From cluster objects to one joint placement problem, with per-object rejections."""

from __future__ import annotations

from typing import Any

from gridplace_operator.api.conditions import Reason
from gridplace_operator.api.inference_deployment import InferenceDeploymentSpec
from gridplace_operator.api.parsed import IdepRef, parse_spec
from gridplace_operator.api.region import Region
from gridplace_operator.observe.inventory import GpuPool, Inventory
from gridplace_operator.planning.problem import (
    RegionSignalValues,
    build_problem,
    current_assignments,
    running_assignments,
    static_demand,
)
from gridplace_placement.problem import Assignment

H100 = "NVIDIA-H100-80GB-HBM3"
LLAMA = "meta-llama/Meta-Llama-3.1-8B-Instruct"


def spec(**overrides: Any) -> InferenceDeploymentSpec:
    body: dict[str, Any] = {
        "model": {"name": LLAMA, "gpuTypes": [H100]},
        "slo": {"p95TimeToFirstTokenSeconds": 1.0},
        "demand": {"static": [{"zone": "us-east", "requestsPerSecond": 5}]},
    }
    body.update(overrides)
    return InferenceDeploymentSpec.model_validate(body)


def region(name: str, rtt: dict[str, float]) -> Region:
    return Region.model_validate(
        {
            "metadata": {"name": name},
            "spec": {
                "carbonIntensity": {"static": {"gCO2PerKWh": 300}},
                "powerPrice": {"static": {"usdPerMWh": 80}},
                "rtt": [{"zone": z, "ms": ms} for z, ms in rtt.items()],
            },
        }
    )


REGIONS = [region("us-east-1", {"us-east": 5}), region("eu-central-1", {"us-east": 90})]
SIGNALS = {r.metadata.name: RegionSignalValues(300, 80) for r in REGIONS}
INVENTORY = Inventory(
    pools={
        ("us-east-1", H100): GpuPool("us-east-1", H100, 16, 0),
        ("eu-central-1", H100): GpuPool("eu-central-1", H100, 8, 2),
    }
)


def translate(ideps: dict[IdepRef, InferenceDeploymentSpec], **kw: Any) -> Any:
    args: dict[str, Any] = {
        "demand": {ref: static_demand(s) for ref, s in ideps.items()},
        "regions": REGIONS,
        "signals": SIGNALS,
        "inventory": INVENTORY,
        "current": [],
    }
    args.update(kw)
    return build_problem(ideps, **args)


def test_valid_objects_become_one_joint_problem() -> None:
    a, b = IdepRef("team-a", "chat"), IdepRef("team-b", "chat")
    t = translate({a: spec(), b: spec(scaling={"minReplicas": 2, "maxReplicas": 3})})
    assert t.rejected == {}
    assert t.problem is not None
    assert [m.name for m in t.problem.models] == ["team-a/chat", "team-b/chat"]
    assert t.models == {"team-a/chat": a, "team-b/chat": b}
    by_region = {r.name: r for r in t.problem.regions}
    assert by_region["eu-central-1"].gpus == {H100: 6}  # 8 minus 2 held by other owners
    assert t.problem.rtt_ms == {"us-east": {"us-east-1": 5.0, "eu-central-1": 90.0}}
    b_model = t.problem.models[1]
    assert (b_model.min_replicas, b_model.max_replicas) == (2, 3)
    assert b_model.demand == {"us-east": 5.0}


def test_a_zone_no_region_reaches_rejects_only_that_object() -> None:
    good, bad = IdepRef("ns", "good"), IdepRef("ns", "bad")
    far = spec(demand={"static": [{"zone": "mars", "requestsPerSecond": 1}]})
    t = translate({good: spec(), bad: far})
    assert t.rejected[bad].reason == Reason.SLO_UNREACHABLE
    assert "mars" in t.rejected[bad].message
    assert t.problem is not None and [m.name for m in t.problem.models] == ["ns/good"]


def test_gpu_types_no_region_has_are_rejected_with_the_types_named() -> None:
    ref = IdepRef("ns", "l4")
    t = translate({ref: spec(model={"name": LLAMA, "gpuTypes": ["NVIDIA-L4"]})})
    assert t.rejected[ref].reason == Reason.NO_ELIGIBLE_REGION
    assert "NVIDIA-L4" in t.rejected[ref].message


def test_a_model_without_a_performance_profile_is_an_invalid_spec() -> None:
    ref = IdepRef("ns", "x")
    t = translate({ref: spec(model={"name": "acme/unknown-model", "gpuTypes": [H100]})})
    assert t.rejected[ref].reason == Reason.INVALID_SPEC
    assert "acme/unknown-model" in t.rejected[ref].message


def test_regions_without_a_region_object_are_reported_and_ignored() -> None:
    ref = IdepRef("ns", "chat")
    s = spec(placement={"allowedRegions": ["us-east-1", "moon-1"]})
    t = translate({ref: s})
    assert t.missing_regions[ref] == ["moon-1"]
    assert t.problem is not None and t.problem.models[0].allowed_regions == ("us-east-1",)


def test_pinned_replicas_fix_the_total() -> None:
    ref = IdepRef("ns", "chat")
    t = translate({ref: spec(scaling={"minReplicas": 1, "maxReplicas": 9, "replicas": 4})})
    assert t.problem is not None
    assert (t.problem.models[0].min_replicas, t.problem.models[0].max_replicas) == (4, 4)


def test_current_replicas_come_from_gridplace_deployment_labels() -> None:
    deployment = {
        "metadata": {
            "namespace": "ns",
            "labels": {
                "gridplace.dev/inference-deployment": "chat",
                "gridplace.dev/region": "us-east-1",
                "gridplace.dev/gpu-type": H100,
            },
        },
        "spec": {"replicas": 3},
    }
    assert current_assignments([deployment, {"metadata": {"labels": {}}}]) == [
        Assignment(model="ns/chat", region="us-east-1", gpu_type=H100, replicas=3)
    ]


def test_invalid_spec_names_the_field() -> None:
    got = parse_spec({"spec": {"model": {"name": LLAMA, "gpuTypes": []}}})
    assert not isinstance(got, InferenceDeploymentSpec)
    assert got.reason == Reason.INVALID_SPEC
    assert "spec.model.gpuTypes" in got.message


def test_each_model_gets_its_own_churn_budget() -> None:
    a, b = IdepRef("team-a", "chat"), IdepRef("team-b", "chat")
    t = translate({a: spec(), b: spec()}, churn_budgets={a: 0, b: 3})
    assert t.problem is not None
    assert t.problem.churn_budget is None
    budgets = {m.name: m.churn_budget for m in t.problem.models}
    assert budgets == {"team-a/chat": 0, "team-b/chat": 3}


def test_the_last_plan_is_what_runs_where_there_is_one() -> None:
    seen = [
        Assignment(model="ns/a", region="r1", gpu_type="H100", replicas=2),  # watch lags
        Assignment(model="ns/b", region="r1", gpu_type="H100", replicas=1),  # moving to r2
        Assignment(model="ns/c", region="r1", gpu_type="H100", replicas=1),  # not planned yet
    ]
    applied = {"ns/a": {("r1", "H100"): 3}, "ns/b": {("r2", "H100"): 1}}
    assert running_assignments(seen, applied) == [
        Assignment(model="ns/a", region="r1", gpu_type="H100", replicas=3),
        Assignment(model="ns/b", region="r2", gpu_type="H100", replicas=1),
        Assignment(model="ns/c", region="r1", gpu_type="H100", replicas=1),
    ]
    assert running_assignments(seen, {}) == seen
