"""Valid objects and a table of invalid ones, shared by the model tests and the API server tests.

Each invalid case names the field the error must point at and the message both the operator's
models and the API server must give. Schema-level errors are worded differently by pydantic and
by the API server, so those cases carry one message for each.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gridplace_operator.api import common, inference_deployment
from gridplace_operator.api import region as region_module
from gridplace_operator.api.common import ApiModel, CelRule

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
H100 = "NVIDIA-H100-80GB-HBM3"
L40S = "NVIDIA-L40S"

IDEP: dict[str, Any] = {
    "apiVersion": "gridplace.dev/v1alpha1",
    "kind": "InferenceDeployment",
    "metadata": {"name": "chat"},
    "spec": {
        "model": {"name": "meta-llama/Meta-Llama-3.1-8B-Instruct", "gpuTypes": [H100, L40S]},
        "slo": {"p95TimeToFirstTokenSeconds": 0.8},
        "demand": {"static": [{"zone": "us-east", "requestsPerSecond": 10}]},
    },
}

REGION: dict[str, Any] = {
    "apiVersion": "gridplace.dev/v1alpha1",
    "kind": "Region",
    "metadata": {"name": "test-region"},
    "spec": {
        "carbonIntensity": {"static": {"gCO2PerKWh": 300}},
        "powerPrice": {"static": {"usdPerMWh": 80}},
        "rtt": [{"zone": "us-east", "ms": 5}],
    },
}

DELETE = object()


def merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`base` with `patch` merged in (nested dicts merge, DELETE removes a key)."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class Bad:
    id: str
    body: dict[str, Any]
    field: str  # the error names this field path (dotted, [i] for list items)
    message: str  # from the models (and from the API server unless `server` is given)
    server: str | None = None  # the API server's wording where it differs

    @property
    def server_message(self) -> str:
        return self.server if self.server is not None else self.message


def idep(id: str, spec: dict[str, Any], field: str, message: str, server: str | None = None) -> Bad:
    return Bad(id, merged(IDEP, {"spec": spec}), field, message, server)


def region(
    id: str, spec: dict[str, Any], field: str, message: str, server: str | None = None
) -> Bad:
    return Bad(id, merged(REGION, {"spec": spec}), field, message, server)


def _gpu_perf(gpu: str, **overrides: Any) -> dict[str, Any]:
    return {
        "gpuType": gpu,
        "maxBatch": 256,
        "decodeBaseSeconds": 0.025,
        "decodePerSequenceSeconds": 0.0003,
        "prefillSecondsPerToken": 0.0003,
        "activePowerWatts": 300,
        "idlePowerWatts": 100,
        **overrides,
    }


BAD: tuple[Bad, ...] = (
    idep(
        "min-above-max",
        {"scaling": {"minReplicas": 5, "maxReplicas": 3}},
        "spec.scaling",
        "minReplicas must not exceed maxReplicas",
    ),
    idep(
        "pinned-replicas-above-max",
        {"scaling": {"replicas": 50, "maxReplicas": 10}},
        "spec.scaling",
        "replicas must lie within minReplicas and maxReplicas",
    ),
    idep(
        "unknown-mode",
        {"placement": {"mode": "Sometimes"}},
        "spec.placement.mode",
        "Input should be 'Enforce' or 'Advise'",
        server='Unsupported value: "Sometimes"',
    ),
    idep(
        "negative-rps",
        {"demand": {"static": [{"zone": "us-east", "requestsPerSecond": -1}]}},
        "spec.demand.static[0].requestsPerSecond",
        "greater than or equal to 0",
    ),
    idep(
        "duplicate-demand-zone",
        {
            "demand": {
                "static": [
                    {"zone": "us-east", "requestsPerSecond": 1},
                    {"zone": "us-east", "requestsPerSecond": 2},
                ]
            }
        },
        "spec.demand",
        "static: duplicate zone us-east",
        server="Duplicate value",
    ),
    idep(
        "allowed-and-forbidden",
        {"placement": {"allowedRegions": ["us-east-1"], "forbiddenRegions": ["us-east-1"]}},
        "spec.placement",
        "a region cannot be both allowed and forbidden",
    ),
    idep(
        "min-regions-above-allowed",
        {"placement": {"allowedRegions": ["us-east-1"], "availability": {"minRegions": 2}}},
        "spec.placement",
        "availability needs more regions than allowedRegions lists",
    ),
    idep(
        "survive-loss-with-one-region",
        {
            "placement": {
                "allowedRegions": ["us-east-1"],
                "availability": {"surviveRegionLoss": True},
            }
        },
        "spec.placement",
        "availability needs more regions than allowedRegions lists",
    ),
    idep(
        "availability-above-max-replicas",
        {
            "scaling": {"maxReplicas": 4},
            "placement": {"availability": {"minRegions": 3, "minReplicasPerRegion": 2}},
        },
        "spec",
        "placement.availability needs more replicas (minRegions x minReplicasPerRegion)"
        " than scaling.maxReplicas allows",
    ),
    idep(
        "two-slo-metrics",
        {"slo": {"p95TimeToFirstTokenSeconds": 0.5, "p95EndToEndSeconds": 5}},
        "spec.slo",
        "set exactly one of p95TimeToFirstTokenSeconds or p95EndToEndSeconds",
    ),
    idep(
        "no-slo-metric",
        {"slo": {"p95TimeToFirstTokenSeconds": DELETE, "p95TimePerOutputTokenSeconds": 0.1}},
        "spec.slo",
        "set exactly one of p95TimeToFirstTokenSeconds or p95EndToEndSeconds",
    ),
    idep(
        "zero-slo",
        {"slo": {"p95TimeToFirstTokenSeconds": 0}},
        "spec.slo.p95TimeToFirstTokenSeconds",
        "greater than 0",
    ),
    idep(
        "gpus-not-multiple-of-tp",
        {"model": {"tensorParallelSize": 2, "gpusPerReplica": 3}},
        "spec.model",
        "gpusPerReplica must be a multiple of tensorParallelSize",
    ),
    idep(
        "managed-vllm-flag",
        {"model": {"args": ["--enforce-eager", "--tensor-parallel-size=2"]}},
        "spec.model",
        "args must not set --model, --host, --port, --served-model-name,"
        " --tensor-parallel-size, --quantization",
    ),
    idep(
        "managed-batch-flag",
        {"model": {"args": ["--max-num-seqs=8"]}},
        "spec.model",
        "--max-num-seqs, --max-num-batched-tokens, --max-model-len: gridplace derives them",
    ),
    idep(
        "pod-owned-label",
        {"pod": {"labels": {"gridplace.dev/region": "x"}}},
        "spec.pod",
        "labels must not set gridplace's own",
    ),
    idep(
        "pod-owned-annotation",
        {"pod": {"annotations": {"prometheus.io/port": "9000"}}},
        "spec.pod",
        "annotations must not set gridplace's own",
    ),
    idep(
        "pod-owned-node-label",
        {"pod": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L4"}}},
        "spec.pod",
        "nodeSelector must not set topology.kubernetes.io/region, nvidia.com/gpu.product",
    ),
    idep(
        "pod-shm-volume",
        {"pod": {"volumes": [{"name": "dshm", "emptyDir": {}}]}},
        "spec.pod",
        "volume name dshm is gridplace's",
    ),
    idep(
        "pod-shm-mount",
        {
            "pod": {
                "volumes": [{"name": "big", "emptyDir": {}}],
                "volumeMounts": [{"name": "big", "mountPath": "/dev/shm"}],
            }
        },
        "spec.pod",
        "/dev/shm is gridplace's",
    ),
    idep(
        "pod-mount-without-volume",
        {"pod": {"volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}},
        "spec.pod",
        "every volumeMount must name a volume of spec.pod.volumes",
    ),
    idep(
        "toleration-exists-with-value",
        {"pod": {"tolerations": [{"key": "a", "operator": "Exists", "value": "b"}]}},
        "spec.pod.tolerations[0]",
        "a toleration with operator Exists takes no value",
    ),
    idep(
        "toleration-equal-without-key",
        {"pod": {"tolerations": [{"operator": "Equal", "value": "b"}]}},
        "spec.pod.tolerations[0]",
        "a toleration without a key must use operator Exists",
    ),
    idep(
        "no-gpu-types",
        {"model": {"gpuTypes": []}},
        "spec.model.gpuTypes",
        "List should have at least 1 item",
        server="should have at least 1 items",
    ),
    idep(
        "profile-and-gpus",
        {"model": {"performance": {"profile": "x", "gpus": [_gpu_perf(H100), _gpu_perf(L40S)]}}},
        "spec.model.performance",
        "set exactly one of profile or gpus",
    ),
    idep(
        "performance-misses-gpu-type",
        {"model": {"performance": {"gpus": [_gpu_perf(H100)]}}},
        "spec.model",
        "performance.gpus must list every GPU type in gpuTypes",
    ),
    idep(
        "idle-above-active-power",
        {
            "model": {
                "performance": {"gpus": [_gpu_perf(H100), _gpu_perf(L40S, idlePowerWatts=500)]}
            }
        },
        "spec.model.performance.gpus[1]",
        "idlePowerWatts must not exceed activePowerWatts",
    ),
    idep(
        "env-value-and-secret",
        {
            "model": {
                "env": [
                    {
                        "name": "HF_TOKEN",
                        "value": "x",
                        "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}},
                    }
                ]
            }
        },
        "spec.model.env[0]",
        "set exactly one of value or valueFrom",
    ),
    idep(
        "all-weights-zero",
        {"placement": {"weights": {"latency": 0, "carbon": 0, "cost": 0}}},
        "spec.placement.weights",
        "at least one weight must be positive",
    ),
    idep(
        "no-demand-source",
        {"demand": {"static": DELETE, "meanPromptTokens": 100}},
        "spec.demand",
        "set static, prometheus or both",
    ),
    idep(
        "unknown-field",
        {"placement": {"modee": "Advise"}},
        "spec.placement.modee",
        "unknown field",
    ),
    Bad(
        "name-not-dns-label",
        merged(IDEP, {"metadata": {"name": "llama.chat"}}),
        "metadata.name",
        "metadata.name must be a DNS-1035 label of at most 40 characters",
    ),
    region(
        "two-carbon-sources",
        {"carbonIntensity": {"prometheus": {"query": "grid_carbon"}}},
        "spec.carbonIntensity",
        "set exactly one source: static, file, prometheus, electricityMaps or wattTime",
    ),
    region(
        "no-price-source",
        {"powerPrice": {"static": DELETE, "maxAgeSeconds": 600}},
        "spec.powerPrice",
        "set exactly one source: static, file, prometheus, electricityMaps",
    ),
    region(
        "file-configmap-and-url",
        {
            "powerPrice": {
                "static": DELETE,
                "file": {
                    "configMapRef": {"name": "prices", "key": "p.csv"},
                    "url": "https://example.com/p.csv",
                    "valueColumn": "price",
                },
            }
        },
        "spec.powerPrice.file",
        "set exactly one of configMapRef or url",
    ),
    region(
        "file-zone-column-without-zone",
        {
            "powerPrice": {
                "static": DELETE,
                "file": {"url": "https://example.com/p.csv", "valueColumn": "p", "zoneColumn": "z"},
            }
        },
        "spec.powerPrice.file",
        "zoneColumn and zone go together: set both or neither",
    ),
    region(
        "currency-on-a-static-price",
        {"powerPrice": {"currency": "EUR"}},
        "spec.powerPrice",
        "currency applies to file and prometheus sources",
    ),
    region(
        "pue-below-one",
        {"pue": 0.9},
        "spec.pue",
        "greater than or equal to 1",
    ),
    region(
        "duplicate-rtt-zone",
        {"rtt": [{"zone": "us-east", "ms": 5}, {"zone": "us-east", "ms": 6}]},
        "spec",
        "rtt: duplicate zone us-east",
        server="Duplicate value",
    ),
    Bad(
        "region-name-too-long",
        merged(REGION, {"metadata": {"name": "a-very-long-region-name"}}),
        "metadata.name",
        "metadata.name must be a DNS-1035 label of at most 20 characters",
    ),
)


def all_rules() -> list[CelRule]:
    """Every cross-field rule declared on an API model."""
    models = {
        obj
        for module in (common, inference_deployment, region_module)
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, ApiModel)
    }
    return [rule for model in models for rule in model.cel_rules]


def example_documents() -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) for every object under examples/ (placement plans excepted)."""
    docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        if path.name.startswith("plan-"):
            continue
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs
