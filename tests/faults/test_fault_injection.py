"""Faults injected around a running operator on the local cluster: the operator killed with -9 in
the middle of a large apply, the API server and etcd killed and held down, a region's GPU nodes
cordoned and deleted, a GPU node flapping, signal feeds that hang or answer garbage, errors or old
values, and Prometheus down.

Every test checks three things: nothing is lost, duplicated or orphaned (`audit`), the cluster
converges within a stated time (measured, and printed as one JSON line per fault so `pytest -s`
collects the figures of docs/reliability.md), and the conditions tell the truth meanwhile.
Everything listens on and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from scripted_server import Answer, ScriptedServer, json_answer, text_answer

from gridplace_e2e.cluster.handle import ClusterHandle
from gridplace_e2e.cluster.local import poll
from gridplace_e2e.operator_run import OperatorProcess, condition, free_port, get_json, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.faults]

H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-40GB"
L40S = "NVIDIA-L40S"
ZONES = ("us-east", "us-west", "eu-central", "ap-northeast", "ap-southeast", "au-southeast")
MANAGED = "app.kubernetes.io/managed-by=gridplace"
REGION_LABEL = "topology.kubernetes.io/region"


# -- running the operator ---------------------------------------------------------------------


@contextmanager
def operator_running(cluster: ClusterHandle, log: Path, *args: str) -> Iterator[OperatorProcess]:
    """`gridplace run` with a Lease of its own (a holder killed here delays no other test),
    stopped however the test ends."""
    lease = f"faults-{uuid.uuid4().hex[:8]}"
    process = OperatorProcess(cluster.kubeconfig, log, extra_args=[f"--lease-name={lease}", *args])
    try:
        process.start()
        yield process
    finally:
        process.stop()


def leading(operator: OperatorProcess) -> bool:
    try:
        return operator.counter("gridplace_leader") == 1
    except OSError:  # its metrics endpoint is not up yet
        return False


def lead(operator: OperatorProcess, timeout: float = 40) -> None:
    """Waits until the operator holds its Lease (a successor of a killed holder waits for the
    Lease to expire: about 10 s)."""
    wait_for(lambda: leading(operator), timeout, "the operator to take its Lease", operator)


def writes_or_quiet(
    operator: OperatorProcess, due: float, quiet_s: float = 5.0, **labels: str
) -> float:
    """Waits until the operator has made `due` API writes (of `labels`), or made none for
    `quiet_s` (a restarted process may have less than that left to do); returns them then."""
    last, last_change = operator.writes(**labels), time.monotonic()
    while last < due and time.monotonic() - last_change < quiet_s:
        time.sleep(0.01)
        now = operator.writes(**labels)
        if now != last:
            last, last_change = now, time.monotonic()
    return last


def kill_9(operator: OperatorProcess) -> None:
    assert operator.process is not None
    operator.process.kill()
    operator.process.wait(10)
    operator.process = None


def report(fault: str, **measures: Any) -> None:
    """One JSON line per fault with what was measured (collected with `pytest -s`)."""
    print(json.dumps({"fault": fault, **measures}))


def since(start: float) -> float:
    return round(time.monotonic() - start, 1)


def measure(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    operator: OperatorProcess,
    show: Callable[[], object] = lambda: "",
) -> float:
    """Seconds until `predicate` holds; after `timeout` the test fails with what `show` returns
    and the operator's last log lines."""
    start = time.monotonic()
    if not poll(predicate, timeout):
        raise AssertionError(
            f"timed out after {timeout:.0f}s waiting for {what}\n{show()}\n{operator.tail()}"
        )
    return since(start)


# -- objects ----------------------------------------------------------------------------------


def inference_deployment(
    name: str,
    *,
    zone: str = "us-east",
    gpu_types: Collection[str] = (H100, L40S),
    allowed: Collection[str] = (),
    moves_per_hour: int | None = None,
) -> dict[str, Any]:
    placement: dict[str, Any] = {}
    if allowed:
        placement["allowedRegions"] = list(allowed)
    if moves_per_hour is not None:
        placement["churn"] = {"maxMovesPerHour": moves_per_hour}
    spec: dict[str, Any] = {
        "model": {"name": "meta-llama/Meta-Llama-3.1-8B-Instruct", "gpuTypes": list(gpu_types)},
        "slo": {"p95TimeToFirstTokenSeconds": 1.0},
        "scaling": {"minReplicas": 1, "maxReplicas": 4},
        "demand": {"static": [{"zone": zone, "requestsPerSecond": 1}]},
    }
    if placement:
        spec["placement"] = placement
    return {
        "apiVersion": "gridplace.dev/v1alpha1",
        "kind": "InferenceDeployment",
        "metadata": {"name": name},
        "spec": spec,
    }


