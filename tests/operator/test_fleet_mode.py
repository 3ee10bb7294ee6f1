"""Fleet mode without a cluster: Regions in Karmada member clusters, their GPUs read through the
cluster proxy, their children propagated by one PropagationPolicy per member, and a lost member
leaving its regions without replicas. The same on a real Karmada fleet: tests/fleet."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from planner_kit import GPU, RecordingKube, gpu_node, inference_deployment, region

from gridplace_operator import labels
from gridplace_operator.api.conditions import Reason
from gridplace_operator.api.inference_deployment import InferenceDeploymentSpec
from gridplace_operator.api.parsed import IdepRef, parse_spec
from gridplace_operator.kube.client import ApiError
from gridplace_operator.observe.fleet import MemberState, member_problem
from gridplace_operator.observe.world import Change, World
from gridplace_operator.planning.planner import Planner
from gridplace_operator.planning.seams import ClusterGpus
from gridplace_operator.reconcile.children import Owner, desired_children
from gridplace_operator.reconcile.propagation import propagation_policies
from gridplace_operator.reconcile.writes import Delete, ObservedChild, owned_fields, writes_for
from gridplace_operator.report.metrics import OperatorMetrics


def cluster(name: str, ready: bool = True, message: str = "") -> dict[str, Any]:
    """A Karmada Cluster as its API returns it."""
    return {
        "apiVersion": "cluster.karmada.io/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": name},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True" if ready else "False", "message": message}
            ]
        },
    }


def member_region(name: str, member: str, carbon: float = 100) -> dict[str, Any]:
    body = region(name, {"static": {"gCO2PerKWh": carbon}})
    body["spec"]["cluster"] = member
    return body


class FleetKube(RecordingKube):
    """Answers for member clusters as Karmada's proxy would; records applied children."""

    def __init__(self, members: Mapping[str, list[dict[str, Any]]]) -> None:
        super().__init__()
        self.member_nodes = dict(members)
        self.unreachable: set[str] = set()
        self.applied: dict[tuple[str, str], dict[str, Any]] = {}

    async def list_member_nodes(self, member: str) -> list[dict[str, Any]]:
        if member in self.unreachable:
            raise ApiError(status=503, reason="Service Unavailable")
        return self.member_nodes[member]

    async def apply(self, obj: Mapping[str, Any], *, force: bool = True) -> None:
        self.applied[(obj["kind"], obj["metadata"]["name"])] = dict(obj)


def fleet_world(*members: dict[str, Any]) -> World:
    world = World()
    for body in members:
        world.observe_member(body, deleted=False)
    return world


def test_member_regions_count_the_members_gpus_and_local_regions_the_watched_nodes() -> None:
    world = fleet_world(cluster("eu"), cluster("us"))
    world.observe_node(gpu_node("n1", "local-1", gpus=4), deleted=False)
    kube = FleetKube(
        {"eu": [gpu_node("n1", "eu-central-1", gpus=8)], "us": [gpu_node("n1", "us-east-1")]}
    )
    selectors = {
        r: {"topology.kubernetes.io/region": r} for r in ("eu-central-1", "us-east-1", "local-1")
    }
    inventory = asyncio.run(
        ClusterGpus(kube, world).read(selectors, {"eu-central-1": "eu", "us-east-1": "us"})
    )
    assert {k: p.available for k, p in inventory.pools.items()} == {
        ("eu-central-1", "NVIDIA-H100-80GB-HBM3"): 8,
        ("us-east-1", "NVIDIA-H100-80GB-HBM3"): 8,
        ("local-1", "NVIDIA-H100-80GB-HBM3"): 4,
    }
    # Node names repeat across members: the fleet's inventory tells them apart.
    assert sorted(n.name for n in inventory.nodes) == ["eu/n1", "n1", "us/n1"]
    assert inventory.unavailable == {}


@pytest.mark.parametrize(
    ("members", "unreachable", "reason", "words"),
    [
        ([cluster("eu", ready=False, message="cluster is not reachable")], set(), "NotReady",
         "cluster is not reachable"),
        ([], set(), "NotFound", "no Karmada Cluster named 'eu'"),
        ([cluster("eu")], {"eu"}, "NotReady", "HTTP 503"),  # and nothing read before
    ],
)  # fmt: skip
def test_a_member_that_cannot_take_replicas_leaves_its_regions_without_gpus_and_says_why(
    members: list[dict[str, Any]], unreachable: set[str], reason: str, words: str
) -> None:
    kube = FleetKube({"eu": [gpu_node("n1", "eu-central-1")], "us": [gpu_node("n1", "us-east-1")]})
    kube.unreachable = unreachable
    world = fleet_world(*members, cluster("us"))
    selectors = {r: {"topology.kubernetes.io/region": r} for r in ("eu-central-1", "us-east-1")}
    inventory = asyncio.run(
        ClusterGpus(kube, world).read(selectors, {"eu-central-1": "eu", "us-east-1": "us"})
    )
    assert set(inventory.pools) == {("us-east-1", "NVIDIA-H100-80GB-HBM3")}
    lost = inventory.unavailable["eu-central-1"]
    assert lost.reason == f"MemberCluster{reason}"
    assert words in lost.message


