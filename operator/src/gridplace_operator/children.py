"""What gridplace wants to exist for an InferenceDeployment: per-region vLLM Deployments and
Services, as plain manifests. Pure functions; `kube.py` applies them."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gridplace_operator import labels
from gridplace_operator.api.common import API_VERSION
from gridplace_operator.api.inference_deployment import InferenceDeploymentSpec

VLLM_PORT = 8000
MAX_NAME = 63  # Service names are DNS-1035 labels
# Model loading can take many minutes; the startup probe allows 30 of them before liveness starts.
STARTUP_PROBE_FAILURES = 180
DRAIN_SECONDS = 15

# vLLM's official image (vllm/vllm-openai) has no USER and runs as root, and torch fails under a
# UID without a passwd entry, so `runAsNonRoot` would refuse or break its pods (an image with a
# non-root USER still runs as that user). What root there can still be denied: every capability
# (vLLM, CUDA and NCCL on one node need none; the NVIDIA runtime adds the GPU devices), any gain
# of privilege (setuid, file capabilities) and the syscalls outside the runtime's default seccomp
# filter. The root filesystem stays writable: vLLM, torch and Triton cache under $HOME and /tmp.
POD_SECURITY_CONTEXT: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


@dataclass(frozen=True)
class Owner:
    """The InferenceDeployment the children belong to."""

    namespace: str
    name: str
    uid: str
    spec: InferenceDeploymentSpec


def child_name(*parts: str) -> str:
    """`a-b-c`, shortened with a stable hash suffix when longer than a DNS label allows."""
    name = "-".join(parts)
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9].rstrip('-')}-{digest}"


def gpu_slug(gpu_type: str) -> str:
    """NVIDIA-H100-80GB-HBM3 -> h100-80gb-hbm3 (for names)."""
    slug = re.sub(r"[^a-z0-9]+", "-", gpu_type.lower().removeprefix("nvidia-")).strip("-")
    return slug or "gpu"


def deployment_name(owner: Owner, region: str, gpu_type: str) -> str:
    # The GPU type is part of the name only when the spec allows several, so names stay stable.
    if len(owner.spec.model.gpu_types) > 1:
        return child_name(owner.name, region, gpu_slug(gpu_type))
    return child_name(owner.name, region)


def _owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceDeployment",
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


# Labels GitOps tools track their own objects by: a child carrying one with a value that names an
# Application (one Application per model, named like it, is common) would be claimed, reported
# out of sync and pruned by it. Children are gridplace's, found through their owner reference.
GITOPS_TRACKING_LABELS = ("app.kubernetes.io/instance",)


def _common_labels(owner: Owner) -> dict[str, str]:
    """Labels of every child: none of GITOPS_TRACKING_LABELS; the model is INFERENCE_DEPLOYMENT."""
    return {
        labels.MANAGED_BY: labels.MANAGED_BY_VALUE,
        labels.PART_OF: "gridplace",
        "app.kubernetes.io/name": "vllm",
        labels.INFERENCE_DEPLOYMENT: owner.name,
    }


def spec_hash(obj: Mapping[str, Any]) -> str:
    """Hash of a manifest as gridplace renders it (before the hash annotation is added)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _with_hash(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"].setdefault("annotations", {})[labels.SPEC_HASH] = spec_hash(obj)
    return obj


def vllm_args(owner: Owner) -> list[str]:
    model = owner.spec.model
    args = [
        f"--model={model.name}",
        "--host=0.0.0.0",
        f"--port={VLLM_PORT}",
        f"--tensor-parallel-size={model.tensor_parallel_size}",
    ]
    if model.quantization:
        args.append(f"--quantization={model.quantization}")
    return [*args, *model.args]


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 5,
    }


def desired_deployment(
    owner: Owner,
    *,
    region: str,
    gpu_type: str,
    replicas: int,
    node_selector: Mapping[str, str],
) -> dict[str, Any]:
    """The vLLM Deployment of `owner` in one region on one GPU type."""
    model = owner.spec.model
    selector = {
        labels.INFERENCE_DEPLOYMENT: owner.name,
        labels.REGION: region,
        labels.GPU_TYPE: gpu_type,
    }
    pod_labels = {**_common_labels(owner), **selector}
    gpus = model.effective_gpus_per_replica()
    container: dict[str, Any] = {
        "name": "vllm",
        "image": model.image,
        "args": vllm_args(owner),
        "ports": [{"name": "http", "containerPort": VLLM_PORT, "protocol": "TCP"}],
        "resources": {"limits": {labels.GPU_RESOURCE: str(gpus)}},
        "startupProbe": _probe("/health", 10, STARTUP_PROBE_FAILURES),
        "readinessProbe": _probe("/health", 5, 3),
        "livenessProbe": _probe("/health", 10, 6),
        # Keep serving while endpoints stop routing to this pod, then let vLLM finish requests.
        "lifecycle": {"preStop": {"sleep": {"seconds": DRAIN_SECONDS}}},
        "securityContext": copy.deepcopy(CONTAINER_SECURITY_CONTEXT),
    }
    if model.env:
        container["env"] = [e.to_api() for e in model.env]
    manifest: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(owner, region, gpu_type),
            "namespace": owner.namespace,
            "labels": pod_labels,
            "ownerReferences": [_owner_reference(owner)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            # A new pod is ready before an old one stops (GPUs are planned with one spare).
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(VLLM_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    # vLLM never calls the Kubernetes API: no token of the namespace's default
                    # ServiceAccount for code the tenant chose to read.
                    "automountServiceAccountToken": False,
                    # No {SERVICE}_PORT variables: a Service named `vllm` in the namespace would
                    # set VLLM_PORT, which vLLM reads as its own internal port and refuses.
                    "enableServiceLinks": False,
                    "securityContext": copy.deepcopy(POD_SECURITY_CONTEXT),
                    "nodeSelector": {**node_selector, labels.NODE_GPU_PRODUCT: gpu_type},
                    "tolerations": [
                        {"key": labels.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
                    ],
                    "terminationGracePeriodSeconds": DRAIN_SECONDS + 60,
                    "containers": [container],
                },
            },
        },
    }
    return _with_hash(manifest)


def desired_service(owner: Owner, region: str | None) -> dict[str, Any]:
    """A Service over the model's pods in one region, or over all of them (`region=None`)."""
    selector = {labels.INFERENCE_DEPLOYMENT: owner.name}
    name = owner.name
    if region is not None:
        selector[labels.REGION] = region
        name = child_name(owner.name, region)
    svc_labels = {**_common_labels(owner), **selector}
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": svc_labels,
            "ownerReferences": [_owner_reference(owner)],
        },
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": VLLM_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    return _with_hash(manifest)


def desired_children(
    owner: Owner,
    replicas: Mapping[tuple[str, str], int],
    node_selectors: Mapping[str, Mapping[str, str]],
) -> list[dict[str, Any]]:
    """Every child of `owner` for a plan of replicas per (region, GPU type).

    A (region, GPU type) with zero replicas has no Deployment; a region keeps its Service while
    any of its Deployments exists, and the model-wide Service always exists.
    """
    children = [desired_service(owner, None)]
    regions = sorted({region for (region, _), n in replicas.items() if n > 0})
    for region in regions:
        children.append(desired_service(owner, region))
        for (r, gpu_type), n in sorted(replicas.items()):
            if r == region and n > 0:
                children.append(
                    desired_deployment(
                        owner,
                        region=region,
                        gpu_type=gpu_type,
                        replicas=n,
                        node_selector=node_selectors[region],
                    )
                )
    return children
