"""The autoscaler when Prometheus fails: the planner against a scripted Prometheus on 127.0.0.1
that stops, hangs or answers something that is not Prometheus' answer. `Scaled` turns Unknown
with reason MetricsUnavailable and says what failed where, and the count decided last holds."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from planner_kit import RecordingKube, gpu_node, inference_deployment, region
from scripted_server import Answer, ScriptedServer, json_answer

from gridplace_operator.api.parsed import IdepRef
from gridplace_operator.autoscale.prometheus import Prometheus
from gridplace_operator.observe.world import World
from gridplace_operator.planning.planner import Planner
from gridplace_operator.planning.seams import ClusterGpus
from gridplace_operator.report.metrics import OperatorMetrics

NAMESPACE, NAME = "serving", "chat"
# Every query gets this answer: a p95 far above the 0.8 s target and a load well beyond the
# declared 1 request/s, so the autoscaler decides more replicas than the declared demand needs.
BUSY = json_answer(
    {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {"region": "r1", "model_name": "m"}, "value": [1, "20"]}],
        },
    }
)


@pytest.fixture
def prometheus() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    server.start()
    server.script("/api/v1/query", BUSY)
    yield server
    server.stop()


def planner_for(prometheus: ScriptedServer) -> tuple[Planner, RecordingKube]:
    world, kube = World(), RecordingKube()
    world.observe_region(region("r1", {"static": {"gCO2PerKWh": 100}}), deleted=False)
    world.observe_node(gpu_node("n1", "r1", gpus=16), deleted=False)
    # No stabilization windows: whatever the decision wants, it does at once.
    idep = inference_deployment(
        NAME, NAMESPACE, scaleUpStabilizationSeconds=0, scaleDownStabilizationSeconds=0
    )
    world.observe_idep(idep, deleted=False)
    planner = Planner(
        world,
        kube,
        OperatorMetrics(),
        gpus=ClusterGpus(kube, world),
        prometheus=Prometheus(prometheus.url, timeout_s=0.3),
    )
    return planner, kube


def scaled(kube: RecordingKube) -> dict[str, Any]:
    return kube.condition("InferenceDeployment", NAMESPACE, NAME, "Scaled")


@pytest.mark.parametrize(
    ("outage", "failure"),
    [
        ("stopped", "NewConnectionError"),
        ("hanging", "ReadTimeout"),
        ("not Prometheus", "a malformed answer"),  # HTTP 200, JSON without `data`
    ],
)
def test_prometheus_failing_holds_the_last_decision_and_says_so(
    prometheus: ScriptedServer, outage: str, failure: str
) -> None:
    planner, kube = planner_for(prometheus)
    host = prometheus.url.removeprefix("http://")

    async def scenario() -> None:
        for _ in range(2):
            await planner.cycle(True)
        decided = planner.memory.outcomes[IdepRef(NAMESPACE, NAME)]
        assert decided.planned > 2
        assert scaled(kube)["reason"] != "MetricsUnavailable"
        if outage == "stopped":
            prometheus.stop()
        elif outage == "hanging":
            prometheus.script("/api/v1/query", dataclasses.replace(BUSY, delay_seconds=5))
        else:
            prometheus.script("/api/v1/query", json_answer({"status": "error"}))
        for _ in range(2):
            await planner.cycle(False)
            condition = scaled(kube)
            assert (condition["status"], condition["reason"]) == ("Unknown", "MetricsUnavailable")
            assert condition["message"] == (
                f"holding {decided.planned}: Prometheus unavailable ({failure} from {host});"
                " no scaling without metrics"
            )
            assert planner.memory.outcomes[IdepRef(NAMESPACE, NAME)].planned == decided.planned
            status = kube.statuses[("InferenceDeployment", NAMESPACE, NAME)]
            assert status["autoscaler"]["desiredReplicas"] == decided.planned

    asyncio.run(scenario())


def test_a_prometheus_that_answers_again_is_asked_again(prometheus: ScriptedServer) -> None:
    planner, kube = planner_for(prometheus)
    planner.prometheus = Prometheus(prometheus.url, timeout_s=0.3, down_pause_s=0)

    async def scenario() -> None:
        await planner.cycle(True)
        prometheus.script("/api/v1/query", Answer(503, b"maintenance"))
        await planner.cycle(False)
        condition = scaled(kube)
        assert condition["reason"] == "MetricsUnavailable"
        assert "maintenance" not in condition["message"]  # the answer's body stays out
        assert "HTTP 503 from" in condition["message"]
        prometheus.script("/api/v1/query", BUSY)
        await planner.cycle(False)
        assert scaled(kube)["reason"] != "MetricsUnavailable"

    asyncio.run(scenario())


def test_one_unreachable_prometheus_is_waited_on_once_per_pause(
    prometheus: ScriptedServer,
) -> None:
    client = Prometheus(prometheus.url, timeout_s=0.3, down_pause_s=60)
    prometheus.script("/api/v1/query", dataclasses.replace(BUSY, delay_seconds=5))
    for _ in range(3):
        with pytest.raises(Exception, match="ReadTimeout"):
            client.query("up")
    assert prometheus.count("/api/v1/query") == 1
