"""Warnings a cycle records, through the real planner without a cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from planner_kit import RecordingKube, gpu_node, inference_deployment, region

from gridplace_operator.api.parsed import IdepRef
from gridplace_operator.observe.inventory import Inventory, build_inventory
from gridplace_operator.observe.world import World
from gridplace_operator.planning.planner import Planner
from gridplace_operator.planning.seams import ClusterGpus
from gridplace_operator.report.metrics import OperatorMetrics


def test_a_shortage_is_one_warning_though_placed_and_ready_both_say_it() -> None:
    world, kube = World(), RecordingKube()
    world.observe_region(region("us-east-1", {"static": {"gCO2PerKWh": 100}}), deleted=False)
    world.observe_node(gpu_node("n1", "us-east-1", gpus=2), deleted=False)
    big = inference_deployment("big", "ns", maxReplicas=40)
    big["spec"]["demand"]["static"] = [{"zone": "us-east", "requestsPerSecond": 500}]
    world.observe_idep(big, deleted=False)
    planner = Planner(world, kube, OperatorMetrics(), gpus=ClusterGpus(kube, world))
    asyncio.run(planner.cycle(replan=True))
    placed = kube.condition("InferenceDeployment", "ns", "big", "Placed")
    ready = kube.condition("InferenceDeployment", "ns", "big", "Ready")
    assert (placed["reason"], ready["reason"]) == ("InsufficientCapacity", "InsufficientCapacity")
    assert [reason for reason, _ in kube.events].count("InsufficientCapacity") == 1
    # A second cycle with nothing new (the status written has come back through the watch)
    # says nothing again.
    written = kube.statuses[("InferenceDeployment", "ns", "big")]
    world.observe_idep({**big, "status": written}, deleted=False)
    kube.events.clear()
    asyncio.run(planner.cycle(replan=True))
    assert "InsufficientCapacity" not in [reason for reason, _ in kube.events]


def test_a_deletion_the_watch_never_delivered_is_noticed_at_the_next_write() -> None:
    """The namespace of an InferenceDeployment was deleted while the watch was away: no DELETED
    event ever comes. The status write that finds nothing makes the planner forget it, so it is
    neither planned nor written for again."""
    world, kube = World(), RecordingKube()
    world.observe_region(region("us-east-1", {"static": {"gCO2PerKWh": 100}}), deleted=False)
    world.observe_node(gpu_node("n1", "us-east-1", gpus=8), deleted=False)
    world.observe_idep(inference_deployment("stale", "gone-ns"), deleted=False)
    world.observe_idep(inference_deployment("live", "ns"), deleted=False)
    planner = Planner(world, kube, OperatorMetrics(), gpus=ClusterGpus(kube, world))
    kube.gone.add(("InferenceDeployment", "gone-ns", "stale"))
    asyncio.run(planner.cycle(replan=True))
    assert set(world.ideps) == {("ns", "live")}
    assert ("InferenceDeployment", "ns", "live") in kube.statuses
    asyncio.run(planner.cycle(replan=True))
    assert set(planner.memory.plans) == {IdepRef("ns", "live")}


class MemberClusters:
    """GPUs from clusters other than the one the operator watches (as a fleet would report
    them): the planner plans with whatever its GpuInventory says."""

    def __init__(self, *nodes: dict[str, Any]) -> None:
        self.nodes = nodes

    async def read(
        self, selectors: Mapping[str, Mapping[str, str]], members: Mapping[str, str]
    ) -> Inventory:
        return build_inventory(self.nodes, [], selectors)


def test_the_planner_places_on_the_gpus_its_inventory_reports_not_on_the_watched_nodes() -> None:
    world, kube = World(), RecordingKube()
    for name in ("us-east-1", "us-west-2"):
        world.observe_region(region(name, {"static": {"gCO2PerKWh": 100}}), deleted=False)
    world.observe_node(gpu_node("watched", "us-east-1"), deleted=False)  # not in the fleet
    world.observe_idep(inference_deployment("chat", "ns"), deleted=False)
    gpus = MemberClusters(gpu_node("member-a", "us-west-2"))
    planner = Planner(world, kube, OperatorMetrics(), gpus=gpus)
    asyncio.run(planner.cycle(replan=True))
    plan = planner.memory.plans[IdepRef("ns", "chat")]
    assert {pool.region for pool in plan.pools} == {"us-west-2"}
