"""GPU capacity per (region, GPU type) and per node from Nodes and the Pods gridplace does not own.

Pure functions over plain Kubernetes objects (dicts as the API returns them), so they are tested
without a cluster and reused by the planner and the CLI.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gridplace_operator import labels
from gridplace_operator.api.conditions import Reason
from gridplace_placement.packing import take

Obj = Mapping[str, Any]
# The toleration every gridplace pod carries (children.py); spec.pod.tolerations add to it.
GPU_TOLERATION: Mapping[str, str] = {
    "key": labels.GPU_RESOURCE,
    "operator": "Exists",
    "effect": "NoSchedule",
}
# Taint effects that keep a pod off a node; PreferNoSchedule only scores it lower.
BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


@dataclass(frozen=True)
class Taint:
    key: str
    value: str | None
    effect: str


@dataclass(frozen=True)
class NodeGpus:
    """One GPU node: what it has, what pods of other owners take, the taints that block pods."""

    name: str
    region: str
    gpu_type: str
    allocatable: int
    used_by_others: int = 0
    taints: tuple[Taint, ...] = ()

    @property
    def free(self) -> int:
        """GPUs gridplace may plan with on this node (its own pods' GPUs count as free)."""
        return max(0, self.allocatable - self.used_by_others)


@dataclass(frozen=True)
class GpuPool:
    region: str
    gpu_type: str
    allocatable: int  # GPUs on schedulable, ready nodes
    used_by_others: int  # requested by pods gridplace does not own
    nodes: int = 0

    @property
    def available(self) -> int:
        """GPUs gridplace may plan with (its own pods' GPUs count as available)."""
        return max(0, self.allocatable - self.used_by_others)


@dataclass(frozen=True)
class Unavailable:
    """Why a region cannot hold replicas now (the reason of its Ready condition)."""

    reason: Reason
    message: str


@dataclass(frozen=True)
class Inventory:
    pools: dict[tuple[str, str], GpuPool] = field(default_factory=dict)
    nodes_by_region: dict[str, int] = field(default_factory=dict)
    # region -> {other region: GPU nodes its selector matches that count for the other region}
    ceded: dict[str, dict[str, int]] = field(default_factory=dict)
    nodes: tuple[NodeGpus, ...] = ()  # every node of the pools, by name
    # Regions whose nodes could not be counted (a member cluster lost or unknown): no GPUs.
    unavailable: dict[str, Unavailable] = field(default_factory=dict)

    def available(self, region: str, gpu_type: str) -> int:
        pool = self.pools.get((region, gpu_type))
        return pool.available if pool else 0

    def gpu_types(self, region: str) -> dict[str, int]:
        return {g: p.available for (r, g), p in sorted(self.pools.items()) if r == region}

    def has_nodes(self, region: str, gpu_type: str) -> bool:
        """Whether the pool's nodes are known one by one (an inventory built from Nodes)."""
        return any((n.region, n.gpu_type) == (region, gpu_type) for n in self.nodes)

    def node_gpus(
        self, region: str, gpu_type: str, pods: Iterable[Sequence[Mapping[str, Any]]] = ()
    ) -> tuple[int, ...]:
        """Free GPUs of each node of the pool that every one of `pods` (each given by the
        tolerations it adds to gridplace's GPU toleration) may land on, most free first. A node
        whose taint some pod does not tolerate is no capacity for the plan they share: that
        pod's replicas would sit Pending there."""
        tolerated = [(GPU_TOLERATION, *extra) for extra in pods] or [(GPU_TOLERATION,)]
        return tuple(
            sorted(
                (
                    n.free
                    for n in self.nodes
                    if (n.region, n.gpu_type) == (region, gpu_type)
                    and all(tolerates(tol, t) for tol in tolerated for t in n.taints)
                ),
                reverse=True,
            )
        )

    def minus(self, taken: Mapping[tuple[str, str], int]) -> Inventory:
        """The inventory left once `taken` GPUs per (region, GPU type) are spoken for, taken
        from the nodes with the most free first (`packing.take`): the replicas' nodes are not
        known until their pods schedule."""
        pools = {
            key: GpuPool(
                p.region, p.gpu_type, p.allocatable, p.used_by_others + taken.get(key, 0), p.nodes
            )
            for key, p in self.pools.items()
        }
        nodes = list(self.nodes)
        for (region, gpu_type), gpus in taken.items():
            mine = sorted(
                (i for i, n in enumerate(nodes) if (n.region, n.gpu_type) == (region, gpu_type)),
                key=lambda i: (-nodes[i].free, nodes[i].name),
            )
            left = take([nodes[i].free for i in mine], gpus)
            for i, free in zip(mine, left, strict=True):
                used = nodes[i].used_by_others + nodes[i].free - free
                nodes[i] = replace(nodes[i], used_by_others=used)
        return Inventory(
            pools=pools,
            nodes_by_region=dict(self.nodes_by_region),
            ceded=self.ceded,
            nodes=tuple(nodes),
            unavailable=self.unavailable,
        )


def parse_quantity(value: str | int | float | None) -> int:
    """Whole units of an extended resource such as nvidia.com/gpu ("8", 8, "8000m")."""
    if value is None:
        return 0
    text = str(value).strip()
    if text.endswith("m"):
        return int(text[:-1]) // 1000
    return int(float(text))


def node_is_schedulable(node: Obj) -> bool:
    if node.get("spec", {}).get("unschedulable"):
        return False
    conditions = node.get("status", {}).get("conditions") or []
    ready = [c for c in conditions if c.get("type") == "Ready"]
    # A node that reports no Ready condition yet is not trusted with replicas.
    return bool(ready) and ready[0].get("status") == "True"


def node_taints(node: Obj) -> tuple[Taint, ...]:
    """The taints that keep pods off the node (NoSchedule, NoExecute)."""
    return tuple(
        Taint(str(t.get("key", "")), t.get("value"), str(t.get("effect")))
        for t in node.get("spec", {}).get("taints") or []
        if t.get("effect") in BLOCKING_EFFECTS
    )


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Taint) -> bool:
    """Whether any toleration matches the taint, as the scheduler matches them: the same effect
    (or none given), and the same key with Exists or the same value (an Exists without a key
    matches every taint)."""
    for t in tolerations:
        if t.get("effect") not in (None, "", taint.effect):
            continue
        operator = t.get("operator") or "Equal"
        key = t.get("key")
        if not key:
            if operator == "Exists":
                return True
            continue
        if key != taint.key:
            continue
        if operator == "Exists" or (t.get("value") or "") == (taint.value or ""):
            return True
    return False


