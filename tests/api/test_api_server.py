"""The CRDs on a real API server: they install, accept the examples with the models' defaults,
reject the table of invalid objects with the documented messages, and present well."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from api_cases import BAD, EXAMPLES, IDEP, REGION, ROOT, Bad, merged

from gridplace_e2e.cluster.handle import ClusterHandle
from gridplace_e2e.cluster.local import poll
from gridplace_operator.api import InferenceDeployment, Region
from gridplace_operator.api.crdgen import KINDS
from gridplace_operator.api.inference_deployment import InferenceDeploymentStatus
from gridplace_operator.api.region import RegionStatus
from gridplace_operator.kube.client import Kube, load_client_config
from gridplace_operator.report.metrics import OperatorMetrics
from gridplace_operator.report.status import IdepFacts, idep_status

pytestmark = pytest.mark.cluster

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def crds(cluster: ClusterHandle) -> ClusterHandle:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for kind in KINDS:
        cluster.kubectl(
            "wait", "--for=condition=Established", f"crd/{kind.crd_name}", "--timeout=60s"
        )
    return cluster


def _documents(file: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / file).read_text()) if d]


def _get(cluster: ClusterHandle, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


@pytest.fixture
def region_name(crds: ClusterHandle) -> Iterator[str]:
    """A Region name no other test uses; the Region is deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:8]}"
    yield name
    crds.kubectl("delete", "region", name, "--ignore-not-found", "--wait=false")


def test_crds_are_served_with_short_names_and_category(crds: ClusterHandle) -> None:
    resources = crds.kubectl("api-resources", "--api-group=gridplace.dev", "-o", "wide").stdout
    lines = {line.split()[0]: line for line in resources.splitlines()[1:]}
    assert "idep" in lines["inferencedeployments"] and "true" in lines["inferencedeployments"]
    assert "gpr" in lines["regions"] and "false" in lines["regions"]
    assert "gridplace" in lines["inferencedeployments"] and "gridplace" in lines["regions"]
    # Scale and status subresources are served.
    discovery = json.loads(crds.kubectl("get", "--raw", "/apis/gridplace.dev/v1alpha1").stdout)
    names = {r["name"] for r in discovery["resources"]}
    assert {"inferencedeployments/status", "inferencedeployments/scale", "regions/status"} <= names
    assert "regions/scale" not in names


def test_example_inference_deployments_apply_and_get_the_models_defaults(
    crds: ClusterHandle, namespace: str
) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "inferencedeployments.yaml"))
    for example in _documents("inferencedeployments.yaml"):
        stored = _get(crds, "idep", example["metadata"]["name"], "-n", namespace)
        # The API server filled in the defaults, and they are the models' defaults.
        assert stored["spec"]["scaling"]["scaleDownStabilizationSeconds"] >= 0
        assert "mode" in stored["spec"]["placement"]
        assert "carbon" in stored["spec"]["placement"]["weights"]
        assert "meanOutputTokens" in stored["spec"]["demand"]
        expected = InferenceDeployment.model_validate(example)
        assert InferenceDeployment.from_api(stored).spec == expected.spec


def test_example_regions_are_accepted_with_the_models_defaults(crds: ClusterHandle) -> None:
    for file in ("regions.yaml", "region-signal-sources.yaml"):
        for example in _documents(file):
            result = crds.kubectl(
                "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(example)
            )
            stored = json.loads(result.stdout)
            assert "maxAgeSeconds" in stored["spec"]["carbonIntensity"]
            assert "pue" in stored["spec"]
            assert Region.from_api(stored).spec == Region.model_validate(example).spec, file


@pytest.mark.parametrize("case", BAD, ids=lambda c: c.id)
def test_invalid_object_is_rejected_with_the_documented_message(
    crds: ClusterHandle, case: Bad
) -> None:
    result = crds.kubectl(
        "create", "--dry-run=server", "-n", "default", "-f", "-",
        input=json.dumps(case.body), check=False,
    )  # fmt: skip
    assert result.returncode != 0, f"{case.id} was accepted"
    assert case.server_message in result.stderr
    assert case.field in result.stderr, result.stderr


