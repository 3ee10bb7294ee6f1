"""The vLLM pods gridplace renders, judged by the API server's Pod Security admission: they meet
the `baseline` level, and `restricted` refuses them for the root user of the official vLLM image
and for nothing else."""

from __future__ import annotations

import copy
import json
import subprocess
from typing import Any

import pytest

from gridplace_e2e.cluster.handle import ClusterHandle
from gridplace_operator.api.inference_deployment import InferenceDeploymentSpec
from gridplace_operator.reconcile.children import Owner, desired_deployment

pytestmark = pytest.mark.cluster

H100 = "NVIDIA-H100-80GB-HBM3"
# Words of the API server's message for each restricted-level check but runAsNonRoot.
OTHER_VIOLATIONS = (
    "privileged",
    "allowPrivilegeEscalation",
    "unrestricted capabilities",
    "seccompProfile",
    "host namespaces",
    "hostPath",
    "restricted volume types",
)


def _vllm_pod(namespace: str) -> dict[str, Any]:
    spec = InferenceDeploymentSpec.model_validate(
        {
            "model": {"name": "meta-llama/Llama-3.1-8B-Instruct", "gpuTypes": [H100]},
            "slo": {"p95TimeToFirstTokenSeconds": 0.5},
            "demand": {"static": [{"zone": "us-east", "requestsPerSecond": 10}]},
        }
    )
    owner = Owner(namespace=namespace, name="chat", uid="uid-1", spec=spec)
    deployment = desired_deployment(
        owner,
        region="us-east-1",
        gpu_type=H100,
        replicas=1,
        node_selector={"topology.kubernetes.io/region": "us-east-1"},
    )
    template = deployment["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "vllm",
            "namespace": namespace,
            "labels": template["metadata"]["labels"],
        },
        "spec": template["spec"],
    }


def _admit(cluster: ClusterHandle, pod: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Create the pod as a server-side dry run: admission judges it, nothing is stored."""
    return cluster.kubectl(
        "create", "--dry-run=server", "-o", "name", "-f", "-", input=json.dumps(pod), check=False
    )


def _enforce(cluster: ClusterHandle, namespace: str, level: str) -> None:
    cluster.kubectl(
        "label",
        "namespace",
        namespace,
        f"pod-security.kubernetes.io/enforce={level}",
        "--overwrite",
    )


def test_vllm_pods_pass_baseline_and_fail_restricted_only_on_the_root_user(
    cluster: ClusterHandle, namespace: str
) -> None:
    pod = _vllm_pod(namespace)

    _enforce(cluster, namespace, "baseline")
    admitted = _admit(cluster, pod)
    assert admitted.returncode == 0, admitted.stderr
    on_host = copy.deepcopy(pod)  # proves admission is judging at all
    on_host["spec"]["hostNetwork"] = True
    refused = _admit(cluster, on_host)
    assert refused.returncode != 0
    assert (
        'violates PodSecurity "baseline' in refused.stderr and "host namespaces" in refused.stderr
    )

    _enforce(cluster, namespace, "restricted")
    refused = _admit(cluster, pod)
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted' in refused.stderr
    assert "runAsNonRoot != true" in refused.stderr
    assert not [v for v in OTHER_VIOLATIONS if v in refused.stderr], refused.stderr
    # An image with a non-root USER could go further; only that one setting is missing.
    non_root = copy.deepcopy(pod)
    non_root["spec"]["securityContext"]["runAsNonRoot"] = True
    admitted = _admit(cluster, non_root)
    assert admitted.returncode == 0, admitted.stderr
