"""What gridplace wants to exist for an InferenceDeployment: per-region vLLM Deployments, their
PodDisruptionBudgets and Services, as plain manifests. Pure functions; `kube.py` applies them.

The pod is rendered for one vLLM release (`api.inference_deployment.VLLM_VERSION`), from the
spec and from the performance profile the plan sized the replicas with; docs/operator.md
describes it field by field."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gridplace_operator import labels
from gridplace_operator.api.common import API_VERSION
from gridplace_operator.api.inference_deployment import (
    SHM_PATH,
    SHM_VOLUME,
    InferenceDeploymentSpec,
    ModelSpec,
)
from gridplace_placement.profiles import catalogue

VLLM_PORT = 8000
MAX_NAME = 63  # Service names are DNS-1035 labels
# `vllm serve <model>`: the CLI's documented form; the positional model replaces `--model`.
VLLM_COMMAND = ("vllm", "serve")

# Stopping a replica: the preStop pause lets endpoints stop routing to the pod, then vLLM, on
# SIGTERM, stops taking requests and finishes those it has for up to SHUTDOWN_SECONDS
# (`--shutdown-timeout`; vLLM's default, 0, aborts them). The grace period covers both.
DRAIN_SECONDS = 15
SHUTDOWN_SECONDS = 60
GRACE_SECONDS = DRAIN_SECONDS + SHUTDOWN_SECONDS + 15
STARTUP_PROBE_PERIOD = 10

GIB = 1024**3
# Weights per parameter: BF16/FP16 unless the quantization method stores fewer bits.
_BYTES_PER_PARAMETER = {"fp8": 1.0, "int8": 1.0, "fbgemm_fp8": 1.0, "experts_int8": 1.0}
_FOUR_BIT = ("awq", "gptq", "bitsandbytes", "gguf", "marlin", "mxfp4", "nvfp4")
# A model whose name gives no parameter count: the weights fill this much of each GPU (an 8B
# model in BF16 is 15 GiB).
FALLBACK_WEIGHTS_GIB_PER_GPU = 16.0

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


def owned_child(owner: Owner, manifest: dict[str, Any]) -> dict[str, Any]:
    """`manifest` made a child of `owner`: the common labels, the owner reference, the hash."""
    meta = manifest["metadata"]
    meta["labels"] = {**_common_labels(owner), **(meta.get("labels") or {})}
    meta["ownerReferences"] = [_owner_reference(owner)]
    return _with_hash(manifest)


@dataclass(frozen=True)
class BatchLimits:
    """The scheduler limits the plan sized a replica with (the profile's maxBatch and
    maxBatchedTokens): passed to vLLM so the server batches as the plan and the autoscaler
    predict."""

    max_num_seqs: int
    max_num_batched_tokens: int


def batch_limits(model: ModelSpec, gpu_type: str) -> BatchLimits | None:
    """The profile of `model` on `gpu_type` as the placement engine resolves it: the measured
    entry of performance.gpus, else the shipped catalogue's entry for the profile's (or the
    model's) name at this many GPUs per replica (the smallest such, as
    gridplace_placement.problem.Model does). None when neither has one (the plan rejects such a
    model, so no Deployment is rendered for it)."""
    performance = model.performance
    if performance is not None and performance.gpus is not None:
        for entry in performance.gpus:
            if entry.gpu_type == gpu_type:
                return BatchLimits(entry.max_batch, entry.max_batched_tokens)
        return None
    name = performance.profile if performance is not None and performance.profile else model.name
    gpus = model.effective_gpus_per_replica()
    fits = sorted(
        (
            p
            for p in catalogue().get(name, ())
            if p["gpuType"] == gpu_type and int(p["gpusPerReplica"]) == gpus
        ),
        key=lambda p: int(p["gpusPerReplica"]),
    )
    if not fits:
        return None
    return BatchLimits(int(fits[0]["maxBatch"]), int(fits[0].get("maxBatchedTokens", 8192)))


def parameter_billions(model_name: str) -> float | None:
    """Parameters, in billions, as model names state them: `Llama-3.1-8B` 8, `Mixtral-8x7B` 56,
    `Qwen3-30B-A3B` 30 (the largest count: a mixture of experts loads every expert)."""
    found = re.findall(
        r"(?:(?<=[-_/.])|^)(?:(\d+)x)?(\d+(?:\.\d+)?)[bB](?![a-zA-Z0-9])",
        model_name.rsplit("/", 1)[-1],
    )
    sizes = [float(n) * (int(experts) if experts else 1) for experts, n in found]
    return max(sizes) if sizes else None


def bytes_per_parameter(quantization: str | None) -> float:
    """Bytes one weight takes on disk and in memory: 2 (BF16) unless a quantization stores 8 or
    4 bits."""
    if quantization is None:
        return 2.0
    if quantization in _BYTES_PER_PARAMETER:
        return _BYTES_PER_PARAMETER[quantization]
    if any(quantization.startswith(q) or quantization.endswith(q) for q in _FOUR_BIT):
        return 0.5
    return 2.0


def weights_gib(model: ModelSpec) -> float:
    """Size of the weights: spec.model.weightsGib, else parameters x bytes per parameter, else
    FALLBACK_WEIGHTS_GIB_PER_GPU per GPU. Sizes the pod's memory and its startup allowance."""
    if model.weights_gib is not None:
        return model.weights_gib
    billions = parameter_billions(model.name)
    if billions is None:
        return FALLBACK_WEIGHTS_GIB_PER_GPU * model.effective_gpus_per_replica()
    return billions * 1e9 * bytes_per_parameter(model.quantization) / GIB