def test_several_broken_rules_are_reported_together(crds: ClusterHandle) -> None:
    placement = {"allowedRegions": ["us-east-1", "eu-central-1"], "forbiddenRegions": ["us-east-1"]}
    body = merged(
        IDEP, {"spec": {"scaling": {"minReplicas": 9, "maxReplicas": 2}, "placement": placement}}
    )
    result = crds.kubectl(
        "create", "--dry-run=server", "-n", "default", "-f", "-", input=json.dumps(body),
        check=False,
    )  # fmt: skip
    assert "spec.scaling.minReplicas: Invalid value" in result.stderr
    assert "minReplicas must not exceed maxReplicas" in result.stderr
    assert "spec.placement.forbiddenRegions: Invalid value" in result.stderr
    assert "a region cannot be both allowed and forbidden" in result.stderr


def test_kubectl_explain_shows_the_descriptions(crds: ClusterHandle) -> None:
    outputs: dict[str, str] = {}

    def explained() -> bool:
        result = crds.kubectl("explain", "inferencedeployment.spec.slo", check=False)
        outputs["slo"] = result.stdout
        return result.returncode == 0 and "p95TimeToFirstTokenSeconds" in result.stdout

    assert poll(explained, timeout=60), outputs
    assert "95th percentile of time to first token" in outputs["slo"]
    region = crds.kubectl("explain", "region.spec.carbonIntensity.fallback").stdout
    assert "gCO2PerKWh" in region and "stale" in region


def _idep_status() -> InferenceDeploymentStatus:
    return InferenceDeploymentStatus.model_validate(
        {
            "observedGeneration": 1,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Available", "message": "3/3 ready",
                 "lastTransitionTime": NOW, "observedGeneration": 1},
                {"type": "Placed", "status": "True", "reason": "Planned",
                 "lastTransitionTime": NOW, "observedGeneration": 1},
            ],
            "replicas": 3,
            "readyReplicas": 3,
            "selector": "gridplace.dev/inference-deployment=chat",
            "placementSummary": "us-east-1=2,eu-central-1=1",
            "placement": [
                {"region": "us-east-1", "gpuType": "NVIDIA-H100-80GB-HBM3", "desiredReplicas": 2,
                 "readyReplicas": 2, "requestsPerSecond": 7.5, "reason": "nearest to us-east"},
                {"region": "eu-central-1", "gpuType": "NVIDIA-L40S", "desiredReplicas": 1,
                 "readyReplicas": 1, "requestsPerSecond": 2.5, "reason": "availability floor"},
            ],
            "traffic": [{"zone": "us-east", "region": "us-east-1", "requestsPerSecond": 10,
                         "rttMs": 5.3}],
            "predicted": {"p95Seconds": 0.42, "gCO2PerHour": 310.5, "usdPerHour": 1.25},
            "unmetRequestsPerSecond": 0,
            "explanation": ["us-east-1: cheapest power within the SLO"],
            "lastPlanTime": NOW,
            "autoscaler": {"desiredReplicas": 3, "observedP95Seconds": 0.4, "reason": "OnTarget"},
        }
    )  # fmt: skip


def test_status_round_trips_and_fills_the_printer_columns(
    crds: ClusterHandle, namespace: str
) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(IDEP))
    status = _idep_status()
    crds.kubectl(
        "patch", "idep", "chat", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status.to_api()}),
    )  # fmt: skip
    stored = InferenceDeployment.from_api(_get(crds, "idep", "chat", "-n", namespace))
    assert stored.status == status  # nothing pruned, nothing added

    table = crds.kubectl("get", "idep", "chat", "-n", namespace, "-o", "wide").stdout.splitlines()
    header, row = table[0].split(), table[1].split()
    assert header == [
        "NAME", "READY", "REASON", "MODE", "REPLICAS", "AVAILABLE", "REGIONS", "P95", "GCO2/H",
        "USD/H", "AGE",
    ]  # fmt: skip
    assert row[:10] == [
        "chat", "True", "Available", "Enforce", "3", "3", "us-east-1=2,eu-central-1=1", "0.42",
        "310.5", "1.25",
    ]  # fmt: skip
    narrow = crds.kubectl("get", "idep", "-n", namespace).stdout.splitlines()[0].split()
    assert narrow == ["NAME", "READY", "REPLICAS", "AVAILABLE", "REGIONS", "P95", "GCO2/H", "AGE"]


