"""The Planner without a cluster: a Kube that records what would be written, and the objects a
cycle plans with (Regions, GPU nodes, InferenceDeployments) as the watch would deliver them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gridplace_operator.kube.client import Kube

GPU = "NVIDIA-H100-80GB-HBM3"


class RecordingKube(Kube):
    """Writes nothing: remembers the last status of each object and every Event."""

    def __init__(self) -> None:  # no API client: nothing here talks to a cluster
        self.statuses: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.events: list[tuple[str, str]] = []
        self.gone: set[tuple[str, str | None, str]] = set()  # deleted on the "server"

    async def list_gpu_pods(self, member: str | None = None) -> list[dict[str, Any]]:
        return []

    async def apply(self, obj: Mapping[str, Any], *, force: bool = True) -> None:
        pass

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        pass

    async def apply_status(
        self, kind: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> bool:
        if (kind, namespace, name) in self.gone:
            return False
        self.statuses[(kind, namespace, name)] = dict(status)
        return True

    async def exists(self, kind: str, namespace: str | None, name: str) -> bool:
        return (kind, namespace, name) not in self.gone

    async def event(
        self, regarding: Mapping[str, Any], *, reason: str, message: str, warning: bool = False
    ) -> None:
        self.events.append((reason, message))

    def condition(self, kind: str, namespace: str | None, name: str, type_: str) -> dict[str, Any]:
        conditions = self.statuses[(kind, namespace, name)].get("conditions") or []
        return next(c for c in conditions if c["type"] == type_)


def region(
    name: str, carbon: dict[str, Any], price: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "gridplace.dev/v1alpha1",
        "kind": "Region",
        "metadata": {"name": name, "generation": 1},
        "spec": {
            "pue": 1.1,
            "carbonIntensity": carbon,
            "powerPrice": price or {"static": {"usdPerMWh": 50}},
            "rtt": [{"zone": "us-east", "ms": 5}],
        },
    }


def gpu_node(name: str, region_name: str, gpus: int = 8) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {"topology.kubernetes.io/region": region_name, "nvidia.com/gpu.product": GPU},
        },
        "status": {
            "allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "64"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def inference_deployment(name: str, namespace: str, **scaling: int) -> dict[str, Any]:
    return {
        "apiVersion": "gridplace.dev/v1alpha1",
        "kind": "InferenceDeployment",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "generation": 1},
        "spec": {
            "model": {"name": "meta-llama/Meta-Llama-3.1-8B-Instruct", "gpuTypes": [GPU]},
            "slo": {"p95TimeToFirstTokenSeconds": 0.8},
            "scaling": {"minReplicas": 1, "maxReplicas": 10, **scaling},
            "demand": {
                "meanPromptTokens": 1000,
                "meanOutputTokens": 250,
                "static": [{"zone": "us-east", "requestsPerSecond": 1}],
            },
        },
    }
