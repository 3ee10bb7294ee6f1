"""The local Karmada fleet is the real thing: members join and become Ready, a propagated
Deployment runs in exactly the member its policy names (and follows the template), the cluster
proxy reaches each member's API server, and down() leaves nothing running."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cluster_kit import gpu_deployment, is_loopback, listening_addresses

from gridplace_e2e.cluster.build import KARMADA_VERSION
from gridplace_e2e.cluster.fleet import CONTROL_PLANE_PROGRAMS, LocalFleet
from gridplace_e2e.cluster.local import poll
from gridplace_e2e.cluster.topology import REGION_LABEL, load_topology

pytestmark = pytest.mark.cluster

MEMBER = "us"


def get_json(fleet: LocalFleet, *args: str, member: str | None = None) -> Any:
    if member is None:
        return json.loads(fleet.kubectl("get", *args, "-o", "json").stdout)
    return json.loads(fleet.member_kubectl(member, "get", *args, "-o", "json").stdout)


def duplicated_to(name: str, member: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy.karmada.io/v1alpha1",
        "kind": "PropagationPolicy",
        "metadata": {"name": name},
        "spec": {
            "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name}],
            "placement": {
                "clusterAffinity": {"clusterNames": [member]},
                "replicaScheduling": {"replicaSchedulingType": "Duplicated"},
            },
        },
    }


@pytest.fixture
def karmada_namespace(fleet: LocalFleet) -> Iterator[str]:
    """A namespace in Karmada (Karmada propagates it to every member); deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    fleet.kubectl("create", "namespace", name)
    yield name
    fleet.kubectl("delete", "namespace", name, "--wait=false")


def test_every_member_is_a_ready_cluster(fleet: LocalFleet) -> None:
    clusters = {c["metadata"]["name"]: c for c in get_json(fleet, "clusters")["items"]}
    assert set(clusters) == {"eu", "us", "ap"}
    for name, cluster in clusters.items():
        conditions = {c["type"]: c["status"] for c in cluster["status"]["conditions"]}
        assert conditions.get("Ready") == "True", f"{name}: {conditions}"
        assert cluster["spec"]["syncMode"] == "Push"
        assert cluster["spec"]["apiEndpoint"].startswith("https://127.0.0.1:")
        # Karmada read the member: its Kubernetes version and its nodes.
        assert cluster["status"]["kubernetesVersion"].startswith("v1.34")
        topology = load_topology(fleet.member_specs[name].topology)
        assert cluster["status"]["nodeSummary"]["totalNum"] == len(topology.node_manifests())


def test_karmada_runs_its_pinned_version(fleet: LocalFleet) -> None:
    log = (fleet.logs / "karmada-controller-manager.log").read_text()
    assert f'GitVersion:"{KARMADA_VERSION}"' in log


def test_a_policy_places_a_deployment_in_exactly_its_member(
    fleet: LocalFleet, karmada_namespace: str
) -> None:
    ns, name = karmada_namespace, "llama"
    region = load_topology(fleet.member_specs[MEMBER].topology).regions[0]
    for document in (gpu_deployment(name, region, replicas=2), duplicated_to(name, MEMBER)):
        fleet.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(document))

    def member_ready(replicas: int) -> bool:
        found = fleet.member_kubectl(MEMBER, "get", "deployment", name, "-n", ns, "-o", "json",
                                     check=False)  # fmt: skip
        if found.returncode != 0:
            return False
        deployment = json.loads(found.stdout)
        pods = get_json(fleet, "pods", "-n", ns, "-l", f"app={name}", member=MEMBER)["items"]
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        return (
            deployment["spec"]["replicas"] == replicas
            and deployment["status"].get("readyReplicas") == replicas
            and len(running) == replicas
        )

    def template_ready(replicas: int) -> bool:
        status = get_json(fleet, "deployment", name, "-n", ns)["status"]
        return bool(status.get("readyReplicas") == replicas)

    assert poll(lambda: member_ready(2), 90), f"{name} never ran 2 replicas in {MEMBER}"
    for other in sorted(set(fleet.members) - {MEMBER}):
        found = fleet.member_kubectl(other, "get", "deployment", name, "-n", ns, check=False)
        assert found.returncode != 0 and "NotFound" in found.stderr, f"{name} reached {other}"
    pods = get_json(fleet, "pods", "-n", ns, "-l", f"app={name}", member=MEMBER)["items"]
    nodes = {n["metadata"]["name"]: n for n in get_json(fleet, "nodes", member=MEMBER)["items"]}
    assert {nodes[p["spec"]["nodeName"]]["metadata"]["labels"][REGION_LABEL] for p in pods} == {
        region
    }
    assert poll(lambda: template_ready(2), 60), "Karmada never aggregated 2 ready replicas"

    fleet.kubectl("scale", "deployment", name, "-n", ns, "--replicas=3")
    assert poll(lambda: member_ready(3), 90), f"{MEMBER} never followed the template to 3"
    assert poll(lambda: template_ready(3), 60), "Karmada never aggregated 3 ready replicas"

    fleet.kubectl("delete", "deployment", name, "-n", ns)

    def gone() -> bool:
        found = fleet.member_kubectl(MEMBER, "get", "deployment", name, "-n", ns, check=False)
        return found.returncode != 0 and "NotFound" in found.stderr

    assert poll(gone, 90), f"deleting the template left {name} in {MEMBER}"


def test_the_cluster_proxy_lists_each_members_nodes(fleet: LocalFleet) -> None:
    for member, spec in fleet.member_specs.items():
        proxy = f"/apis/cluster.karmada.io/v1alpha1/clusters/{member}/proxy"
        raw = fleet.kubectl("get", "--raw", f"{proxy}/api/v1/nodes").stdout
        nodes = json.loads(raw)["items"]
        expected = {n["metadata"]["name"] for n in load_topology(spec.topology).node_manifests()}
        assert {n["metadata"]["name"] for n in nodes} == expected
        assert {n["metadata"]["labels"][REGION_LABEL] for n in nodes} == set(
            load_topology(spec.topology).regions
        )


def test_karmada_listens_on_loopback_only(fleet: LocalFleet) -> None:
    pids = set(fleet.processes())
    assert sorted(set(fleet.processes().values())) == sorted(CONTROL_PLANE_PROGRAMS)
    addresses = listening_addresses(pids)
    assert addresses, "Karmada's processes listen nowhere"
    beyond = {a for a in addresses if not is_loopback(a)}
    assert not beyond, f"listening beyond loopback: {beyond}"


def proxy_nodes(fleet: LocalFleet, member: str) -> set[str] | None:
    """The member's node names through Karmada's cluster proxy, or None when that fails."""
    path = f"/apis/cluster.karmada.io/v1alpha1/clusters/{member}/proxy/api/v1/nodes"
    found = fleet.kubectl("get", "--raw", path, check=False)
    if found.returncode != 0:
        return None
    return {n["metadata"]["name"] for n in json.loads(found.stdout)["items"]}


def test_up_again_restarts_nothing(fleet: LocalFleet) -> None:
    before = fleet.all_processes()
    assert set(CONTROL_PLANE_PROGRAMS) <= set(before.values())
    assert "kwok-controller" in before.values()
    fleet.up()
    assert fleet.all_processes() == before, "a second up() restarted processes"