def test_only_a_change_of_a_members_readiness_replans() -> None:
    world = World()
    assert world.observe_member(cluster("eu"), deleted=False) is Change.REPLAN
    assert world.observe_member(cluster("eu"), deleted=False) is Change.NONE  # a heartbeat
    assert world.observe_member(cluster("eu", ready=False), deleted=False) is Change.REPLAN
    assert world.observe_member(cluster("eu", ready=False), deleted=True) is Change.REPLAN
    assert member_problem("eu", None) is not None
    assert member_problem("eu", MemberState("eu", True, "")) is None


def owner(name: str = "chat") -> Owner:
    spec = parse_spec(inference_deployment(name, "ns"))
    assert isinstance(spec, InferenceDeploymentSpec)
    return Owner("ns", name, f"uid-{name}", spec)


def test_each_member_gets_one_policy_for_exactly_its_regions_children() -> None:
    gpu = "NVIDIA-H100-80GB-HBM3"
    selectors = {r: {"topology.kubernetes.io/region": r} for r in ("eu-1", "eu-2", "us-1", "here")}
    children = desired_children(
        owner(), {("eu-1", gpu): 2, ("eu-2", gpu): 1, ("us-1", gpu): 3, ("here", gpu): 1}, selectors
    )
    policies = propagation_policies(owner(), children, {"eu-1": "eu", "eu-2": "eu", "us-1": "us"})
    by_name = {p["metadata"]["name"]: p for p in policies}
    assert set(by_name) == {"chat-eu", "chat-us", "chat"}
    eu = by_name["chat-eu"]["spec"]
    assert eu["placement"] == {
        "clusterAffinity": {"clusterNames": ["eu"]},
        "replicaScheduling": {"replicaSchedulingType": "Duplicated"},
    }
    sent = {(s["kind"], s["name"]) for s in eu["resourceSelectors"]}
    assert sent == {
        ("Deployment", "chat-eu-1"),
        ("Deployment", "chat-eu-2"),
        ("PodDisruptionBudget", "chat-eu-1"),
        ("PodDisruptionBudget", "chat-eu-2"),
        ("Service", "chat-eu-1"),
        ("Service", "chat-eu-2"),
    }
    # The region without a member stays here: nothing propagates its children.
    everything = {s["name"] for p in policies for s in p["spec"]["resourceSelectors"]}
    assert not {"chat-here"} & everything
    # The model-wide Service reaches every member that runs the model.
    model_wide = by_name["chat"]["spec"]
    assert model_wide["placement"]["clusterAffinity"]["clusterNames"] == ["eu", "us"]
    service = {"apiVersion": "v1", "kind": "Service", "name": "chat"}
    assert model_wide["resourceSelectors"] == [service]
    for p in policies:
        assert p["metadata"]["ownerReferences"][0]["uid"] == "uid-chat"
        assert p["metadata"]["labels"][labels.MANAGED_BY] == labels.MANAGED_BY_VALUE
    # Without members, no policy at all (single-cluster mode writes what it always did).
    assert propagation_policies(owner(), children, {}) == []


def test_a_policy_goes_after_the_children_it_propagates_and_karmada_defaults_are_no_drift() -> None:
    gpu = "NVIDIA-H100-80GB-HBM3"
    selectors = {r: {"topology.kubernetes.io/region": r} for r in ("eu-1", "us-1")}
    before = desired_children(owner(), {("eu-1", gpu): 1, ("us-1", gpu): 1}, selectors)
    before += propagation_policies(owner(), before, {"eu-1": "eu", "us-1": "us"})
    observed = []
    for manifest in before:
        live = {**manifest, "status": {"readyReplicas": 1}}
        if manifest["kind"] == "PropagationPolicy":  # what Karmada's webhook adds
            spec = {**manifest["spec"], "priority": 0, "conflictResolution": "Abort"}
            sent = spec["resourceSelectors"]
            spec["resourceSelectors"] = [{**s, "namespace": "ns"} for s in sent]
            live["spec"] = spec
        observed.append(ObservedChild.from_api(live))
    assert writes_for(before, observed, "uid-chat").make == []  # steady: nothing to write
    after = desired_children(owner(), {("us-1", gpu): 2}, selectors)
    after += propagation_policies(owner(), after, {"eu-1": "eu", "us-1": "us"})
    writes = writes_for(after, observed, "uid-chat")
    deletes = [(w.kind, w.name) for w in writes.brk if isinstance(w, Delete)]
    assert deletes[-1] == ("PropagationPolicy", "chat-eu")
    assert ("Deployment", "chat-eu-1") in deletes[:-1]
    assert owned_fields(before[-1])["clusterNames"]