def apply(cluster: ClusterHandle, namespace: str, *objects: dict[str, Any]) -> None:
    document = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(document))


def ideps(cluster: ClusterHandle, namespace: str) -> dict[str, dict[str, Any]]:
    items = get_json(cluster, "inferencedeployments", "-n", namespace)["items"]
    return {obj["metadata"]["name"]: obj for obj in items}


def placement(obj: dict[str, Any]) -> dict[tuple[str, str], int]:
    rows = (obj.get("status") or {}).get("placement") or []
    return {(p["region"], p["gpuType"]): p["desiredReplicas"] for p in rows}


def regions_of(obj: dict[str, Any]) -> set[str]:
    return {region for (region, _), replicas in placement(obj).items() if replicas > 0}


def status_of(obj: dict[str, Any], type_: str) -> tuple[str, str]:
    found = condition(obj, type_)
    return found.get("status", ""), found.get("reason", "")


def managed(cluster: ClusterHandle, kind: str, namespace: str) -> list[dict[str, Any]]:
    return list(get_json(cluster, kind, "-n", namespace, "-l", MANAGED)["items"])


def audit(cluster: ClusterHandle, namespace: str, applied: Collection[str]) -> list[str]:
    """What is wrong with gridplace's objects in `namespace`, as sentences (empty: nothing):

    - every InferenceDeployment applied still exists, and its status is of its current
      generation;
    - every Deployment and Service labelled managed-by=gridplace has exactly one controller
      owner reference, to an InferenceDeployment that exists (same name and uid): none orphaned;
    - every Deployment's (region, GPU type) labels are a row of its owner's status.placement whose
      desiredReplicas equals the Deployment's spec.replicas; no two Deployments of one owner share
      a (region, GPU type) and no two Services a region: none duplicated;
    - every planned row with replicas has its Deployment: none lost.
    """
    owners = ideps(cluster, namespace)
    problems: list[str] = []
    for name in sorted(applied):
        obj = owners.get(name)
        if obj is None:
            problems.append(f"InferenceDeployment {name} is gone")
            continue
        observed = (obj.get("status") or {}).get("observedGeneration")
        if observed != obj["metadata"]["generation"]:
            problems.append(
                f"InferenceDeployment {name}: status.observedGeneration {observed},"
                f" metadata.generation {obj['metadata']['generation']}"
            )
    by_uid = {obj["metadata"]["uid"]: obj for obj in owners.values()}
    pools: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    services: dict[tuple[str, str], list[str]] = defaultdict(list)
    for kind in ("deployments", "services"):
        for child in managed(cluster, kind, namespace):
            meta = child["metadata"]
            what = f"{kind[:-1].capitalize()} {meta['name']}"
            controllers = [r for r in meta.get("ownerReferences") or [] if r.get("controller")]
            if len(controllers) != 1:
                problems.append(f"{what} has {len(controllers)} controller owner references")
                continue
            ref = controllers[0]
            owner = by_uid.get(ref.get("uid", ""))
            if (
                ref.get("kind") != "InferenceDeployment"
                or owner is None
                or owner["metadata"]["name"] != ref.get("name")
            ):
                problems.append(
                    f"{what} is orphaned: its controller {ref.get('kind')} {ref.get('name')}"
                    " does not exist"
                )
                continue
            labels = meta.get("labels") or {}
            region = labels.get("gridplace.dev/region", "")
            if kind == "services":
                services[(ref["name"], region)].append(meta["name"])
                continue
            gpu_type = labels.get("gridplace.dev/gpu-type", "")
            pools[(ref["name"], region, gpu_type)].append(meta["name"])
            planned = placement(owner).get((region, gpu_type))
            if planned != child["spec"]["replicas"]:
                problems.append(
                    f"{what} asks for {child['spec']['replicas']} replicas in"
                    f" ({region}, {gpu_type}); its owner's status.placement says {planned}"
                )
    for (owner_name, region, gpu_type), names in sorted(pools.items()):
        if len(names) > 1:
            problems.append(
                f"{owner_name}: several Deployments for ({region}, {gpu_type}): {names}"
            )
    for (owner_name, region), names in sorted(services.items()):
        if len(names) > 1:
            problems.append(f"{owner_name}: several Services for region {region!r}: {names}")
    for name in sorted(applied):
        for (region, gpu_type), replicas in placement(owners.get(name, {})).items():
            if replicas > 0 and (name, region, gpu_type) not in pools:
                problems.append(
                    f"{name}: {replicas} replicas planned in ({region}, {gpu_type})"
                    " have no Deployment"
                )
    return problems


