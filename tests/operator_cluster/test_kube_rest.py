"""gridplace's plain-JSON requests against the real API server: paths, paging, errors."""

from __future__ import annotations

import asyncio
import json

import pytest
from kubernetes.client.exceptions import ApiException

from gridplace_e2e.cluster.handle import ClusterHandle
from gridplace_operator.kube import client as kube_module
from gridplace_operator.kube.client import Kube, load_client_config, path_of
from gridplace_operator.report.metrics import OperatorMetrics

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "placeholder"},
    "spec": {"containers": [{"name": "c", "image": "example.invalid/none"}]},
}


def test_paths_of_core_group_and_cluster_scoped_kinds() -> None:
    assert path_of("Pod") == "/api/v1/pods"
    assert path_of("Service", "team-a", "chat") == "/api/v1/namespaces/team-a/services/chat"
    assert path_of("Deployment", "ns") == "/apis/apps/v1/namespaces/ns/deployments"
    assert path_of("Region", None, "us-east-1") == "/apis/gridplace.dev/v1alpha1/regions/us-east-1"
    assert path_of("Node", None, "a/b") == "/api/v1/nodes/a%2Fb"  # never a path traversal


@pytest.mark.cluster
def test_pods_are_listed_across_pages_and_writes_raise_api_errors(
    cluster: ClusterHandle, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        meta = {"name": f"placeholder-{i}", "namespace": namespace, "labels": {"probe": namespace}}
        pod = {**POD, "metadata": meta}
        cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
    monkeypatch.setattr(kube_module, "POD_PAGE", 2)  # three pages for five pods
    kube = Kube(load_client_config(str(cluster.kubeconfig)), OperatorMetrics())
    pods = asyncio.run(asyncio.wait_for(kube.list_gpu_pods(), 60))  # a lost page token loops
    assert sum(pod["metadata"]["labels"].get("probe") == namespace for pod in pods) == 5

    asyncio.run(
        kube.delete("Service", namespace, "absent")
    )  # a 404 on delete is done, not an error
    with pytest.raises(ApiException) as raised:
        asyncio.run(
            kube.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": "invalid", "namespace": namespace},
                    "spec": {"ports": [{"port": -1}]},
                }
            )
        )
    assert raised.value.status == 422


@pytest.mark.cluster
def test_an_apply_with_characters_outside_the_basic_plane_round_trips(
    cluster: ClusterHandle, namespace: str
) -> None:
    text = "chat 😀 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 – café"
    kube = Kube(load_client_config(str(cluster.kubeconfig)), OperatorMetrics())
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "unicode", "namespace": namespace, "annotations": {"note": text}},
        "spec": {"ports": [{"port": 80}]},
    }
    asyncio.run(kube.apply(service))  # the API server answered 400 to the escaped surrogates
    got = json.loads(
        cluster.kubectl("get", "service", "unicode", "-n", namespace, "-o", "json").stdout
    )
    assert got["metadata"]["annotations"]["note"] == text


@pytest.mark.cluster
def test_a_deleted_object_reads_as_gone_to_a_status_write_and_a_lookup(
    cluster: ClusterHandle, namespace: str, crds: None
) -> None:
    kube = Kube(load_client_config(str(cluster.kubeconfig)), OperatorMetrics())
    idep = {
        "apiVersion": "gridplace.dev/v1alpha1",
        "kind": "InferenceDeployment",
        "metadata": {"name": "short-lived", "namespace": namespace},
        "spec": {
            "model": {"name": "meta-llama/Meta-Llama-3.1-8B-Instruct", "gpuTypes": ["NVIDIA-L40S"]},
            "slo": {"p95TimeToFirstTokenSeconds": 1.0},
            "scaling": {"minReplicas": 1, "maxReplicas": 2},
            "demand": {"static": [{"zone": "us-east", "requestsPerSecond": 1}]},
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(idep))
    status = {"replicas": 0}
    assert asyncio.run(kube.exists("InferenceDeployment", namespace, "short-lived"))
    assert asyncio.run(kube.apply_status("InferenceDeployment", namespace, "short-lived", status))
    cluster.kubectl("delete", "idep", "short-lived", "-n", namespace)
    assert not asyncio.run(kube.exists("InferenceDeployment", namespace, "short-lived"))
    assert not asyncio.run(
        kube.apply_status("InferenceDeployment", namespace, "short-lived", status)
    )
    # A namespace that does not exist is the same answer, not an error.
    assert not asyncio.run(kube.exists("InferenceDeployment", f"{namespace}-none", "short-lived"))