def test_a_status_without_a_plan_replaces_one_with_a_plan(
    crds: ClusterHandle, namespace: str
) -> None:
    """The operator's own write (server-side apply of the status): a model that loses its plan
    (its GPUs gone) has no prediction, and the write must be accepted, not rejected for an empty
    object stored as null."""
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(IDEP))
    kube = Kube(load_client_config(str(crds.kubeconfig)), OperatorMetrics())
    planned = _idep_status().to_api()
    assert asyncio.run(kube.apply_status("InferenceDeployment", namespace, "chat", planned))
    no_plan = IdepFacts(
        name="chat", generation=1, advise=True, pinned=False, plan=None, ready={}, rtt_ms={}
    )
    unplanned = idep_status(no_plan, planned, NOW).to_api()
    assert asyncio.run(kube.apply_status("InferenceDeployment", namespace, "chat", unplanned))
    stored = _get(crds, "idep", "chat", "-n", namespace)["status"]
    assert "predicted" not in stored and stored["replicas"] == 0


def test_spec_writes_do_not_touch_status(crds: ClusterHandle, namespace: str) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(IDEP))
    with_status = {**IDEP, "status": {"replicas": 7}}
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(with_status))
    assert "status" not in _get(crds, "idep", "chat", "-n", namespace) or (
        _get(crds, "idep", "chat", "-n", namespace)["status"].get("replicas") != 7
    )


def test_scale_subresource_pins_spec_scaling_replicas(crds: ClusterHandle, namespace: str) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(IDEP))
    crds.kubectl(
        "patch", "idep", "chat", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": _idep_status().to_api()}),
    )  # fmt: skip
    crds.kubectl("scale", "idep", "chat", "-n", namespace, "--replicas=4")
    stored = InferenceDeployment.from_api(_get(crds, "idep", "chat", "-n", namespace))
    assert stored.spec.scaling.replicas == 4
    scale_path = (
        f"/apis/gridplace.dev/v1alpha1/namespaces/{namespace}/inferencedeployments/chat/scale"
    )
    scale = json.loads(crds.kubectl("get", "--raw", scale_path).stdout)
    assert scale["spec"]["replicas"] == 4
    assert scale["status"] == {"replicas": 3, "selector": "gridplace.dev/inference-deployment=chat"}

    beyond = crds.kubectl("scale", "idep", "chat", "-n", namespace, "--replicas=50", check=False)
    assert beyond.returncode != 0
    assert "replicas must lie within minReplicas and maxReplicas" in beyond.stderr


def test_region_status_fills_the_printer_columns(crds: ClusterHandle, region_name: str) -> None:
    crds.kubectl(
        "apply", "-f", "-", input=json.dumps(merged(REGION, {"metadata": {"name": region_name}}))
    )
    status = RegionStatus.model_validate(
        {
            "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "True", "reason": "GPUsFound",
                            "lastTransitionTime": NOW}],
            "gpus": [{"gpuType": "NVIDIA-L40S", "nodes": 2, "allocatable": 16, "available": 12}],
            "gpuSummary": "NVIDIA-L40S=16",
            "signals": {
                "carbonIntensity": {"value": 300, "unit": "gCO2eq/kWh", "source": "Static",
                                    "observedAt": NOW, "ageSeconds": 0, "stale": False},
                "powerPrice": {"value": 80.5, "unit": "USD/MWh", "source": "Fallback",
                               "observedAt": NOW, "ageSeconds": 9000, "stale": True,
                               "message": "prometheus: connection refused"},
            },
            "stale": True,
        }
    )  # fmt: skip
    crds.kubectl(
        "patch", "region", region_name, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status.to_api()}),
    )  # fmt: skip
    assert Region.from_api(_get(crds, "region", region_name)).status == status
    table = crds.kubectl("get", "gpr", region_name).stdout.splitlines()
    assert table[0].split() == [
        "NAME", "READY", "PUE", "GCO2/KWH", "USD/MWH", "STALE", "GPUS", "AGE",
    ]  # fmt: skip
    assert table[1].split()[:7] == [
        region_name,
        "True",
        "1.2",
        "300",
        "80.5",
        "true",
        "NVIDIA-L40S=16",
    ]


@pytest.mark.parametrize(
    "pod",
    [
        {"annotations": {"example.com/revision": "2"}},
        {"labels": {"team": "search"}},
        {"tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]},
        {"volumes": [{"name": "cache", "emptyDir": {}}]},
        {"nodeSelector": {"example.com/pool": "inference"}},
    ],
    ids=["annotations", "labels", "tolerations", "volumes", "nodeSelector"],
)
def test_a_pod_overlay_with_one_field_is_accepted(crds: ClusterHandle, pod: dict[str, Any]) -> None:
    """The overlay's rules hold for the fields a user leaves out, not only for those set."""
    body = merged(IDEP, {"spec": {"pod": pod}})
    result = crds.kubectl(
        "create", "--dry-run=server", "-n", "default", "-f", "-",
        input=json.dumps(body), check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