def all_ready(cluster: ClusterHandle, namespace: str, names: Collection[str]) -> bool:
    found = ideps(cluster, namespace)
    return all(status_of(found.get(n, {}), "Ready")[0] == "True" for n in names)


def converged(cluster: ClusterHandle, namespace: str, names: Collection[str]) -> bool:
    return all_ready(cluster, namespace, names) and not audit(cluster, namespace, names)


def pending_pods(cluster: ClusterHandle, namespace: str) -> list[str]:
    pods = get_json(cluster, "pods", "-n", namespace)["items"]
    return [p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Pending"]


def replaced_events(cluster: ClusterHandle, namespace: str, name: str) -> list[str]:
    events = get_json(cluster, "events", "-n", namespace)["items"]
    return [
        e.get("message", "")
        for e in events
        if e["involvedObject"].get("name") == name and e.get("reason") == "Replaced"
    ]


def returns_to(replaced: str, region: str) -> bool:
    """Whether a Replaced Event's `placement BEFORE -> AFTER.` moves replicas into `region`."""
    found = re.match(r"placement (\S+) -> (\S+?)\.", replaced)
    if found is None:
        return False
    before, after = found.groups()
    return f"{region}=" in after and f"{region}=" not in before


def snapshot(cluster: ClusterHandle, namespace: str) -> str:
    """What a failed wait shows: the InferenceDeployments' conditions and plans, the children,
    the pods that are not running and the nodes that are not ready or not schedulable."""
    found: dict[str, Any] = {"audit": audit(cluster, namespace, [])}
    for name, obj in ideps(cluster, namespace).items():
        found[name] = {
            "generation": [
                obj["metadata"]["generation"],
                (obj.get("status") or {}).get("observedGeneration"),
            ],
            "placement": {f"{r}/{g}": n for (r, g), n in placement(obj).items()},
            "conditions": [
                [c["type"], c["status"], c["reason"], c.get("message", "")[:160]]
                for c in (obj.get("status") or {}).get("conditions") or []
            ],
        }
    found["deployments"] = {
        d["metadata"]["name"]: [d["spec"]["replicas"], d.get("status", {}).get("readyReplicas", 0)]
        for d in managed(cluster, "deployments", namespace)
    }
    pods = get_json(cluster, "pods", "-n", namespace)["items"]
    found["pods not running"] = {
        p["metadata"]["name"]: p["status"].get("phase")
        for p in pods
        if p["status"].get("phase") != "Running"
    }
    nodes = get_json(cluster, "nodes")["items"]
    found["nodes unschedulable or not ready"] = [
        n["metadata"]["name"]
        for n in nodes
        if n["spec"].get("unschedulable")
        or not any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in n.get("status", {}).get("conditions") or []
        )
    ]
    return json.dumps(found, indent=1)


# -- 1. the operator killed with -9 during a large apply ----------------------------------------

MODELS_AT_ONCE = 36


def test_operator_killed_at_random_points_of_a_large_apply(
    cluster: ClusterHandle, namespace: str, regions: None, tmp_path: Path
) -> None:
    rng = random.Random(1729)
    # Each kill strikes once the running process has made a random number of API writes: a
    # point inside the apply however fast or busy the machine is (a delay in seconds is not).
    # The first counts Deployments, so that it falls among the children being created.
    kill_after_writes = [rng.randint(4, 24), rng.randint(1, 60), rng.randint(1, 60)]
    names = [f"model-{i:02d}" for i in range(MODELS_AT_ONCE)]
    objects = [inference_deployment(n, zone=ZONES[i % len(ZONES)]) for i, n in enumerate(names)]
    kills: list[dict[str, Any]] = []
    show = partial(snapshot, cluster, namespace)
    with operator_running(cluster, tmp_path / "operator.log") as operator:
        lead(operator)
        applied = time.monotonic()
        apply(cluster, namespace, *objects)
        for i, writes_due in enumerate(kill_after_writes):
            if i == 0:  # the first process has all of the apply ahead of it
                writes_or_quiet(operator, writes_due, quiet_s=120, kind="Deployment")
                writes = operator.writes()
            else:
                writes = writes_or_quiet(operator, writes_due)
            kill_9(operator)
            kills.append(
                {
                    "at_s": since(applied),
                    "writes_before": writes,
                    "children": len(managed(cluster, "deployments", namespace)),
                }
            )
            operator.start()
            lead(operator)  # the Lease of the killed holder expires first
        restarted = time.monotonic()
        measure(
            lambda: converged(cluster, namespace, names),
            240,
            f"all {len(names)} InferenceDeployments Ready with a clean audit",
            operator,
            show,
        )
        after_restart, after_apply = since(restarted), since(applied)
        assert audit(cluster, namespace, names) == []
        assert pending_pods(cluster, namespace) == []
    # The first kill fell inside the apply: some children existed, not all.
    assert 0 < kills[0]["children"] < len(names), kills
    report(
        "operator kill -9 x3 during an apply of 36 InferenceDeployments",
        kills=kills,
        converged_after_last_restart_s=after_restart,
        converged_after_apply_s=after_apply,
    )
    assert after_restart <= 60


