"""GPU inventory: which GPUs gridplace may plan with, per region and GPU type."""

from __future__ import annotations

from typing import Any

import pytest

from gridplace_operator.inventory import build_inventory, parse_quantity, regions_of

SELECTORS = {
    "eu-central-1": {"topology.kubernetes.io/region": "eu-central-1"},
    "us-east-1": {"topology.kubernetes.io/region": "us-east-1"},
}


def node(
    name: str,
    region: str,
    product: str,
    gpus: str = "8",
    *,
    ready: str = "True",
    unschedulable: bool = False,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {"topology.kubernetes.io/region": region, "nvidia.com/gpu.product": product},
        },
        "spec": {"unschedulable": unschedulable},
        "status": {
            "allocatable": {"nvidia.com/gpu": gpus, "cpu": "64"},
            "conditions": [{"type": "Ready", "status": ready}],
        },
    }


def pod(
    node_name: str, gpus: int, *, gridplace: bool = False, phase: str = "Running"
) -> dict[str, Any]:
    pod_labels = {"app.kubernetes.io/managed-by": "gridplace"} if gridplace else {}
    return {
        "metadata": {"labels": pod_labels},
        "spec": {
            "nodeName": node_name,
            "containers": [{"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
        },
        "status": {"phase": phase},
    }


def test_pools_sum_nodes_by_region_and_product() -> None:
    nodes = [
        node("a", "eu-central-1", "H100"),
        node("b", "eu-central-1", "H100"),
        node("c", "eu-central-1", "A100", "4"),
        node("d", "us-east-1", "H100"),
    ]
    inventory = build_inventory(nodes, [], SELECTORS)
    assert inventory.gpu_types("eu-central-1") == {"A100": 4, "H100": 16}
    assert inventory.available("us-east-1", "H100") == 8
    assert inventory.available("us-east-1", "A100") == 0
    assert inventory.nodes_by_region == {"eu-central-1": 3, "us-east-1": 1}


def test_other_owners_pods_are_subtracted_but_gridplace_pods_are_not() -> None:
    nodes = [node("a", "eu-central-1", "H100")]
    pods = [
        pod("a", 3),
        pod("a", 2, gridplace=True),
        pod("a", 4, phase="Succeeded"),
    ]
    pool = build_inventory(nodes, pods, SELECTORS).pools[("eu-central-1", "H100")]
    assert (pool.allocatable, pool.used_by_others, pool.available) == (8, 3, 5)


def test_unready_cordoned_and_unknown_region_nodes_are_left_out() -> None:
    nodes = [
        node("a", "eu-central-1", "H100", ready="False"),
        node("b", "eu-central-1", "H100", unschedulable=True),
        node("c", "mars-1", "H100"),
        node("d", "eu-central-1", "H100", "0"),
    ]
    assert build_inventory(nodes, [], SELECTORS).pools == {}


def test_a_region_may_select_nodes_by_any_label() -> None:
    custom = {"frankfurt": {"example.com/site": "fra"}}
    n = node("a", "eu-central-1", "H100")
    n["metadata"]["labels"]["example.com/site"] = "fra"
    assert regions_of(n, custom) == ["frankfurt"]
    assert build_inventory([n], [], custom).available("frankfurt", "H100") == 8


def test_a_node_two_regions_select_counts_once_and_the_other_region_is_told() -> None:
    overlapping = {**SELECTORS, "a-everything": {"nvidia.com/gpu.product": "H100"}}
    nodes = [node("a", "eu-central-1", "H100"), node("b", "us-east-1", "A100")]
    inventory = build_inventory(nodes, [], overlapping)
    assert inventory.available("a-everything", "H100") == 8
    assert inventory.available("eu-central-1", "H100") == 0  # never planned twice
    assert inventory.available("us-east-1", "A100") == 8
    assert inventory.ceded == {"eu-central-1": {"a-everything": 1}}


@pytest.mark.parametrize(("text", "units"), [("8", 8), (4, 4), ("2000m", 2), (None, 0)])
def test_parse_quantity(text: str | int | None, units: int) -> None:
    assert parse_quantity(text) == units


def test_minus_takes_gpus_already_spoken_for() -> None:
    inventory = build_inventory([node("a", "eu-central-1", "H100")], [pod("a", 2)], SELECTORS)
    left = inventory.minus({("eu-central-1", "H100"): 5})
    assert left.available("eu-central-1", "H100") == 1
    assert inventory.available("eu-central-1", "H100") == 6  # the original is unchanged
    assert left.minus({("eu-central-1", "H100"): 9}).available("eu-central-1", "H100") == 0
