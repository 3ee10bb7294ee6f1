"""gridplace placing, moving and reporting real workloads on the local control plane."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gridplace_e2e.cluster.handle import ClusterHandle
from gridplace_e2e.cluster.local import poll
from gridplace_e2e.operator_run import OperatorProcess, condition, get_json, wait_for

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
H100 = "NVIDIA-H100-80GB-HBM3"
L40S = "NVIDIA-L40S"


def idep(name: str, **spec: Any) -> str:
    body: dict[str, Any] = {
        "model": {"name": "meta-llama/Meta-Llama-3.1-8B-Instruct", "gpuTypes": [H100, L40S]},
        "slo": {"p95TimeToFirstTokenSeconds": 1.0},
        "scaling": {"minReplicas": 1, "maxReplicas": 6},
        "demand": {"static": [{"zone": "us-east", "requestsPerSecond": 4}]},
    }
    body.update(spec)
    return yaml.safe_dump(
        {
            "apiVersion": "gridplace.dev/v1alpha1",
            "kind": "InferenceDeployment",
            "metadata": {"name": name},
            "spec": body,
        }
    )


def deployments(cluster: ClusterHandle, namespace: str) -> dict[str, dict[str, Any]]:
    items = get_json(cluster, "deployments", "-n", namespace)["items"]
    return {d["metadata"]["name"]: d for d in items}


def ready(cluster: ClusterHandle, namespace: str, name: str) -> bool:
    obj = get_json(cluster, "idep", name, "-n", namespace)
    return condition(obj, "Ready").get("status") == "True"


def test_examples_are_placed_and_their_pods_run_where_planned(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess
) -> None:
    cluster.kubectl(
        "apply", "-n", namespace, "-f", str(ROOT / "examples/inferencedeployments.yaml")
    )
    wait_for(
        lambda: (
            ready(cluster, namespace, "llama-8b-chat")
            and ready(cluster, namespace, "starcoder-completion")
        ),
        180,
        "the Enforce examples to become Ready",
        operator,
    )
    nodes = {n["metadata"]["name"]: n for n in get_json(cluster, "nodes")["items"]}
    pods = get_json(cluster, "pods", "-n", namespace)["items"]
    for name in ("llama-8b-chat", "starcoder-completion"):
        obj = get_json(cluster, "idep", name, "-n", namespace)
        status = obj["status"]
        assert status["observedGeneration"] == obj["metadata"]["generation"]
        assert condition(obj, "Placed")["status"] == "True"
        planned = {(p["region"], p["gpuType"]): p["desiredReplicas"] for p in status["placement"]}
        assert sum(planned.values()) == status["replicas"] > 0
        assert status["readyReplicas"] == status["replicas"]
        assert status["predicted"]["gCO2PerHour"] > 0
        # Every planned pool has its pods Running on nodes of that region and GPU type.
        mine = [
            p
            for p in pods
            if p["metadata"]["labels"].get("gridplace.dev/inference-deployment") == name
        ]
        running: dict[tuple[str, str], int] = {}
        for pod in mine:
            assert pod["status"]["phase"] == "Running"
            node_labels = nodes[pod["spec"]["nodeName"]]["metadata"]["labels"]
            key = (
                node_labels["topology.kubernetes.io/region"],
                node_labels["nvidia.com/gpu.product"],
            )
            assert key[0] == pod["metadata"]["labels"]["gridplace.dev/region"]
            running[key] = running.get(key, 0) + 1
        assert running == planned
    # Advise mode: a plan in status, no workload.
    advice = get_json(cluster, "idep", "mixtral-batch-advice", "-n", namespace)
    wait_for(
        lambda: (
            condition(
                get_json(cluster, "idep", "mixtral-batch-advice", "-n", namespace), "Ready"
            ).get("reason")
            == "Advised"
        ),
        60,
        "the Advise example to be advised",
        operator,
    )
    advice = get_json(cluster, "idep", "mixtral-batch-advice", "-n", namespace)
    # The advice is planned on the GPUs the Enforce models leave: it reports what fits and, when
    # that is not all, the demand left unmet (Placed says why).
    status = advice["status"]
    assert status["placement"] or status["unmetRequestsPerSecond"] > 0, status
    if status["unmetRequestsPerSecond"] > 0:
        assert condition(advice, "Placed")["status"] == "False"
    assert not [d for d in deployments(cluster, namespace) if d.startswith("mixtral-batch-advice")]
    # The model-wide and per-region Services exist and select the model's pods.
    services = {
        s["metadata"]["name"] for s in get_json(cluster, "services", "-n", namespace)["items"]
    }
    assert "llama-8b-chat" in services


WRITE_VERBS = {"APPLY", "PATCH", "POST", "PUT", "CREATE", "UPDATE", "DELETE"}


def apiserver_writes(cluster: ClusterHandle) -> float:
    """Writes the API server counted on what only gridplace writes in these tests: the two
    custom resources (any verb, any subresource) and Deployments/Services by apply or patch
    (the controller-manager writes Deployment status with PUT)."""
    total = 0.0
    for line in cluster.kubectl("get", "--raw", "/metrics").stdout.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        verb, resource = labels.get("verb"), labels.get("resource")
        ours = resource in {"inferencedeployments", "regions"} and verb in WRITE_VERBS
        children = resource in {"deployments", "services"} and verb in {"APPLY", "PATCH"}
        if ours or children:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_steady_state_writes_nothing_and_a_restart_converges_without_writes(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=idep("steady"))
    wait_for(lambda: ready(cluster, namespace, "steady"), 120, "Ready", operator)
    operator.wait_cycles(2)
    before, seen_by_server = operator.writes(), apiserver_writes(cluster)
    assert seen_by_server >= before > 0  # the server did see gridplace's writes so far
    solves = operator.counter("gridplace_plan_duration_seconds_count")
    operator.wait_cycles(4)  # periodic re-plans with nothing changed
    assert operator.writes() == before
    # Unchanged inputs reuse the certified plan: the solver does not run again.
    assert operator.counter("gridplace_plan_duration_seconds_count") == solves
    assert apiserver_writes(cluster) == seen_by_server
    names_before = sorted(deployments(cluster, namespace))
    operator.stop()
    operator.start()
    seen_by_server = apiserver_writes(cluster)
    operator.wait_cycles(3)
    assert operator.writes() == 0, operator.metrics()
    assert apiserver_writes(cluster) == seen_by_server
    assert sorted(deployments(cluster, namespace)) == names_before


def test_a_carbon_spike_moves_replicas_make_before_break_and_back(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess
) -> None:
    spec = idep(
        "green",
        placement={
            "allowedRegions": ["us-east-1", "us-west-1"],
            "weights": {"latency": 0.1, "carbon": 5, "cost": 0.1},
            "churn": {"maxMovesPerHour": 20},
        },
    )
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=spec)
    wait_for(lambda: ready(cluster, namespace, "green"), 120, "Ready", operator)
    first = get_json(cluster, "idep", "green", "-n", namespace)["status"]
    home = {p["region"] for p in first["placement"]}
    assert len(home) == 1
    (home_region,) = home
    other = "us-west-1" if home_region == "us-east-1" else "us-east-1"
    original = get_json(cluster, "region", home_region)["spec"]["carbonIntensity"]
    lowest_ready: list[int] = []

    def moved() -> bool:
        deps = deployments(cluster, namespace)
        lowest_ready.append(sum(d.get("status", {}).get("readyReplicas", 0) for d in deps.values()))
        regions = {d["metadata"]["labels"]["gridplace.dev/region"] for d in deps.values()}
        return regions == {other} and ready(cluster, namespace, "green")

    patch = '{"spec":{"carbonIntensity":{"static":{"gCO2PerKWh":3000}}}}'
    cluster.kubectl("patch", "region", home_region, "--type=merge", "-p", patch)
    try:
        wait_for(moved, 120, f"replicas to leave {home_region} for {other}", operator)
        assert min(lowest_ready) > 0, "capacity dropped to zero during the move"
        events = get_json(cluster, "events", "-n", namespace)["items"]
        reasons = {e["reason"] for e in events if e["involvedObject"]["name"] == "green"}
        assert "Replaced" in reasons
    finally:
        restore = {"spec": {"carbonIntensity": original}}
        cluster.kubectl(
            "patch", "region", home_region, "--type=merge", "-p", yaml.safe_dump(restore)
        )
    wait_for(
        lambda: (
            {
                d["metadata"]["labels"]["gridplace.dev/region"]
                for d in deployments(cluster, namespace).values()
            }
            == {home_region}
        ),
        120,
        "replicas to return once the saving beats the churn cost",
        operator,
    )


def test_a_spec_the_schema_cannot_judge_gets_ready_false_once(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess
) -> None:
    body = idep("unknown-model", model={"name": "acme/not-a-known-model", "gpuTypes": [H100]})
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=body)

    def rejected() -> bool:
        obj = get_json(cluster, "idep", "unknown-model", "-n", namespace)
        return condition(obj, "Ready").get("reason") == "InvalidSpec"

    wait_for(rejected, 60, "Ready=False InvalidSpec", operator)
    obj = get_json(cluster, "idep", "unknown-model", "-n", namespace)
    assert "acme/not-a-known-model" in condition(obj, "Ready")["message"]
    assert condition(obj, "Ready")["status"] == "False"
    before = operator.counter("gridplace_api_writes_total", kind="InferenceDeployment")
    operator.wait_cycles(3)
    assert operator.counter("gridplace_api_writes_total", kind="InferenceDeployment") == before
    assert not deployments(cluster, namespace)


def test_deleting_needs_no_operator_and_removes_every_child(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=idep("short-lived"))
    wait_for(lambda: ready(cluster, namespace, "short-lived"), 120, "Ready", operator)
    obj = get_json(cluster, "idep", "short-lived", "-n", namespace)
    assert not obj["metadata"].get("finalizers")
    operator.stop()
    try:
        cluster.kubectl("delete", "idep", "short-lived", "-n", namespace, "--timeout=30s")
        assert poll(lambda: not deployments(cluster, namespace), 60), "children left behind"
        services = get_json(cluster, "services", "-n", namespace)["items"]
        assert not [s for s in services if s["metadata"]["name"].startswith("short-lived")]
    finally:
        operator.start()


def test_removing_a_regions_gpus_moves_the_replicas_elsewhere(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    spec = idep(
        "mover",
        placement={"allowedRegions": ["eu-central-1", "us-east-1"]},
        demand={"static": [{"zone": "eu-central", "requestsPerSecond": 3}]},
    )
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=spec)
    wait_for(lambda: ready(cluster, namespace, "mover"), 120, "Ready", operator)
    status = get_json(cluster, "idep", "mover", "-n", namespace)["status"]
    region = status["placement"][0]["region"]
    nodes = get_json(cluster, "nodes", "-l", f"topology.kubernetes.io/region={region}")["items"]
    for node in nodes:
        cluster.kubectl("cordon", node["metadata"]["name"])
    try:

        def elsewhere() -> bool:
            deps = deployments(cluster, namespace)
            regions = {d["metadata"]["labels"]["gridplace.dev/region"] for d in deps.values()}
            return bool(regions) and region not in regions and ready(cluster, namespace, "mover")

        wait_for(elsewhere, 180, f"replicas to leave cordoned {region}", operator)
        pending = [
            p
            for p in get_json(cluster, "pods", "-n", namespace)["items"]
            if p["status"]["phase"] == "Pending"
        ]
        assert not pending
    finally:
        for node in nodes:
            cluster.kubectl("uncordon", node["metadata"]["name"])


def test_a_child_name_taken_by_someone_else_is_left_alone_and_reported(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess
) -> None:
    cluster.kubectl(
        "create", "deployment", "taken-us-east-1", "-n", namespace, "--image=nginx", "--replicas=0"
    )
    spec = idep(
        "taken",
        model={"name": "meta-llama/Meta-Llama-3.1-8B-Instruct", "gpuTypes": [H100]},
        placement={"allowedRegions": ["us-east-1"]},
    )
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=spec)

    def conflict() -> bool:
        obj = get_json(cluster, "idep", "taken", "-n", namespace)
        return condition(obj, "Ready").get("reason") == "ChildConflict"

    wait_for(conflict, 60, "Ready=False ChildConflict", operator)
    foreign = get_json(cluster, "deployment", "taken-us-east-1", "-n", namespace)
    assert foreign["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx"
    assert not foreign["metadata"].get("ownerReferences")


def test_hand_edits_to_a_child_are_restored_and_reported(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess
) -> None:
    spec = idep(
        "drifted",
        model={"name": "meta-llama/Meta-Llama-3.1-8B-Instruct", "gpuTypes": [H100]},
        placement={"allowedRegions": ["us-east-1"]},
    )
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=spec)
    wait_for(lambda: ready(cluster, namespace, "drifted"), 120, "Ready", operator)
    planned = deployments(cluster, namespace)["drifted-us-east-1"]
    replicas = planned["spec"]["replicas"]
    image = planned["spec"]["template"]["spec"]["containers"][0]["image"]
    cluster.kubectl("scale", "deployment", "drifted-us-east-1", "-n", namespace, "--replicas=5")
    # Another field manager takes the image over by force.
    patch = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "drifted-us-east-1", "namespace": namespace},
        "spec": {"template": {"spec": {"containers": [{"name": "vllm", "image": "nginx"}]}}},
    }
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=someone-else",
        "-f",
        "-",
        input=yaml.safe_dump(patch),
    )

    def restored() -> bool:
        dep = deployments(cluster, namespace)["drifted-us-east-1"]
        container = dep["spec"]["template"]["spec"]["containers"][0]
        return bool(dep["spec"]["replicas"] == replicas and container["image"] == image)

    wait_for(restored, 60, "the planned replicas and image back", operator)
    events = get_json(cluster, "events", "-n", namespace)["items"]
    reported = [e for e in events if e["reason"] == "DriftRepaired"]
    assert reported and "drifted-us-east-1" in reported[0]["message"]
    assert reported[0]["involvedObject"]["name"] == "drifted"


def test_a_spec_with_characters_outside_the_basic_plane_is_placed(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess
) -> None:
    spec = idep(
        "emoji",
        model={
            "name": "meta-llama/Meta-Llama-3.1-8B-Instruct",
            "gpuTypes": [H100],
            "env": [{"name": "GREETING", "value": "hello 😀"}],
        },
        placement={"allowedRegions": ["us-east-1"]},
    )
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=spec)
    wait_for(lambda: ready(cluster, namespace, "emoji"), 120, "Ready", operator)
    container = deployments(cluster, namespace)["emoji-us-east-1"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert {"name": "GREETING", "value": "hello 😀"} in container["env"]


def test_an_availability_floor_beyond_the_regions_is_reported(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess
) -> None:
    spec = idep(
        "everywhere",
        placement={"availability": {"minRegions": 64}},
        scaling={"minReplicas": 1, "maxReplicas": 64},
    )
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=spec)

    def reported() -> bool:
        obj = get_json(cluster, "idep", "everywhere", "-n", namespace)
        return condition(obj, "Placed").get("reason") == "AvailabilityUnmet"

    wait_for(reported, 120, "Placed=False AvailabilityUnmet", operator)
    obj = get_json(cluster, "idep", "everywhere", "-n", namespace)
    assert condition(obj, "Ready")["status"] == "False"
    assert "minRegions" in condition(obj, "Placed")["message"]
    assert obj["status"]["placement"]  # what fits is still placed


def test_a_template_change_in_a_full_pool_completes_its_rollout(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess
) -> None:
    """eu-central-1 has one H100 node: a replica that takes all eight GPUs leaves no room for a
    rollout's surge pod, so the rollout replaces the pod instead of waiting for GPUs forever."""
    whole_node = {
        "name": "meta-llama/Meta-Llama-3.1-405B-Instruct",
        "gpuTypes": [H100],
        "tensorParallelSize": 8,
    }
    body = yaml.safe_load(
        idep(
            "whole-node",
            model=whole_node,
            slo={"p95TimeToFirstTokenSeconds": 5.0, "p95TimePerOutputTokenSeconds": 0.5},
            scaling={"minReplicas": 1, "maxReplicas": 1},
            demand={"static": [{"zone": "us-east", "requestsPerSecond": 0.2}]},
            placement={"allowedRegions": ["eu-central-1"]},
        )
    )
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))
    wait_for(lambda: ready(cluster, namespace, "whole-node"), 120, "Ready", operator)
    strategy = deployments(cluster, namespace)["whole-node-eu-central-1"]["spec"]["strategy"]
    assert strategy["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}

    body["spec"]["pod"] = {"annotations": {"example.com/revision": "2"}}  # a new pod template
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))

    def rolled_out() -> bool:
        pods = get_json(cluster, "pods", "-n", namespace)["items"]
        return bool(pods) and all(
            p["metadata"].get("annotations", {}).get("example.com/revision") == "2"
            and p["status"].get("phase") == "Running"
            for p in pods
        )

    wait_for(rolled_out, 120, "the one pod replaced by one of the new template", operator)
    wait_for(lambda: ready(cluster, namespace, "whole-node"), 60, "Ready again", operator)