# -- 2. kube-apiserver and etcd killed and held down --------------------------------------------

HOLD_DOWN_S = 25


def untruthful_ready(cluster: ClusterHandle, namespace: str) -> list[str]:
    """InferenceDeployments whose status is of their current generation and says Ready=True
    while a Deployment of theirs has fewer ready replicas than it asks for."""
    found = ideps(cluster, namespace)
    lies = []
    for child in managed(cluster, "deployments", namespace):
        owner = found.get(child["metadata"]["labels"]["gridplace.dev/inference-deployment"], {})
        ready, asked = child.get("status", {}).get("readyReplicas", 0), child["spec"]["replicas"]
        current = (owner.get("status") or {}).get("observedGeneration") == owner.get(
            "metadata", {}
        ).get("generation")
        if ready < asked and current and status_of(owner, "Ready")[0] == "True":
            lies.append(
                f"{owner['metadata']['name']} (generation {owner['metadata']['generation']})"
                f" says Ready=True ({condition(owner, 'Ready').get('message')}) while"
                f" {child['metadata']['name']} has {ready} of {asked} replicas ready"
            )
    return lies


def release_node_leases(cluster: ClusterHandle) -> None:
    """`start_control_plane` restarts the kwok controller too, and the new one cannot renew the
    node Leases its predecessor held until they expire (kwok's lease duration is 200 s): until
    then no new pod starts. Deleting them lets it create its own at once, so the pods of this test
    and of the tests after it run again within a minute."""
    cluster.kubectl("delete", "leases", "-n", "kube-node-lease", "--all", "--wait=false")


def test_api_server_and_etcd_killed_held_down_and_restarted(
    cluster: ClusterHandle, namespace: str, regions: None, tmp_path: Path
) -> None:
    local = cluster.local
    assert local is not None, "this fault needs the local cluster (it kills its processes)"
    model = inference_deployment("survivor", zone="eu-central")
    show = partial(snapshot, cluster, namespace)
    with operator_running(cluster, tmp_path / "operator.log") as operator:
        lead(operator)
        apply(cluster, namespace, model)
        measure(lambda: converged(cluster, namespace, ["survivor"]), 120, "Ready", operator, show)
        assert operator.process is not None
        pid = operator.process.pid
        victims = {p: n for p, n in local.processes().items() if n in {"kube-apiserver", "etcd"}}
        assert sorted(victims.values()) == ["etcd", "kube-apiserver"], local.processes()
        for victim in victims:
            os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        assert poll(lambda: not set(victims) & set(local.processes()), 10)
        # Held down: the operator must ride it out, not exit.
        exited = poll(
            lambda: operator.process is None or operator.process.poll() is not None, HOLD_DOWN_S
        )
        assert not exited, f"the operator exited while the API server was down\n{operator.tail()}"
        held = since(killed)
        local.start_control_plane()
        restart_s = round(since(killed) - held, 1)
        release_node_leases(cluster)
        # A change made after the restart reaches the operator through the watch it resumed.
        model["spec"]["scaling"]["minReplicas"] = 2
        changed = time.monotonic()
        apply(cluster, namespace, model)
        lies: list[str] = []

        def acted_on() -> bool:
            lies.extend(untruthful_ready(cluster, namespace))
            obj = ideps(cluster, namespace)["survivor"]
            replicas = [d["spec"]["replicas"] for d in managed(cluster, "deployments", namespace)]
            return (
                obj["status"].get("observedGeneration") == obj["metadata"]["generation"] == 2
                and sum(placement(obj).values()) == sum(replicas) == 2
                and not audit(cluster, namespace, ["survivor"])
            )

        acted_s = measure(acted_on, 60, "the spec change to be acted on", operator, show)

        def ready_again() -> bool:
            lies.extend(untruthful_ready(cluster, namespace))
            return converged(cluster, namespace, ["survivor"])

        ready_s = measure(ready_again, 120, "Ready with both replicas", operator, show)
        assert lies == []
        assert operator.process is not None and operator.process.pid == pid, "not restarted"
        assert leading(operator)
        assert audit(cluster, namespace, ["survivor"]) == []
        assert pending_pods(cluster, namespace) == []
    report(
        "kube-apiserver and etcd kill -9, held down, control plane restarted",
        held_down_s=held,
        control_plane_restart_s=restart_s,
        spec_change_acted_on_s=acted_s,
        ready_after_change_s=round(since(changed), 1),
        ready_wait_s=ready_s,
    )
    assert acted_s <= 30


