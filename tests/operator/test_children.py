"""Desired children of an InferenceDeployment and the make-before-break write plan."""

from __future__ import annotations

from typing import Any

from gridplace_operator.api.inference_deployment import InferenceDeploymentSpec
from gridplace_operator.observe.inventory import pod_gpu_request
from gridplace_operator.observe.world import child_view
from gridplace_operator.reconcile.children import (
    GITOPS_TRACKING_LABELS,
    Owner,
    child_name,
    deployment_name,
    desired_children,
    gpu_slug,
)
from gridplace_operator.reconcile.writes import Apply, Delete, ObservedChild, writes_for

H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-80GB"
SELECTORS = {
    "eu-central-1": {"topology.kubernetes.io/region": "eu-central-1"},
    "us-east-1": {"topology.kubernetes.io/region": "us-east-1"},
}


def deployment_of(children: list[dict[str, Any]]) -> dict[str, Any]:
    """The last Deployment among rendered children."""
    return [c for c in children if c["kind"] == "Deployment"][-1]


def owner(gpu_types: list[str] | None = None, **model: Any) -> Owner:
    spec = InferenceDeploymentSpec.model_validate(
        {
            "model": {"name": "meta-llama/Llama-3.1-8B-Instruct", "gpuTypes": gpu_types or [H100]}
            | model,
            "slo": {"p95TimeToFirstTokenSeconds": 0.5},
            "demand": {"static": [{"zone": "us-east", "requestsPerSecond": 10}]},
        }
    )
    return Owner(namespace="serving", name="chat", uid="uid-1", spec=spec)