def matches(selector: Mapping[str, str], node_labels: Mapping[str, str]) -> bool:
    return all(node_labels.get(k) == v for k, v in selector.items())


def regions_of(node: Obj, region_selectors: Mapping[str, Mapping[str, str]]) -> list[str]:
    """Every region whose node selector matches the node, by name. The node counts for the
    first one only (a GPU is never planned twice); the others are told they ceded it."""
    node_labels = node.get("metadata", {}).get("labels") or {}
    return [r for r in sorted(region_selectors) if matches(region_selectors[r], node_labels)]


def pod_gpu_request(pod: Obj) -> int:
    total = 0
    for container in pod.get("spec", {}).get("containers") or []:
        resources = container.get("resources") or {}
        requested = (resources.get("requests") or {}).get(labels.GPU_RESOURCE)
        limited = (resources.get("limits") or {}).get(labels.GPU_RESOURCE)
        total += parse_quantity(requested if requested is not None else limited)
    return total


def is_owned_by_gridplace(pod: Obj) -> bool:
    pod_labels = pod.get("metadata", {}).get("labels") or {}
    return pod_labels.get(labels.MANAGED_BY) == labels.MANAGED_BY_VALUE


def inventory_view(pod: Obj) -> dict[str, Any]:
    """The parts of a Pod the inventory reads; the rest is dropped as soon as it is listed."""
    spec = pod.get("spec") or {}
    return {
        "metadata": {"labels": (pod.get("metadata") or {}).get("labels") or {}},
        "spec": {
            "nodeName": spec.get("nodeName"),
            "containers": [
                {"resources": c.get("resources") or {}} for c in spec.get("containers") or []
            ],
        },
        "status": {"phase": (pod.get("status") or {}).get("phase")},
    }


def node_view(obj: Obj) -> dict[str, Any]:
    """What the GPU inventory reads of a Node."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    return {
        "metadata": {"name": meta.get("name"), "labels": meta.get("labels") or {}},
        "spec": {
            "unschedulable": (obj.get("spec") or {}).get("unschedulable", False),
            "taints": (obj.get("spec") or {}).get("taints") or [],
        },
        "status": {
            "allocatable": {
                k: v
                for k, v in (status.get("allocatable") or {}).items()
                if k == labels.GPU_RESOURCE
            },
            "conditions": [
                {"type": c.get("type"), "status": c.get("status")}
                for c in status.get("conditions") or []
                if c.get("type") == "Ready"
            ],
        },
    }


def build_inventory(
    nodes: Iterable[Obj],
    pods: Iterable[Obj],
    region_selectors: Mapping[str, Mapping[str, str]],
) -> Inventory:
    """GPU pools of every region that has a selector; pods of other owners are subtracted."""
    allocatable: dict[tuple[str, str], int] = defaultdict(int)
    node_count: dict[tuple[str, str], int] = defaultdict(int)
    pool_of_node: dict[str, tuple[str, str]] = {}
    nodes_by_region: dict[str, int] = defaultdict(int)
    ceded: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    gpu_nodes: dict[str, NodeGpus] = {}
    for node in nodes:
        matched = regions_of(node, region_selectors)
        if not matched or not node_is_schedulable(node):
            continue
        meta = node.get("metadata", {})
        gpu_type = (meta.get("labels") or {}).get(labels.NODE_GPU_PRODUCT)
        gpus = parse_quantity(
            (node.get("status", {}).get("allocatable") or {}).get(labels.GPU_RESOURCE)
        )
        if not gpu_type or gpus <= 0:
            continue
        region = matched[0]
        for other in matched[1:]:
            ceded[other][region] += 1
        key = (region, gpu_type)
        allocatable[key] += gpus
        node_count[key] += 1
        pool_of_node[meta.get("name", "")] = key
        nodes_by_region[region] += 1
        name = meta.get("name", "")
        gpu_nodes[name] = NodeGpus(name, region, gpu_type, gpus, taints=node_taints(node))
    used: dict[tuple[str, str], int] = defaultdict(int)
    used_on: dict[str, int] = defaultdict(int)
    for pod in pods:
        phase = pod.get("status", {}).get("phase")
        node_name = pod.get("spec", {}).get("nodeName")
        if phase in {"Succeeded", "Failed"} or node_name not in pool_of_node:
            continue
        if not is_owned_by_gridplace(pod):
            used[pool_of_node[node_name]] += pod_gpu_request(pod)
            used_on[node_name] += pod_gpu_request(pod)
    pools = {
        key: GpuPool(key[0], key[1], allocatable[key], used.get(key, 0), node_count[key])
        for key in sorted(allocatable)
    }
    return Inventory(
        pools=pools,
        nodes_by_region=dict(nodes_by_region),
        ceded={r: dict(by) for r, by in ceded.items()},
        nodes=tuple(
            replace(n, used_by_others=used_on.get(name, 0)) for name, n in sorted(gpu_nodes.items())
        ),
    )