# -- 3. a region's GPU nodes cordoned, then deleted ---------------------------------------------

LOST_REGION = "us-west-1"


def test_a_regions_gpu_nodes_cordoned_then_deleted(
    cluster: ClusterHandle, namespace: str, regions: None, tmp_path: Path
) -> None:
    # `mover` may leave the region; `pinned` may not, so losing the region leaves it short.
    mover = inference_deployment(
        "mover", zone="us-west", gpu_types=(A100, L40S), allowed=(LOST_REGION, "us-east-1")
    )
    pinned = inference_deployment(
        "pinned", zone="us-west", gpu_types=(A100, L40S), allowed=(LOST_REGION,)
    )
    names = ["mover", "pinned"]
    selector = f"{REGION_LABEL}={LOST_REGION}"
    show = partial(snapshot, cluster, namespace)
    try:
        with operator_running(cluster, tmp_path / "operator.log") as operator:
            lead(operator)
            apply(cluster, namespace, mover, pinned)
            measure(lambda: converged(cluster, namespace, names), 120, "Ready", operator, show)
            found = ideps(cluster, namespace)
            assert regions_of(found["mover"]) == regions_of(found["pinned"]) == {LOST_REGION}

            cluster.kubectl("cordon", "-l", selector)
            untruthful: list[str] = []

            def moved_and_reported() -> bool:
                found = ideps(cluster, namespace)
                out, short = found["mover"], found["pinned"]
                if status_of(out, "Ready")[0] == "True" and LOST_REGION not in regions_of(out):
                    # Ready=True must mean the replicas where the plan put them are ready.
                    for child in managed(cluster, "deployments", namespace):
                        labels = child["metadata"]["labels"]
                        if labels["gridplace.dev/inference-deployment"] != "mover":
                            continue
                        ready = child.get("status", {}).get("readyReplicas", 0)
                        if labels["gridplace.dev/region"] != LOST_REGION and ready < 1:
                            untruthful.append(
                                f"mover Ready=True while {child['metadata']['name']}"
                                " has no ready replica"
                            )
                return (
                    regions_of(out) == {"us-east-1"}
                    and status_of(out, "Ready") == ("True", "Available")
                    and status_of(short, "Placed")[0] == "False"
                    and status_of(short, "Ready")[0] == "False"
                    and not audit(cluster, namespace, names)
                )

            cordon_s = measure(moved_and_reported, 120, "mover to leave the region", operator, show)
            assert untruthful == []
            found = ideps(cluster, namespace)
            placed = condition(found["pinned"], "Placed")
            assert placed["reason"] in {"InsufficientCapacity", "NoEligibleRegion"}, placed
            assert placed["message"], placed
            assert status_of(found["pinned"], "Ready")[1] == placed["reason"]
            pinned_when_cordoned = {
                "placed": f"{placed['reason']}: {placed['message']}",
                "placement": {f"{r}/{g}": n for (r, g), n in placement(found["pinned"]).items()},
            }

            replaced = len(replaced_events(cluster, namespace, "mover"))
            cluster.kubectl("delete", "node", "-l", selector, "--wait=false")

            def region_reports_its_loss() -> bool:
                region = get_json(cluster, "region", LOST_REGION)
                found = ideps(cluster, namespace)
                return (
                    not cluster.kubectl("get", "nodes", "-l", selector, "-o", "name").stdout
                    and status_of(region, "Ready") == ("False", "NoGPUs")
                    and regions_of(found["mover"]) == {"us-east-1"}
                    and status_of(found["pinned"], "Placed")[0] == "False"
                    and not audit(cluster, namespace, names)
                )

            delete_s = measure(
                region_reports_its_loss, 120, "the Region to report no GPUs", operator, show
            )
            # Deleting nodes that were already out of the plan moves nothing.
            assert len(replaced_events(cluster, namespace, "mover")) == replaced

            local = cluster.local
            assert local is not None
            restoring = time.monotonic()
            local.apply_topology(cluster.topology)
            measure(
                lambda: (
                    status_of(ideps(cluster, namespace)["pinned"], "Placed") == ("True", "Planned")
                    and converged(cluster, namespace, names)
                ),
                120,
                "pinned to be placed again once the nodes are back",
                operator,
                show,
            )
            back_s = since(restoring)
            assert pending_pods(cluster, namespace) == []
    finally:
        # Leave the cluster as it was found: every node of the topology, schedulable.
        cluster.kubectl("uncordon", "-l", selector, check=False)
        if cluster.local is not None:
            cluster.local.apply_topology(cluster.topology)
    report(
        f"GPU nodes of {LOST_REGION} cordoned, then deleted, then restored",
        cordon_converged_s=cordon_s,
        delete_converged_s=delete_s,
        restore_converged_s=back_s,
        pinned_when_cordoned=pinned_when_cordoned,
    )
    assert cordon_s <= 60 and delete_s <= 60 and back_s <= 90