def shm_gib(tensor_parallel_size: int) -> int:
    """/dev/shm for one replica: 2 GiB per tensor-parallel rank. NCCL's shared-memory transport
    and vLLM's inter-process queues live there, and a container runtime's default (64 MiB) makes
    tensor parallelism fail; tmpfs pages count against the pod's memory, so the request holds
    them."""
    return 2 * tensor_parallel_size


def cpu_request(gpus: int) -> str:
    """2 cores for the API server and the engine core, 2 per GPU for its worker process (CUDA
    launches, tokenization and sampling run on CPU; starved, they stall the GPU)."""
    return str(2 + 2 * gpus)


def memory_request_gib(model: ModelSpec) -> int:
    """4 GiB for the API server and engine core, 4 GiB per GPU worker (CUDA context, torch,
    compile caches), the weights (loading reads every shard through host memory) and /dev/shm.
    Also the limit: the pod is never killed for using what it asked for, nor grows past it."""
    gpus = model.effective_gpus_per_replica()
    total = 4 + 4 * gpus + weights_gib(model) + shm_gib(model.tensor_parallel_size)
    return math.ceil(total)


def startup_seconds(model: ModelSpec) -> int:
    """How long a replica may take to become healthy: 10 minutes for the engine (CUDA graphs,
    torch.compile, the KV cache), and 10 s per GiB of weights (a download at about 100 MiB/s;
    a cached copy loads faster)."""
    return 600 + math.ceil(10 * weights_gib(model))


def vllm_args(owner: Owner, limits: BatchLimits | None) -> list[str]:
    """`vllm serve` arguments: the positional model, then the flags gridplace derives (the list
    of MANAGED_VLLM_FLAGS), then the user's. Every flag is in the targeted release's reference
    (tested against data/vllm_flags.json)."""
    model = owner.spec.model
    args = [
        model.name,
        f"--served-model-name={model.effective_served_model_name()}",
        "--host=0.0.0.0",
        f"--port={VLLM_PORT}",
        f"--tensor-parallel-size={model.tensor_parallel_size}",
    ]
    if limits is not None:
        args.append(f"--max-num-seqs={limits.max_num_seqs}")
        args.append(f"--max-num-batched-tokens={limits.max_num_batched_tokens}")
    if model.max_model_len is not None:
        args.append(f"--max-model-len={model.max_model_len}")
    if model.quantization:
        args.append(f"--quantization={model.quantization}")
    args.append(f"--shutdown-timeout={SHUTDOWN_SECONDS}")
    return [*args, *model.args]


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 5,
    }


def _resources(spec: InferenceDeploymentSpec) -> dict[str, Any]:
    """GPUs as the plan counts them; CPU and memory derived from the model unless spec.pod
    overrides them. Memory's limit equals its request; CPU has no limit (a throttled engine loop
    stalls every sequence in the batch)."""
    model = spec.model
    gpus = str(model.effective_gpus_per_replica())
    overrides = spec.pod.resources
    memory = overrides.memory or f"{memory_request_gib(model)}Gi"
    return {
        "requests": {
            "cpu": overrides.cpu or cpu_request(model.effective_gpus_per_replica()),
            "memory": memory,
            labels.GPU_RESOURCE: gpus,
        },
        "limits": {"memory": memory, labels.GPU_RESOURCE: gpus},
    }


def _container(owner: Owner, limits: BatchLimits | None) -> dict[str, Any]:
    spec = owner.spec
    model = spec.model
    startup = spec.pod.startup_timeout_seconds or startup_seconds(model)
    container: dict[str, Any] = {
        "name": "vllm",
        "image": model.image,
        "command": list(VLLM_COMMAND),
        "args": vllm_args(owner, limits),
        "ports": [{"name": "http", "containerPort": VLLM_PORT, "protocol": "TCP"}],
        "resources": _resources(spec),
        "startupProbe": _probe(
            "/health", STARTUP_PROBE_PERIOD, math.ceil(startup / STARTUP_PROBE_PERIOD)
        ),
        "readinessProbe": _probe("/health", 5, 3),
        "livenessProbe": _probe("/health", 10, 6),
        # Keep serving while endpoints stop routing to this pod; vLLM then drains on SIGTERM.
        "lifecycle": {"preStop": {"sleep": {"seconds": DRAIN_SECONDS}}},
        "securityContext": copy.deepcopy(CONTAINER_SECURITY_CONTEXT),
        "volumeMounts": [
            {"name": SHM_VOLUME, "mountPath": SHM_PATH},
            *(m.to_api() for m in spec.pod.volume_mounts),
        ],
    }
    if model.env:
        container["env"] = [e.to_api() for e in model.env]
    return container


