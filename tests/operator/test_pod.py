"""The vLLM pod gridplace renders: its command line against the targeted vLLM release, the
resources derived from the model, the pod overlay (spec.pod) and the PodDisruptionBudget."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest
from pydantic import ValidationError

from gridplace_e2e.podsim import pod_model
from gridplace_operator.api.inference_deployment import (
    DEFAULT_IMAGE,
    MANAGED_VLLM_FLAGS,
    VLLM_VERSION,
    InferenceDeploymentSpec,
)
from gridplace_operator.api.parsed import IdepRef
from gridplace_operator.observe.world import child_view
from gridplace_operator.planning.problem import placement_model
from gridplace_operator.reconcile.children import (
    Owner,
    batch_limits,
    desired_children,
    memory_request_gib,
    parameter_billions,
    startup_seconds,
    weights_gib,
)
from gridplace_operator.reconcile.writes import ObservedChild, writes_for
from gridplace_placement.problem import Model as PlacementModel

H100 = "NVIDIA-H100-80GB-HBM3"
L40S = "NVIDIA-L40S"
LLAMA = "meta-llama/Meta-Llama-3.1-8B-Instruct"  # in the shipped catalogue on H100 and L40S
REGION = {"topology.kubernetes.io/region": "us-east-1"}


def spec(model: dict[str, Any] | None = None, **rest: Any) -> InferenceDeploymentSpec:
    return InferenceDeploymentSpec.model_validate(
        {
            "model": {"name": LLAMA, "gpuTypes": [H100]} | (model or {}),
            "slo": {"p95TimeToFirstTokenSeconds": 0.5},
            "demand": {"static": [{"zone": "us-east", "requestsPerSecond": 10}]},
            **rest,
        }
    )


def render(s: InferenceDeploymentSpec, gpu_type: str = H100) -> list[dict[str, Any]]:
    owner = Owner(namespace="serving", name="chat", uid="uid-1", spec=s)
    return desired_children(owner, {("us-east-1", gpu_type): 2}, {"us-east-1": REGION})


def deployment(s: InferenceDeploymentSpec, gpu_type: str = H100) -> dict[str, Any]:
    return next(c for c in render(s, gpu_type) if c["kind"] == "Deployment")


def pod(s: InferenceDeploymentSpec) -> dict[str, Any]:
    spec_: dict[str, Any] = deployment(s)["spec"]["template"]["spec"]
    return spec_


def container(s: InferenceDeploymentSpec) -> dict[str, Any]:
    found: dict[str, Any] = pod(s)["containers"][0]
    return found


def vllm_reference() -> dict[str, Any]:
    text = resources.files("gridplace_operator").joinpath("data/vllm_flags.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


# The command line ----------------------------------------------------------------------------
def test_the_targeted_release_is_named_once_with_its_flag_reference() -> None:
    reference = vllm_reference()
    assert reference["version"] == VLLM_VERSION
    assert DEFAULT_IMAGE.removeprefix("vllm/vllm-openai:") == VLLM_VERSION
    assert f"/{VLLM_VERSION}/" in reference["source"]


@pytest.mark.parametrize(
    "model",
    [
        {},
        {"tensorParallelSize": 2, "quantization": "fp8", "maxModelLen": 8192},
        {"servedModelName": "chat", "args": ["--enable-prefix-caching"]},
    ],
)
def test_every_rendered_flag_is_in_the_targeted_vllm_reference(model: dict[str, Any]) -> None:
    reference = vllm_reference()
    c = container(spec(model))
    assert c["command"] == ["vllm", "serve"]
    assert c["args"][0] == LLAMA  # the positional model_tag, not the deprecated --model
    flags = [a.split("=", 1)[0] for a in c["args"][1:]]
    assert all(a.startswith("--") for a in c["args"][1:])
    assert set(flags) - set(reference["flags"]) == set()
    # gridplace's own flags are the ones users may not pass in args, and all are documented.
    assert {f for f in flags if f in MANAGED_VLLM_FLAGS} <= set(reference["flags"])


def test_batch_limits_are_the_profile_the_plan_used() -> None:
    """--max-num-seqs and --max-num-batched-tokens are what the placement engine sized the
    replicas with, for catalogue profiles and measured ones."""
    measured = {
        "gpuType": L40S,
        "maxBatch": 24,
        "maxBatchedTokens": 4096,
        "decodeBaseSeconds": 0.02,
        "decodePerSequenceSeconds": 0.001,
        "prefillSecondsPerToken": 0.0001,
        "activePowerWatts": 300,
        "idlePowerWatts": 80,
    }
    cases = [
        spec({"gpuTypes": [H100, L40S]}),
        spec({"gpuTypes": [L40S], "performance": {"gpus": [measured]}}),
    ]
    for s in cases:
        planned = placement_model(IdepRef("serving", "chat"), s, {"us-east": 10.0})
        assert isinstance(planned, PlacementModel)
        for gpu in s.model.gpu_types:
            profile = planned.profiles[gpu]
            limits = batch_limits(s.model, gpu)
            assert limits is not None
            assert (limits.max_num_seqs, limits.max_num_batched_tokens) == (
                profile.max_batch,
                profile.max_batched_tokens,
            )
            args = container_for(s, gpu)["args"]
            assert f"--max-num-seqs={profile.max_batch}" in args
            assert f"--max-num-batched-tokens={profile.max_batched_tokens}" in args
    assert "--max-num-seqs=24" in container_for(cases[1], L40S)["args"]


def container_for(s: InferenceDeploymentSpec, gpu_type: str) -> dict[str, Any]:
    found: dict[str, Any] = deployment(s, gpu_type)["spec"]["template"]["spec"]["containers"][0]
    return found


def test_served_name_defaults_to_the_model_and_max_model_len_only_when_given() -> None:
    args = container(spec())["args"]
    assert f"--served-model-name={LLAMA}" in args
    assert not [a for a in args if a.startswith("--max-model-len")]
    args = container(spec({"servedModelName": "chat", "maxModelLen": 8192}))["args"]
    assert "--served-model-name=chat" in args
    assert "--max-model-len=8192" in args


def test_managed_flags_in_args_are_rejected() -> None:
    for arg in ("--max-num-seqs=8", "--max-model-len=4096", "--served-model-name=x"):
        with pytest.raises(ValidationError, match="args must not set"):
            spec({"args": [arg]})


def test_the_pod_simulator_reads_the_model_of_a_rendered_pod() -> None:
    template = deployment(spec())["spec"]["template"]
    assert pod_model(template) == LLAMA


# Resources, /dev/shm, probes --------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "billions"),
    [
        ("meta-llama/Meta-Llama-3.1-8B-Instruct", 8),
        ("bigcode/starcoder2-15b", 15),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", 56),
        ("Qwen/Qwen3-30B-A3B", 30),
        ("Qwen/Qwen2.5-0.5B-Instruct", 0.5),
        ("google/gemma-2-27b-it", 27),
        ("facebook/opt-125m", None),
        ("/models/my-finetune", None),
    ],
)
def test_parameter_count_from_the_model_name(name: str, billions: float | None) -> None:
    assert parameter_billions(name) == billions


def test_cpu_memory_and_startup_follow_the_model_size() -> None:
    small = spec()
    # 8e9 BF16 parameters are 14.9 GiB: 4 + 4 (one GPU worker) + 14.9 + 2 (/dev/shm) -> 25 GiB.
    assert weights_gib(small.model) == pytest.approx(14.90, abs=0.01)
    assert memory_request_gib(small.model) == 25
    res = container(small)["resources"]
    assert res["requests"] == {"cpu": "4", "memory": "25Gi", "nvidia.com/gpu": "1"}
    assert res["limits"] == {"memory": "25Gi", "nvidia.com/gpu": "1"}  # no CPU limit
    big = spec({"name": "meta-llama/Llama-3.1-70B-Instruct", "tensorParallelSize": 4})
    # 130.4 GiB of weights, four workers, 8 GiB of /dev/shm.
    assert container(big)["resources"]["requests"]["memory"] == "159Gi"
    assert container(big)["resources"]["requests"]["cpu"] == "10"
    assert startup_seconds(big.model) > startup_seconds(small.model) >= 600 + 149
    quantized = spec({"name": "meta-llama/Llama-3.1-70B-Instruct", "quantization": "awq"})
    assert weights_gib(quantized.model) == pytest.approx(weights_gib(big.model) / 4)
    assert weights_gib(spec({"weightsGib": 40}).model) == 40


def test_the_startup_probe_allows_the_derived_time_and_overrides_win() -> None:
    s = spec()
    probe = container(s)["startupProbe"]
    allowed = probe["periodSeconds"] * probe["failureThreshold"]
    assert startup_seconds(s.model) <= allowed < startup_seconds(s.model) + probe["periodSeconds"]
    assert container(s)["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container(s)["livenessProbe"]["httpGet"]["path"] == "/health"
    tuned = spec(pod={"startupTimeoutSeconds": 3600, "resources": {"cpu": "7", "memory": "90Gi"}})
    c = container(tuned)
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] == 3600
    assert c["resources"]["requests"]["cpu"] == "7"
    assert c["resources"]["requests"]["memory"] == c["resources"]["limits"]["memory"] == "90Gi"


def test_dev_shm_is_memory_backed_and_grows_with_tensor_parallelism() -> None:
    for tp, size in ((1, "2Gi"), (4, "8Gi")):
        p = pod(spec({"tensorParallelSize": tp}))
        (shm,) = [v for v in p["volumes"] if v["name"] == "dshm"]
        assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": size}
        assert {"name": "dshm", "mountPath": "/dev/shm"} in p["containers"][0]["volumeMounts"]


def test_vllm_drains_within_the_grace_period() -> None:
    p = pod(spec())
    c = p["containers"][0]
    shutdown = int(next(a for a in c["args"] if a.startswith("--shutdown-timeout=")).split("=")[1])
    drain = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert shutdown > 0  # vLLM's default, 0, aborts the requests in flight
    assert p["terminationGracePeriodSeconds"] > drain + shutdown


# The overlay ---------------------------------------------------------------------------------
OVERLAY: dict[str, Any] = {
    "labels": {"team": "search"},
    "annotations": {"example.com/owner": "search"},
    "nodeSelector": {"example.com/pool": "inference", "topology.kubernetes.io/zone-x": "a"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
    ],
    "affinity": {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 10,
                    "preference": {
                        "matchExpressions": [{"key": "example.com/nvlink", "operator": "Exists"}]
                    },
                }
            ]
        }
    },
    "volumes": [{"name": "cache", "persistentVolumeClaim": {"claimName": "hf-cache"}}],
    "volumeMounts": [{"name": "cache", "mountPath": "/models/huggingface"}],
    "serviceAccountName": "vllm",
    "imagePullSecrets": ["registry"],
    "priorityClassName": "inference-high",
}


def test_the_overlay_is_merged_and_gridplace_keeps_what_it_owns() -> None:
    dep = deployment(spec(pod=OVERLAY))
    template = dep["spec"]["template"]
    p = template["spec"]
    assert template["metadata"]["labels"]["team"] == "search"
    assert dep["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    assert "team" not in dep["metadata"]["labels"]  # the pods', not the Deployment's
    assert template["metadata"]["annotations"]["example.com/owner"] == "search"
    assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert p["nodeSelector"] == {
        "example.com/pool": "inference",
        "topology.kubernetes.io/zone-x": "a",
        "topology.kubernetes.io/region": "us-east-1",
        "nvidia.com/gpu.product": H100,
    }
    assert p["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        OVERLAY["tolerations"][0],
    ]
    assert p["affinity"] == OVERLAY["affinity"]
    assert [v["name"] for v in p["volumes"]] == ["dshm", "cache"]
    assert p["volumes"][1] == OVERLAY["volumes"][0]  # the volume's source is passed as given
    mounts = p["containers"][0]["volumeMounts"]
    assert mounts[1] == {
        "name": "cache",
        "mountPath": "/models/huggingface",
        "readOnly": False,
    }
    assert p["serviceAccountName"] == "vllm"
    assert p["automountServiceAccountToken"] is False
    assert p["imagePullSecrets"] == [{"name": "registry"}]
    assert p["priorityClassName"] == "inference-high"


def test_the_regions_selector_wins_over_an_overlay_key_it_also_sets() -> None:
    s = spec(pod={"nodeSelector": {"example.com/site": "elsewhere"}})
    owner = Owner(namespace="serving", name="chat", uid="uid-1", spec=s)
    region = {"example.com/site": "dc1"}
    (dep,) = [
        c
        for c in desired_children(owner, {("dc1", H100): 1}, {"dc1": region})
        if c["kind"] == "Deployment"
    ]
    assert dep["spec"]["template"]["spec"]["nodeSelector"]["example.com/site"] == "dc1"


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        ({"labels": {"gridplace.dev/region": "x"}}, "labels must not set gridplace's own"),
        ({"labels": {"app.kubernetes.io/name": "x"}}, "labels must not set gridplace's own"),
        ({"annotations": {"prometheus.io/port": "1"}}, "annotations must not set"),
        ({"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L4"}}, "nodeSelector must not set"),
        ({"nodeSelector": {"topology.kubernetes.io/region": "x"}}, "nodeSelector must not set"),
        ({"volumes": [{"name": "dshm", "emptyDir": {}}]}, "volume name dshm is gridplace's"),
        (
            {
                "volumes": [{"name": "big", "emptyDir": {}}],
                "volumeMounts": [{"name": "big", "mountPath": "/dev/shm"}],
            },
            "/dev/shm is gridplace's",
        ),
        ({"volumeMounts": [{"name": "nope", "mountPath": "/x"}]}, "missing: nope"),
        ({"tolerations": [{"operator": "Equal", "value": "x"}]}, "without a key"),
        ({"resources": {"memory": "lots"}}, "should match pattern"),
        ({"containers": []}, "Extra inputs are not permitted"),
    ],
)
def test_the_overlay_rejects_what_gridplace_owns(overlay: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(pod=overlay)


# The PodDisruptionBudget ---------------------------------------------------------------------
def test_each_regional_deployment_has_a_disruption_budget_of_its_pods() -> None:
    children = render(spec({"gpuTypes": [H100, L40S]}))
    deployments = {c["metadata"]["name"]: c for c in children if c["kind"] == "Deployment"}
    budgets = {c["metadata"]["name"]: c for c in children if c["kind"] == "PodDisruptionBudget"}
    assert budgets.keys() == deployments.keys() and budgets
    for name, budget in budgets.items():
        dep = deployments[name]
        assert budget["apiVersion"] == "policy/v1"
        assert budget["spec"] == {"maxUnavailable": 1, "selector": dep["spec"]["selector"]}
        assert budget["metadata"]["ownerReferences"] == dep["metadata"]["ownerReferences"]
        assert budget["metadata"]["labels"] == dep["metadata"]["labels"]
        assert "gridplace.dev/spec-hash" in budget["metadata"]["annotations"]


def test_a_changed_disruption_budget_is_repaired_and_a_steady_one_left_alone() -> None:
    children = render(spec())
    live = [
        ObservedChild.from_api(child_view({**c, "status": {"readyReplicas": 2}})) for c in children
    ]
    assert writes_for(children, live, "uid-1").make == []
    edited = []
    for child in children:
        c = copy.deepcopy(child)
        if c["kind"] == "PodDisruptionBudget":
            c["spec"]["maxUnavailable"] = 0  # would block every drain
        edited.append(ObservedChild.from_api(child_view({**c, "status": {"readyReplicas": 2}})))
    writes = writes_for(children, edited, "uid-1")
    assert [(r.kind, r.differences) for r in writes.repairs] == [
        ("PodDisruptionBudget", ["maxUnavailable 0, wanted 1"])
    ]
    assert [w.manifest["kind"] for w in writes.make] == ["PodDisruptionBudget"]