# -- 4. a GPU node flapping ---------------------------------------------------------------------

FLAPS = 8
FLAP_EVERY_S = 2.0
MOVES_PER_HOUR = 2


def test_a_gpu_node_flapping(
    cluster: ClusterHandle, namespace: str, regions: None, tmp_path: Path
) -> None:
    # The model's only pool in its home region is one node: cordoning it takes the pool away.
    model = inference_deployment(
        "flapper",
        zone="us-west",
        gpu_types=(L40S,),
        allowed=("us-west-1", "us-east-1"),
        moves_per_hour=MOVES_PER_HOUR,
    )
    node = ""
    show = partial(snapshot, cluster, namespace)
    try:
        with operator_running(cluster, tmp_path / "operator.log") as operator:
            lead(operator)
            apply(cluster, namespace, model)
            measure(
                lambda: converged(cluster, namespace, ["flapper"]), 120, "Ready", operator, show
            )
            (pod,) = get_json(cluster, "pods", "-n", namespace)["items"]
            node = pod["spec"]["nodeName"]
            pool = get_json(
                cluster, "nodes", "-l", f"{REGION_LABEL}=us-west-1,nvidia.com/gpu.product={L40S}"
            )["items"]
            assert [n["metadata"]["name"] for n in pool] == [node]
            for _ in range(FLAPS):
                cluster.kubectl("cordon", node)
                time.sleep(FLAP_EVERY_S)  # the flapping rhythm is the fault itself
                cluster.kubectl("uncordon", node)
                time.sleep(FLAP_EVERY_S)

            def settled() -> bool:
                return converged(cluster, namespace, ["flapper"]) and not pending_pods(
                    cluster, namespace
                )

            settle_s = measure(
                settled, 120, "the model to settle after the flapping", operator, show
            )
            # Settled means settled: a few more plan periods change nothing.
            before = replaced_events(cluster, namespace, "flapper")
            operator.wait_cycles(3)
            assert replaced_events(cluster, namespace, "flapper") == before
            assert pending_pods(cluster, namespace) == []
            # A cordon forces the replica away (no choice, no budget spent); going back is
            # gridplace's choice, which the budget limits.
            moves = sum(1 for m in before if returns_to(m, "us-west-1"))
    finally:
        if node:
            cluster.kubectl("uncordon", node, check=False)
    report(
        f"one GPU node cordoned/uncordoned {FLAPS} times, {FLAP_EVERY_S:g} s apart",
        settled_after_flapping_s=settle_s,
        moves=moves,
        max_moves_per_hour=MOVES_PER_HOUR,
        replaced=before,
    )
    assert moves <= MOVES_PER_HOUR, before
    for message in before:  # the plan never spent more than the budget
        used = re.search(r"churn budget: (\d+) of (\d+) moves used", message)
        assert used is None or int(used.group(1)) <= int(used.group(2)), message
    assert settle_s <= 60