def test_one_deployment_per_region_and_services_per_region_and_model() -> None:
    children = desired_children(owner(), {("us-east-1", H100): 2}, SELECTORS)
    assert sorted((c["kind"], c["metadata"]["name"]) for c in children) == [
        ("Deployment", "chat-us-east-1"),
        ("PodDisruptionBudget", "chat-us-east-1"),
        ("Service", "chat"),
        ("Service", "chat-us-east-1"),
    ]
    deployments = [c for c in children if c["kind"] == "Deployment"]
    dep = deployments[0]
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {
        "topology.kubernetes.io/region": "us-east-1",
        "nvidia.com/gpu.product": H100,
    }
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["command"] == ["vllm", "serve"]
    assert container["args"][0] == "meta-llama/Llama-3.1-8B-Instruct"
    assert not [a for a in container["args"] if a.startswith("--model")]
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container)
    assert dep["metadata"]["ownerReferences"][0] == {
        "apiVersion": "gridplace.dev/v1alpha1",
        "kind": "InferenceDeployment",
        "name": "chat",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    template_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= template_labels.items()


def test_tensor_parallel_replicas_request_their_gpus_and_user_args_follow() -> None:
    o = owner(tensorParallelSize=2, args=["--enable-prefix-caching"], quantization="fp8")
    dep = next(
        c
        for c in desired_children(o, {("eu-central-1", H100): 1}, SELECTORS)
        if c["kind"] == "Deployment"
    )
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "2"
    assert container["args"][-1] == "--enable-prefix-caching"
    assert "--tensor-parallel-size=2" in container["args"]
    assert "--quantization=fp8" in container["args"]


def test_vllm_pods_get_no_token_no_capabilities_and_no_privilege_escalation() -> None:
    o = owner(image="registry.example/vllm:custom", env=[{"name": "HF_HOME", "value": "/tmp/hf"}])
    plan = {("us-east-1", H100): 1, ("eu-central-1", H100): 2}
    deployments = [c for c in desired_children(o, plan, SELECTORS) if c["kind"] == "Deployment"]
    assert len(deployments) == 2
    for dep in deployments:
        pod = dep["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert "serviceAccountName" not in pod  # the namespace's default, without its token
        assert pod["enableServiceLinks"] is False
        assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
        assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod)
        assert [v["name"] for v in pod["volumes"]] == ["dshm"]  # no hostPath, no token
        (container,) = pod["containers"]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }
        # The official vLLM image runs as root: gridplace neither forces nor forbids a user.
        assert "runAsNonRoot" not in pod["securityContext"]
        assert "runAsUser" not in container["securityContext"]
    # Each manifest has its own copy: a caller editing one leaves the next render alone.
    deployments[0]["spec"]["template"]["spec"]["containers"][0]["securityContext"].clear()
    again = deployment_of(desired_children(o, plan, SELECTORS))["spec"]["template"]["spec"]
    assert again["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_gpu_type_suffix_only_when_several_types_are_acceptable() -> None:
    assert deployment_name(owner(), "us-east-1", H100) == "chat-us-east-1"
    both = owner([H100, A100])
    assert deployment_name(both, "us-east-1", A100) == "chat-us-east-1-a100-sxm4-80gb"
    assert gpu_slug("NVIDIA-L40S") == "l40s"


def test_long_names_are_shortened_stably_within_a_dns_label() -> None:
    long = child_name("a" * 50, "ap-southeast-2")
    assert len(long) <= 63
    assert long == child_name("a" * 50, "ap-southeast-2")
    assert long != child_name("a" * 50, "ap-southeast-1")


def test_children_render_identically_so_hashes_are_stable() -> None:
    plan = {("us-east-1", H100): 2, ("eu-central-1", H100): 1}
    assert desired_children(owner(), plan, SELECTORS) == desired_children(owner(), plan, SELECTORS)


def observed(
    children: list[dict[str, Any]], ready: dict[str, int] | None = None
) -> list[ObservedChild]:
    out = []
    for c in children:
        obj = {**c, "status": {"readyReplicas": (ready or {}).get(c["metadata"]["name"], 0)}}
        out.append(ObservedChild.from_api(obj))
    return out


def test_steady_state_writes_nothing() -> None:
    children = desired_children(owner(), {("us-east-1", H100): 2}, SELECTORS)
    writes = writes_for(children, observed(children, {"chat-us-east-1": 2}), "uid-1")
    assert (writes.make, writes.brk, writes.held) == ([], [], False)


def test_a_move_scales_up_first_and_holds_the_scale_down_until_ready() -> None:
    o = owner()
    before = desired_children(o, {("us-east-1", H100): 2}, SELECTORS)
    after = desired_children(o, {("us-east-1", H100): 1, ("eu-central-1", H100): 1}, SELECTORS)
    writes = writes_for(after, observed(before, {"chat-us-east-1": 2}), "uid-1")
    made = {w.manifest["metadata"]["name"] for w in writes.make}
    assert made == {"chat-eu-central-1"}  # Service and Deployment of the new region
    assert [w.manifest["metadata"]["name"] for w in writes.brk if isinstance(w, Apply)] == [
        "chat-us-east-1"
    ]
    assert writes.held
    # Once the new region's pod is ready, the scale-down may go ahead.
    now = observed(before, {"chat-us-east-1": 2}) + observed(
        [c for c in after if c["metadata"]["name"] == "chat-eu-central-1"],
        {"chat-eu-central-1": 1},
    )
    later = writes_for(after, now, "uid-1")
    assert not later.held and len(later.brk) == 1


def test_regions_that_lose_all_replicas_are_removed_and_foreign_objects_left_alone() -> None:
    o = owner()
    before = desired_children(o, {("us-east-1", H100): 1, ("eu-central-1", H100): 1}, SELECTORS)
    after = desired_children(o, {("us-east-1", H100): 1}, SELECTORS)
    foreign = ObservedChild("Deployment", "serving", "someone-else", "uid-2", None, 3, 3)
    current = [*observed(before, {"chat-us-east-1": 1, "chat-eu-central-1": 1}), foreign]
    writes = writes_for(after, current, "uid-1")
    assert writes.make == []
    assert sorted((w.kind, w.name) for w in writes.brk if isinstance(w, Delete)) == [
        ("Deployment", "chat-eu-central-1"),
        ("PodDisruptionBudget", "chat-eu-central-1"),
        ("Service", "chat-eu-central-1"),
    ]
    assert not writes.held


def test_a_replacement_in_a_crowded_pool_holds_nothing_back() -> None:
    # Two models swap pools that are both full: each replacement needs the GPUs the other's old
    # replica holds, so waiting for either to be ready would wait forever.
    o = owner()
    before = desired_children(o, {("us-east-1", H100): 1}, SELECTORS)
    after = desired_children(o, {("eu-central-1", H100): 1}, SELECTORS)
    current = observed(before, {"chat-us-east-1": 1})
    assert writes_for(after, current, "uid-1").held
    crowded = writes_for(after, current, "uid-1", crowded={("eu-central-1", H100)})
    assert not crowded.held
    assert ("Deployment", "chat-us-east-1") in {
        (w.kind, w.name) for w in crowded.brk if isinstance(w, Delete)
    }
    # Room elsewhere does not matter: the pool the replacement goes to decides.
    assert writes_for(after, current, "uid-1", crowded={("us-east-1", H100)}).held


def test_the_world_keeps_the_gpus_each_replica_of_a_child_asks_for() -> None:
    dep = deployment_of(desired_children(owner(), {("us-east-1", H100): 2}, SELECTORS))
    view = child_view({**dep, "status": {"readyReplicas": 1}})
    assert view["spec"]["replicas"] == 2
    assert pod_gpu_request(view["spec"]["template"]) == 1


def test_children_carry_no_gitops_tracking_label() -> None:
    """An Argo CD Application named like the model must not claim (and prune) its children."""
    for child in desired_children(owner(), {("us-east-1", H100): 1}, SELECTORS):
        pod_labels = child["spec"].get("template", {}).get("metadata", {}).get("labels", {})
        for tracked in GITOPS_TRACKING_LABELS:
            assert tracked not in child["metadata"]["labels"]
            assert tracked not in pod_labels
        assert child["metadata"]["labels"]["gridplace.dev/inference-deployment"] == "chat"


def test_a_rollout_surges_only_where_the_pool_has_gpus_for_one_more_replica() -> None:
    tp2 = owner(tensorParallelSize=2)
    plan = {("us-east-1", H100): 1}

    def rolling(spare: dict[tuple[str, str], int] | None) -> dict[str, int]:
        dep = deployment_of(desired_children(tp2, plan, SELECTORS, spare))
        return dict(dep["spec"]["strategy"]["rollingUpdate"])

    assert rolling(None) == {"maxSurge": 1, "maxUnavailable": 0}
    assert rolling({("us-east-1", H100): 2}) == {"maxSurge": 1, "maxUnavailable": 0}
    # One GPU short of a replica: a surge pod would wait forever, so one pod at a time.
    assert rolling({("us-east-1", H100): 1}) == {"maxSurge": 0, "maxUnavailable": 1}
    assert rolling({}) == {"maxSurge": 0, "maxUnavailable": 1}
