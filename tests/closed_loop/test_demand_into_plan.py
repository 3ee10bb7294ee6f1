"""The autoscaler feeds the joint solve, it does not pin it: the example models, placed by an
operator with Prometheus configured on the local cluster's mixed GPU types, run no replica that
the plan leaves idle, and each pool holds about what the capacity model needs for its share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gridplace_e2e.cluster.handle import ClusterHandle
from gridplace_e2e.operator_run import OperatorProcess, get_json, wait_for
from gridplace_operator.api.inference_deployment import InferenceDeploymentSpec
from gridplace_operator.api.parsed import IdepRef, Rejection
from gridplace_operator.autoscale.decide import capacity_size
from gridplace_operator.planning.problem import placement_model

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "inferencedeployments.yaml"


def enforced_examples() -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(EXAMPLES.read_text()) if d]
    return [d for d in docs if d["spec"].get("placement", {}).get("mode", "Enforce") == "Enforce"]


@pytest.mark.cluster
def test_the_examples_run_no_idle_replicas_beyond_their_floors(
    cluster: ClusterHandle, namespace: str, tmp_path: Path
) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    cluster.kubectl("apply", "-f", str(ROOT / "examples" / "regions.yaml"))
    process = OperatorProcess(
        cluster.kubeconfig,
        tmp_path / "operator.log",
        extra_args=[f"--prometheus-url={cluster.prometheus_url}", "--autoscale-period=1"],
    )
    process.start()
    try:
        cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES))
        models = enforced_examples()
        names = [m["metadata"]["name"] for m in models]

        def settled() -> bool:
            for name in names:
                status = get_json(cluster, "idep", name, "-n", namespace).get("status") or {}
                if not status.get("autoscaler") or not status.get("placement"):
                    return False
                if status["autoscaler"]["desiredReplicas"] != sum(
                    p["desiredReplicas"] for p in status["placement"]
                ):
                    return False
            return True

        def totals() -> dict[str, int]:
            return {
                name: get_json(cluster, "idep", name, "-n", namespace)["status"]["autoscaler"][
                    "desiredReplicas"
                ]
                for name in names
            }

        wait_for(settled, 180, "the example models autoscaled and placed", process)
        first = totals()
        process.wait_cycles(5)  # several autoscaler decisions: nothing drifts up meanwhile
        wait_for(settled, 60, "the example models settled again", process)
        assert totals() == first
        for body in models:
            name = body["metadata"]["name"]
            status = get_json(cluster, "idep", name, "-n", namespace)["status"]
            spec = InferenceDeploymentSpec.model_validate(body["spec"])
            model = placement_model(IdepRef(namespace, name), spec, {})
            assert not isinstance(model, Rejection)
            floor = spec.placement.availability.min_replicas_per_region
            planned = status["autoscaler"]["plannedRequestsPerSecond"]
            declared = sum(d.requests_per_second for d in spec.demand.static or [])
            assert planned == pytest.approx(declared * (1 + spec.scaling.tolerance_percent / 100))
            for pool in status["placement"]:
                replicas, rps = pool["desiredReplicas"], pool["requestsPerSecond"]
                size = capacity_size(model, rps, pool["gpuType"], spec.scaling.max_replicas)
                where = f"{name} in {pool['region']} on {pool['gpuType']}: {pool}"
                assert rps > 0 or replicas <= floor, f"idle replicas beyond the floor: {where}"
                # One more than the RTT-free size at most: the plan sizes a pool within what is
                # left of the SLO after the RTT of the zones it serves.
                assert replicas <= max(size.replicas, floor) + 1, f"more than needed: {where}"
        assert process.counter("gridplace_errors_total", stage="autoscale") == 0
    finally:
        process.stop()