# -- 5. feeds that hang, answer garbage, 500, 429 or old values ---------------------------------

FEED_TIMEOUT_S = 4  # GRIDPLACE_SIGNAL_HTTP_TIMEOUT; 3 attempts (the default) per read


@pytest.fixture
def feeds() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def feed_region(name: str, carbon: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "gridplace.dev/v1alpha1",
        "kind": "Region",
        "metadata": {"name": name},
        "spec": {
            "pue": 1.1,
            "carbonIntensity": carbon,
            "powerPrice": {"static": {"usdPerMWh": 50}},
            "rtt": [{"zone": "us-east", "ms": 5}],
        },
    }


def csv_source(url: str) -> dict[str, Any]:
    return {
        "file": {"url": url, "valueColumn": "ci"},
        "maxAgeSeconds": 3600,
        "fallback": {"gCO2PerKWh": 111},
    }


def test_feeds_that_hang_answer_garbage_errors_or_old_values(
    cluster: ClusterHandle,
    namespace: str,
    regions: None,
    feeds: ScriptedServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    suffix = uuid.uuid4().hex[:6]
    now = datetime.now(UTC).replace(microsecond=0)
    old = now - timedelta(hours=5)
    feeds.script("/hang.csv", Answer(200, b"ci\n1\n", "text/csv", delay_seconds=600))
    # A captive portal's page where the CSV should be.
    feeds.script("/garbage.csv", Answer(200, b"<html><body>Sign in</body></html>", "text/html"))
    feeds.script("/500.csv", text_answer("boom", status=500))
    feeds.script(
        "/429.csv", Answer(429, b"slow down", "text/plain", headers=(("Retry-After", "120"),))
    )
    # Electricity Maps (its base URL points here) whose latest value is 5 hours old, no forecast.
    feeds.script(
        "/v3/carbon-intensity/latest",
        json_answer(
            {"zone": "DE", "carbonIntensity": 321, "datetime": f"{old:%Y-%m-%dT%H:%M:%S}.000Z"}
        ),
    )
    feeds.script("/v3/carbon-intensity/forecast", json_answer({"error": "no"}, status=404))
    cluster.kubectl(
        "create", "secret", "generic", "emaps", "-n", namespace, "--from-literal=token=t0k3n"
    )
    cases = {
        f"feed-hang-{suffix}": csv_source(f"{feeds.url}/hang.csv"),
        f"feed-garbage-{suffix}": csv_source(f"{feeds.url}/garbage.csv"),
        f"feed-500-{suffix}": csv_source(f"{feeds.url}/500.csv"),
        f"feed-429-{suffix}": csv_source(f"{feeds.url}/429.csv"),
        f"feed-stale-{suffix}": {  # no fallback: the old value stays in use, and says so
            "electricityMaps": {"zone": "DE", "apiKeySecretRef": {"name": "emaps", "key": "token"}},
            "maxAgeSeconds": 3600,
        },
    }
    # What each Region must say (reason, words of the message), once its source has answered.
    expected = {
        f"feed-hang-{suffix}": ("UsingFallback", f"no answer within {FEED_TIMEOUT_S}s"),
        f"feed-garbage-{suffix}": ("UsingFallback", "not found in the header"),
        f"feed-500-{suffix}": ("UsingFallback", "HTTP 500"),
        f"feed-429-{suffix}": ("UsingFallback", "HTTP 429"),
        f"feed-stale-{suffix}": ("Stale", "s old"),
    }
    monkeypatch.setenv("GRIDPLACE_NAMESPACE", namespace)
    monkeypatch.setenv("GRIDPLACE_ELECTRICITY_MAPS_URL", f"{feeds.url}/v3")
    monkeypatch.setenv("GRIDPLACE_SIGNAL_HTTP_TIMEOUT", str(FEED_TIMEOUT_S))
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [feed_region(n, source) for n, source in cases.items()],
            }
        ),
    )
    try:
        with operator_running(cluster, tmp_path / "operator.log") as operator:
            started = time.monotonic()
            lead(operator)
            # Planning goes on while the hanging feed holds its first read.
            apply(cluster, namespace, inference_deployment("newcomer", zone="eu-central"))
            placed_s = measure(
                lambda: converged(cluster, namespace, ["newcomer"]),
                60,
                "the new InferenceDeployment to be placed",
                operator,
            )
            # Meanwhile the hanging Region plans with its fallback and says why.
            hang = condition(get_json(cluster, "region", f"feed-hang-{suffix}"), "SignalsHealthy")
            if since(started) < FEED_TIMEOUT_S * 3:  # its first read cannot have ended yet
                assert (hang.get("status"), hang.get("reason")) == ("False", "UsingFallback"), hang
                assert "no answer from the source yet" in hang.get("message", ""), hang
            told: dict[str, float] = {}

            def health(name: str) -> tuple[str, str, str]:
                found = condition(get_json(cluster, "region", name), "SignalsHealthy")
                return found.get("status", ""), found.get("reason", ""), found.get("message", "")

            def all_told() -> bool:
                for name, (reason, words) in expected.items():
                    status, got, message = health(name)
                    if name not in told and (status, got) == ("False", reason) and words in message:
                        told[name] = since(started)
                return len(told) == len(expected)

            if not poll(all_told, 90):
                states = {name: health(name) for name in expected}
                raise AssertionError(f"not every feed Region reports its fault: {states}")
            assert audit(cluster, namespace, ["newcomer"]) == []
            signals = get_json(cluster, "region", f"feed-stale-{suffix}")["status"]["signals"]
            assert (signals["carbonIntensity"]["value"], signals["carbonIntensity"]["stale"]) == (
                321,
                True,
            )
            # Status names what failed and where, never the key or what a feed answered.
            shown = json.dumps(get_json(cluster, "regions")["items"])
            for secret in ("t0k3n", "Sign in", "boom", "slow down"):
                assert secret not in shown, secret
    finally:
        cluster.kubectl("delete", "region", *cases, "--wait=false", check=False)
    report(
        "signal feeds: hang, garbage, HTTP 500, HTTP 429 with Retry-After, 5 h old value",
        new_model_placed_s=placed_s,
        condition_after_operator_start_s={n.split("-")[1]: t for n, t in told.items()},
    )
    assert placed_s <= 15


