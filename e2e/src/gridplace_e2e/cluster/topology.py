"""The cluster topology file: which GPU nodes exist in which region, and their Node manifests.

Format (YAML)::

    regions:
      us-east-1:                        # the value of topology.kubernetes.io/region
        - product: NVIDIA-H100-80GB-HBM3  # the value of nvidia.com/gpu.product
          nodes: 2                      # how many such nodes
          gpusPerNode: 8                # optional, default 8
          cpu: "96"                     # optional, default "96"
          memory: 1024Gi                # optional, default "1024Gi"
          pods: 110                     # optional, default 110
          name: small                   # optional: tells apart pools of one product
          taints:                       # optional, default none
            - {key: dedicated, value: batch, effect: NoSchedule}

Nodes carry no taint unless their pool lists some, so pods need no toleration to land on them.
Pools of one product in a region (e.g. nodes with fewer GPUs beside full ones) need names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_TOPOLOGY = Path(__file__).resolve().parents[3] / "topologies" / "default.yaml"

REGION_LABEL = "topology.kubernetes.io/region"
PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_RESOURCE = "nvidia.com/gpu"

_POOL_FIELDS = {"product", "nodes", "gpusPerNode", "cpu", "memory", "pods", "name", "taints"}
_TAINT_EFFECTS = {"NoSchedule", "PreferNoSchedule", "NoExecute"}
FRAGMENTED_TOPOLOGY = DEFAULT_TOPOLOGY.with_name("fragmented.yaml")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")


class TopologyError(ValueError):
    """The topology file is invalid; the message names the file, the field and the value."""


@dataclass(frozen=True)
class NodePool:
    region: str
    product: str
    nodes: int
    gpus_per_node: int = 8
    cpu: str = "96"
    memory: str = "1024Gi"
    pods: int = 110
    name: str = ""
    taints: tuple[tuple[str, str, str], ...] = ()  # (key, value, effect)

    def node_names(self) -> list[str]:
        product = re.sub(r"[^a-z0-9]+", "-", self.product.lower()).strip("-")
        product = product.removeprefix("nvidia-")
        stem = f"{self.region}-{product}" + (f"-{self.name}" if self.name else "")
        return [f"{stem}-{index}" for index in range(self.nodes)]


@dataclass(frozen=True)
class Topology:
    pools: tuple[NodePool, ...]

    @property
    def regions(self) -> list[str]:
        return list(dict.fromkeys(pool.region for pool in self.pools))

    def gpus(self, region: str, product: str | None = None) -> int:
        return sum(
            pool.nodes * pool.gpus_per_node
            for pool in self.pools
            if pool.region == region and product in (None, pool.product)
        )

    def node_manifests(self) -> list[dict[str, Any]]:
        return [node_manifest(pool, name) for pool in self.pools for name in pool.node_names()]


def node_manifest(pool: NodePool, name: str) -> dict[str, Any]:
    """A Node for kwok to manage: the `kwok.x-k8s.io/node: fake` annotation is what kwok selects
    when it does not manage every node (e.g. kwok installed into a kind cluster)."""
    resources = {
        "cpu": pool.cpu,
        "memory": pool.memory,
        "pods": str(pool.pods),
        GPU_RESOURCE: str(pool.gpus_per_node),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/agent": "",
                REGION_LABEL: pool.region,
                PRODUCT_LABEL: pool.product,
                GPU_COUNT_LABEL: str(pool.gpus_per_node),
            },
        },
        "spec": {"taints": [{"key": k, "value": v, "effect": e} for k, v, e in pool.taints]}
        if pool.taints
        else {},
        # The API server keeps a Node's status on create; kwok then keeps it Ready.
        "status": {"allocatable": resources, "capacity": resources},
    }


def load_topology(path: Path) -> Topology:
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise TopologyError(f"{path}: cannot read the topology file: {error}") from error
    except yaml.YAMLError as error:
        raise TopologyError(f"{path}: not valid YAML: {error}") from error
    return parse_topology(document, source=str(path))


def parse_topology(document: object, source: str = "topology") -> Topology:
    def fail(field: str, problem: str, value: object) -> TopologyError:
        return _error(source, field, problem, value)

    if not isinstance(document, dict) or set(document) != {"regions"}:
        raise fail("top level", "must be a mapping with the single key 'regions'", document)
    regions = document["regions"]
    if not isinstance(regions, dict) or not regions:
        raise fail("regions", "must be a non-empty mapping of region name to node pools", regions)

    pools: list[NodePool] = []
    for region, region_pools in regions.items():
        if not isinstance(region, str) or not _DNS_LABEL.fullmatch(region):
            raise fail("regions", "region names must be lowercase DNS labels", region)
        if not isinstance(region_pools, list) or not region_pools:
            raise fail(f"regions.{region}", "must be a non-empty list of node pools", region_pools)
        seen: set[tuple[str, str]] = set()
        for index, raw in enumerate(region_pools):
            field = f"regions.{region}[{index}]"
            pool = _parse_pool(raw, region, field, source)
            if (pool.product, pool.name) in seen:
                raise fail(
                    f"{field}.product", "appears twice in the region without a name", pool.product
                )
            seen.add((pool.product, pool.name))
            pools.append(pool)
    return Topology(pools=tuple(pools))


def _error(source: str, field: str, problem: str, value: object) -> TopologyError:
    return TopologyError(f"{source}: {field}: {problem}, got {value!r}")


def _parse_pool(raw: object, region: str, field: str, source: str) -> NodePool:
    def fail(field: str, problem: str, value: object) -> TopologyError:
        return _error(source, field, problem, value)

    if not isinstance(raw, dict):
        raise fail(field, "must be a mapping with at least 'product' and 'nodes'", raw)
    if unknown := sorted(set(raw) - _POOL_FIELDS):
        raise fail(f"{field}.{unknown[0]}", f"unknown field (known: {sorted(_POOL_FIELDS)})", raw)
    for required in ("product", "nodes"):
        if required not in raw:
            raise fail(f"{field}.{required}", "is required", raw)

    product = raw["product"]
    if not isinstance(product, str) or not _LABEL_VALUE.fullmatch(product) or len(product) > 63:
        raise fail(f"{field}.product", "must be a valid label value like NVIDIA-L40S", product)

    def positive_int(name: str, default: int) -> int:
        value = raw.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise fail(f"{field}.{name}", "must be a positive integer", value)
        return value

    def quantity(name: str, default: str) -> str:
        value = raw.get(name, default)
        if isinstance(value, bool) or not _QUANTITY.fullmatch(str(value)):
            raise fail(f"{field}.{name}", "must be a Kubernetes quantity like 96 or 1024Gi", value)
        return str(value)

    pool = NodePool(
        region=region,
        product=product,
        nodes=positive_int("nodes", 1),
        gpus_per_node=positive_int("gpusPerNode", 8),
        cpu=quantity("cpu", "96"),
        memory=quantity("memory", "1024Gi"),
        pods=positive_int("pods", 110),
        name=_pool_name(raw.get("name", ""), f"{field}.name", source),
        taints=_taints(raw.get("taints", []), f"{field}.taints", source),
    )
    if any(len(name) > 63 for name in pool.node_names()):
        raise fail(f"{field}.product", "makes node names longer than 63 characters", product)
    return pool


def _pool_name(value: object, field: str, source: str) -> str:
    if value == "":
        return ""
    if not isinstance(value, str) or not _DNS_LABEL.fullmatch(value):
        raise _error(source, field, "must be a lowercase DNS label", value)
    return value


def _taints(value: object, field: str, source: str) -> tuple[tuple[str, str, str], ...]:
    """Node taints as (key, value, effect): the scheduler keeps pods that do not tolerate one
    (NoSchedule, NoExecute) off the node, which is what the tainted-node tests rely on."""
    if not isinstance(value, list):
        raise _error(source, field, "must be a list of {key, value, effect}", value)
    out = []
    for i, taint in enumerate(value):
        if (
            not isinstance(taint, dict)
            or set(taint) - {"key", "value", "effect"}
            or not isinstance(taint.get("key"), str)
            or not _LABEL_VALUE.fullmatch(taint["key"].split("/")[-1])
            or taint.get("effect") not in _TAINT_EFFECTS
            or not isinstance(taint.get("value", ""), str)
        ):
            raise _error(
                source, f"{field}[{i}]", "must be {key, value, effect} (a known effect)", taint
            )
        out.append((taint["key"], taint.get("value", ""), taint["effect"]))
    return tuple(out)
