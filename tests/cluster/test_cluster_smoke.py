"""Smoke tests proving each part of the test cluster is the real thing: API server, scheduler,
controller-manager, kwok's nodes, Prometheus and helm."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from cluster_kit import gpu_deployment
from kubernetes.client import VersionApi

from gridplace_e2e.cluster.build import HELM_VERSION, KUBERNETES_VERSION
from gridplace_e2e.cluster.handle import ClusterHandle
from gridplace_e2e.cluster.local import poll
from gridplace_e2e.cluster.topology import GPU_RESOURCE, PRODUCT_LABEL, REGION_LABEL

pytestmark = pytest.mark.cluster

DATA = Path(__file__).parent / "data"


def get_json(cluster: ClusterHandle, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def pods_of(cluster: ClusterHandle, namespace: str, app: str) -> list[dict[str, Any]]:
    return list(get_json(cluster, "pods", "-n", namespace, "-l", f"app={app}")["items"])


def test_api_server_reports_the_pinned_version(cluster: ClusterHandle) -> None:
    version = VersionApi(cluster.api_client()).get_code()
    assert version.git_version == KUBERNETES_VERSION
    client = json.loads(cluster.kubectl("version", "--client", "-o", "json").stdout)
    assert client["clientVersion"]["gitVersion"] == KUBERNETES_VERSION


def test_nodes_carry_the_topology(cluster: ClusterHandle) -> None:
    nodes = {n["metadata"]["name"]: n for n in get_json(cluster, "nodes")["items"]}
    for expected in cluster.topology.node_manifests():
        node = nodes[expected["metadata"]["name"]]
        labels = node["metadata"]["labels"]
        assert labels[REGION_LABEL] == expected["metadata"]["labels"][REGION_LABEL]
        assert labels[PRODUCT_LABEL] == expected["metadata"]["labels"][PRODUCT_LABEL]
        assert node["status"]["allocatable"][GPU_RESOURCE] == "8"
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", (
            f"kwok keeps {node['metadata']['name']} Ready"
        )


def test_gpu_deployment_runs_on_a_gpu_node_of_its_region(
    cluster: ClusterHandle, namespace: str
) -> None:
    deployment = gpu_deployment("placed", "eu-central-1", gpus=4, replicas=1)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(deployment))

    def running() -> bool:
        pods = pods_of(cluster, namespace, "placed")
        return len(pods) == 1 and pods[0]["status"].get("phase") == "Running"

    assert poll(running, 90), f"pod never ran: {pods_of(cluster, namespace, 'placed')}"
    (pod,) = pods_of(cluster, namespace, "placed")
    node = get_json(cluster, "node", pod["spec"]["nodeName"])
    assert node["metadata"]["labels"][REGION_LABEL] == "eu-central-1"
    assert int(node["status"]["allocatable"][GPU_RESOURCE]) >= 4
    # The controller-manager made the pod: Deployment -> ReplicaSet -> Pod.
    (owner,) = pod["metadata"]["ownerReferences"]
    assert owner["kind"] == "ReplicaSet"
    replica_set = get_json(cluster, "replicaset", owner["name"], "-n", namespace)
    assert replica_set["metadata"]["ownerReferences"][0]["name"] == "placed"


def test_more_gpus_than_the_region_has_stay_pending(cluster: ClusterHandle, namespace: str) -> None:
    region = "ap-southeast-2"
    capacity = cluster.topology.gpus(region)
    replicas = capacity // 8 + 1  # one 8-GPU replica more than the region's nodes hold
    deployment = gpu_deployment("too-big", region, gpus=8, replicas=replicas)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(deployment))

    def phases() -> list[str]:
        return sorted(p["status"].get("phase", "") for p in pods_of(cluster, namespace, "too-big"))

    def settled() -> bool:
        found = phases()
        return len(found) == replicas and found.count("Pending") >= 1 and "" not in found

    def failed_scheduling() -> list[str]:
        events = get_json(cluster, "events", "-n", namespace)["items"]
        return [e["message"] for e in events if e["reason"] == "FailedScheduling"]

    assert poll(settled, 90), phases()
    assert poll(lambda: bool(failed_scheduling()), 60)
    assert any(f"Insufficient {GPU_RESOURCE}" in message for message in failed_scheduling())
    assert phases().count("Running") <= capacity // 8


def test_crd_is_served_and_validated(cluster: ClusterHandle, namespace: str) -> None:
    crd = "widgets.smoke.gridplace.dev"
    cluster.kubectl("apply", "-f", str(DATA / "widgets-crd.yaml"))
    try:
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")

        def widget(name: str, spec: dict[str, Any]) -> str:
            return json.dumps(
                {
                    "apiVersion": "smoke.gridplace.dev/v1",
                    "kind": "Widget",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": spec,
                }
            )

        cluster.kubectl(
            "create", "-f", "-", input=widget("good", {"region": "us-east-1", "replicas": 2})
        )
        stored = get_json(cluster, "widgets.smoke.gridplace.dev", "good", "-n", namespace)
        assert stored["spec"] == {"region": "us-east-1", "replicas": 2}

        bad = cluster.kubectl(
            "create", "-f", "-", input=widget("bad", {"region": "us-east-1", "replicas": -3}),
            check=False,
        )  # fmt: skip
        assert bad.returncode != 0
        assert "spec.replicas" in bad.stderr and "greater than or equal to 0" in bad.stderr
        missing = cluster.kubectl(
            "create", "-f", "-", input=widget("missing", {"replicas": 1}), check=False
        )
        assert missing.returncode != 0 and "spec.region" in missing.stderr
    finally:
        cluster.kubectl("delete", "crd", crd, "--wait=true", "--timeout=60s")


def test_deleting_an_owner_garbage_collects_its_dependents(
    cluster: ClusterHandle, namespace: str
) -> None:
    cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    owner_uid = get_json(cluster, "configmap", "owner", "-n", namespace)["metadata"]["uid"]
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "namespace": namespace,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}
            ],
        },
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(dependent))
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace, "--cascade=background")

    def dependent_gone() -> bool:
        found = cluster.kubectl("get", "configmap", "dependent", "-n", namespace, check=False)
        return found.returncode != 0 and "NotFound" in found.stderr

    assert poll(dependent_gone, 60), "the garbage collector left the dependent behind"


def prometheus_query(cluster: ClusterHandle, query: str) -> list[dict[str, Any]]:
    response = requests.get(
        f"{cluster.prometheus_url}/api/v1/query", params={"query": query}, timeout=10
    )
    response.raise_for_status()
    return list(response.json()["data"]["result"])


def test_prometheus_answers_up(cluster: ClusterHandle) -> None:
    def scraped_itself() -> bool:
        result = prometheus_query(cluster, 'up{job="prometheus"}')
        return len(result) == 1 and result[0]["value"][1] == "1"

    assert poll(scraped_itself, 60), prometheus_query(cluster, "up")


def test_prometheus_scrapes_targets_from_the_file_sd_folder(cluster: ClusterHandle) -> None:
    # Prometheus itself is a target that answers /metrics; later, simulated vLLM pods go here.
    address = cluster.prometheus_url.removeprefix("http://")
    marker = uuid.uuid4().hex[:8]
    targets = cluster.file_sd_dir / f"smoke-{marker}.json"
    targets.write_text(json.dumps([{"targets": [address], "labels": {"smoke": marker}}]))
    try:

        def scraped() -> bool:
            result = prometheus_query(cluster, f'up{{job="file_sd",smoke="{marker}"}}')
            return len(result) == 1 and result[0]["value"][1] == "1"

        assert poll(scraped, 60), prometheus_query(cluster, "up")
    finally:
        targets.unlink()


def test_helm_runs_at_the_pinned_version(cluster: ClusterHandle, tmp_path: Path) -> None:
    helm = str(cluster.bin_dir / "helm")
    assert run(helm, "version", "--template", "{{.Version}}") == HELM_VERSION
    # Offline rendering assumes the cluster's Kubernetes minor (stamped at build time).
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "templates" / "kube.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: probe}\n"
        "data: {kube: '{{ .Capabilities.KubeVersion.Major }}."
        "{{ .Capabilities.KubeVersion.Minor }}'}\n"
    )
    assert "kube: '1.34'" in run(helm, "template", str(chart))
    # helm reaches the cluster through the same kubeconfig.
    assert run(
        helm, "list", "--all-namespaces", "--kubeconfig", str(cluster.kubeconfig)
    ).startswith("NAME")


def run(*cmd: str) -> str:
    return subprocess.run(
        cmd, capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