def test_a_feed_answering_429_is_not_asked_again_before_retry_after(
    cluster: ClusterHandle,
    crds: None,
    feeds: ScriptedServer,
    tmp_path: Path,
) -> None:
    retry_after = 120
    feeds.script(
        "/429.csv",
        Answer(429, b"slow down", "text/plain", headers=(("Retry-After", str(retry_after)),)),
    )
    name = f"feed-429-{uuid.uuid4().hex[:6]}"
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps(feed_region(name, csv_source(f"{feeds.url}/429.csv")))
    )
    try:
        with operator_running(cluster, tmp_path / "operator.log") as operator:
            wait_for(
                lambda: (
                    "HTTP 429"
                    in condition(get_json(cluster, "region", name), "SignalsHealthy").get(
                        "message", ""
                    )
                ),
                60,
                "the Region to report HTTP 429",
                operator,
            )
            operator.wait_cycles(3)
            asked = feeds.count("/429.csv")
    finally:
        cluster.kubectl("delete", "region", name, "--wait=false", check=False)
    report("signal feed: HTTP 429 with Retry-After", requests_within_retry_after=asked)
    assert asked == 1, (
        f"the feed answered 429 with Retry-After: {retry_after} and was asked {asked} times"
        " within that time"
    )


# -- 6. Prometheus down -------------------------------------------------------------------------


def test_prometheus_down(
    cluster: ClusterHandle, namespace: str, regions: None, tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with operator_running(
        cluster, tmp_path / "operator.log", f"--prometheus-url={closed}", "--autoscale-period=2"
    ) as operator:
        lead(operator)
        applied = time.monotonic()
        apply(cluster, namespace, inference_deployment("blind", zone="us-east"))
        placed_s = measure(
            lambda: converged(cluster, namespace, ["blind"]),
            90,
            "placement without Prometheus",
            operator,
        )
        operator.wait_cycles(2)  # the autoscaler has had its periods with Prometheus down
        obj = ideps(cluster, namespace)["blind"]
        scaled = condition(obj, "Scaled")
        assert status_of(obj, "Placed") == ("True", "Planned")
        assert audit(cluster, namespace, ["blind"]) == []
    report(
        "Prometheus down (closed port)",
        placed_s=placed_s,
        converged_s=since(applied),
        scaled=f"{scaled.get('status')}/{scaled.get('reason')}",
    )
    assert (scaled.get("status"), scaled.get("reason")) == ("Unknown", "MetricsUnavailable"), scaled
    assert scaled.get("message"), scaled
    assert placed_s <= 30