def _pod_spec(
    owner: Owner, container: dict[str, Any], node_selector: Mapping[str, str], gpu_type: str
) -> dict[str, Any]:
    """The pod: gridplace's fields, with spec.pod's additions merged in. Where both name the same
    thing (a nodeSelector key of the Region's), gridplace's value is kept."""
    overlay = owner.spec.pod
    pod: dict[str, Any] = {
        # vLLM never calls the Kubernetes API: no token of the namespace's default
        # ServiceAccount for code the tenant chose to read.
        "automountServiceAccountToken": False,
        # No {SERVICE}_PORT variables: a Service named `vllm` in the namespace would
        # set VLLM_PORT, which vLLM reads as its own internal port and refuses.
        "enableServiceLinks": False,
        "securityContext": copy.deepcopy(POD_SECURITY_CONTEXT),
        "nodeSelector": {
            **overlay.node_selector,
            **node_selector,
            labels.NODE_GPU_PRODUCT: gpu_type,
        },
        "tolerations": [
            {"key": labels.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
            *(t.to_api() for t in overlay.tolerations),
        ],
        "terminationGracePeriodSeconds": GRACE_SECONDS,
        "containers": [container],
        "volumes": [
            {
                "name": SHM_VOLUME,
                "emptyDir": {
                    "medium": "Memory",
                    "sizeLimit": f"{shm_gib(owner.spec.model.tensor_parallel_size)}Gi",
                },
            },
            *(v.to_api() for v in overlay.volumes),
        ],
    }
    if overlay.affinity:
        pod["affinity"] = copy.deepcopy(overlay.affinity)
    if overlay.service_account_name:
        pod["serviceAccountName"] = overlay.service_account_name
    if overlay.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": n} for n in overlay.image_pull_secrets]
    if overlay.priority_class_name:
        pod["priorityClassName"] = overlay.priority_class_name
    return pod


def desired_deployment(
    owner: Owner,
    *,
    region: str,
    gpu_type: str,
    replicas: int,
    node_selector: Mapping[str, str],
    surge: bool = True,
) -> dict[str, Any]:
    """The vLLM Deployment of `owner` in one region on one GPU type. `surge`: the pool has GPUs
    beyond the plan for one more replica, so a rollout starts each new pod before an old one
    stops; without them the surge pod would wait for GPUs forever and the rollout would stall,
    so it replaces one pod at a time instead."""
    selector = {
        labels.INFERENCE_DEPLOYMENT: owner.name,
        labels.REGION: region,
        labels.GPU_TYPE: gpu_type,
    }
    own_labels = {**_common_labels(owner), **selector}
    container = _container(owner, batch_limits(owner.spec.model, gpu_type))
    overlay = owner.spec.pod
    manifest: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(owner, region, gpu_type),
            "namespace": owner.namespace,
            "labels": own_labels,
            "ownerReferences": [_owner_reference(owner)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": (
                    {"maxSurge": 1, "maxUnavailable": 0}
                    if surge
                    else {"maxSurge": 0, "maxUnavailable": 1}
                ),
            },
            "template": {
                "metadata": {
                    "labels": {**overlay.labels, **own_labels},
                    "annotations": {
                        **overlay.annotations,
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(VLLM_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": _pod_spec(owner, container, node_selector, gpu_type),
            },
        },
    }
    return _with_hash(manifest)


def desired_disruption_budget(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """A PodDisruptionBudget over one regional Deployment's pods: a node drain or an autoscaler's
    eviction takes at most one of them at a time (a second waits until the first's replacement
    is ready), and never none, so a single replica can still be moved off a node."""
    meta = deployment["metadata"]
    manifest: dict[str, Any] = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": dict(meta["labels"]),
            "ownerReferences": copy.deepcopy(meta["ownerReferences"]),
        },
        "spec": {
            "maxUnavailable": 1,
            "selector": copy.deepcopy(deployment["spec"]["selector"]),
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
    spare_gpus: Mapping[tuple[str, str], int] | None = None,
) -> list[dict[str, Any]]:
    """Every child of `owner` for a plan of replicas per (region, GPU type); `spare_gpus`: the
    GPUs of each pool beyond every plan (None: room everywhere), which decides whether a rollout
    may surge.

    A (region, GPU type) with zero replicas has no Deployment (nor PodDisruptionBudget); a region
    keeps its Service while any of its Deployments exists, and the model-wide Service always
    exists.
    """
    children = [desired_service(owner, None)]
    regions = sorted({region for (region, _), n in replicas.items() if n > 0})
    for region in regions:
        children.append(desired_service(owner, region))
        for (r, gpu_type), n in sorted(replicas.items()):
            if r == region and n > 0:
                deployment = desired_deployment(
                    owner,
                    region=region,
                    gpu_type=gpu_type,
                    replicas=n,
                    node_selector=node_selectors[region],
                    surge=spare_gpus is None
                    or spare_gpus.get((region, gpu_type), 0)
                    >= owner.spec.model.effective_gpus_per_replica(),
                )
                # The budget first: it guards the pods from the moment they exist.
                children += [desired_disruption_budget(deployment), deployment]
    return children