def test_a_lost_member_moves_its_replicas_without_spending_churn_and_its_region_says_why() -> None:
    world = fleet_world(cluster("eu"), cluster("us"))
    world.observe_region(member_region("eu-central-1", "eu", carbon=50), deleted=False)
    world.observe_region(member_region("us-east-1", "us", carbon=400), deleted=False)
    world.observe_idep(inference_deployment("chat", "ns", minReplicas=2), deleted=False)
    kube = FleetKube({"eu": [gpu_node("a", "eu-central-1")], "us": [gpu_node("a", "us-east-1")]})
    planner = Planner(world, kube, OperatorMetrics(), gpus=ClusterGpus(kube, world))
    asyncio.run(planner.cycle(replan=True))
    ref = IdepRef("ns", "chat")
    assert {p.region for p in planner.memory.plans[ref].pools} == {"eu-central-1"}
    assert ("PropagationPolicy", "chat-eu") in kube.applied
    for manifest in kube.applied.values():  # the watch sees what was written, ready
        world.observe_child({**manifest, "status": {"readyReplicas": 2}}, deleted=False)

    world.observe_member(cluster("eu", ready=False, message="cluster is not reachable"), False)
    asyncio.run(planner.cycle(replan=True))
    assert {p.region for p in planner.memory.plans[ref].pools} == {"us-east-1"}
    ready = kube.condition("Region", None, "eu-central-1", "Ready")
    assert (ready["status"], ready["reason"]) == ("False", Reason.MEMBER_NOT_READY)
    assert "cluster is not reachable" in ready["message"]
    assert not planner.memory.moves.get(ref)  # replaced, not moved: no churn spent
    assert ("PropagationPolicy", "chat-us") in kube.applied


def test_a_member_that_fails_one_read_while_karmada_reports_it_ready_keeps_its_gpus() -> None:
    """Karmada's failure threshold decides that a member is lost: one slow answer through the
    proxy must not move its replicas away and back."""
    kube = FleetKube({"eu": [gpu_node("n1", "eu-central-1", gpus=4)]})
    world = fleet_world(cluster("eu"))
    gpus = ClusterGpus(kube, world)
    selectors = {"eu-central-1": {"topology.kubernetes.io/region": "eu-central-1"}}
    members = {"eu-central-1": "eu"}
    assert asyncio.run(gpus.read(selectors, members)).available("eu-central-1", GPU) == 4
    kube.unreachable = {"eu"}
    again = asyncio.run(gpus.read(selectors, members))
    assert again.available("eu-central-1", GPU) == 4 and not again.unavailable
    world.observe_member(cluster("eu", ready=False), deleted=False)  # now Karmada says so
    lost = asyncio.run(gpus.read(selectors, members))
    assert lost.pools == {} and lost.unavailable["eu-central-1"].reason == "MemberClusterNotReady"


def test_a_child_another_karmada_policy_claimed_is_a_conflict_and_nothing_is_written() -> None:
    world = fleet_world(cluster("eu"))
    world.observe_region(member_region("eu-central-1", "eu"), deleted=False)
    world.observe_idep(inference_deployment("chat", "ns"), deleted=False)
    kube = FleetKube({"eu": [gpu_node("a", "eu-central-1")]})
    planner = Planner(world, kube, OperatorMetrics(), gpus=ClusterGpus(kube, world))
    asyncio.run(planner.cycle(replan=True))
    deployment = kube.applied[("Deployment", "chat-eu-central-1")]
    for manifest in kube.applied.values():
        world.observe_child({**manifest, "status": {"readyReplicas": 1}}, deleted=False)
    asyncio.run(planner.cycle(replan=False))
    ready = kube.condition("InferenceDeployment", "ns", "chat", "Ready")
    assert ready["status"] == "True", ready
    # Someone's policy claims gridplace's Deployment: Karmada would send it where that says.
    claimed = {**deployment, "status": {"readyReplicas": 1}}
    claimed["metadata"] = {
        **deployment["metadata"],
        "annotations": {
            **deployment["metadata"]["annotations"],
            "propagationpolicy.karmada.io/name": "everything-to-us",
            "propagationpolicy.karmada.io/namespace": "ns",
        },
    }
    assert world.observe_child(claimed, deleted=False) is Change.REFRESH
    kube.applied.clear()
    asyncio.run(planner.cycle(replan=False))
    ready = kube.condition("InferenceDeployment", "ns", "chat", "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ChildConflict")
    assert "PropagationPolicy ns/everything-to-us" in ready["message"]
    assert "ns/chat-eu" in ready["message"]
    assert kube.applied == {}  # nothing half-applied
