"""GPU inventory: which GPUs gridplace may plan with, per region and GPU type."""

from __future__ import annotations

from typing import Any

import pytest

from gridplace_operator.api.inference_deployment import InferenceDeploymentSpec
from gridplace_operator.observe.inventory import (
    Taint,
    build_inventory,
    parse_quantity,
    regions_of,
    tolerates,
)
from gridplace_operator.planning.problem import region_capacity

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


def tainted(base: dict[str, Any], key: str, effect: str = "NoSchedule") -> dict[str, Any]:
    return {
        **base,
        "spec": {**base["spec"], "taints": [{"key": key, "value": "x", "effect": effect}]},
    }


def test_free_gpus_are_kept_per_node() -> None:
    """Two nodes with 3 and 2 free GPUs are not one node with 5: the plan packs per node."""
    nodes = [node("a", "eu-central-1", "H100", "4"), node("b", "eu-central-1", "H100", "4")]
    pods = [pod("a", 1), pod("b", 2), pod("b", 4, gridplace=True)]
    inventory = build_inventory(nodes, pods, SELECTORS)
    assert inventory.available("eu-central-1", "H100") == 5
    assert inventory.node_gpus("eu-central-1", "H100") == (3, 2)


def test_a_tainted_node_counts_only_for_pods_that_tolerate_it() -> None:
    nodes = [
        node("a", "eu-central-1", "H100", "4"),
        tainted(node("b", "eu-central-1", "H100", "8"), "dedicated"),
        tainted(node("c", "eu-central-1", "H100", "2"), "nvidia.com/gpu"),  # gridplace's own
        tainted(node("d", "eu-central-1", "H100", "2"), "soft", "PreferNoSchedule"),
    ]
    inventory = build_inventory(nodes, [], SELECTORS)
    assert inventory.node_gpus("eu-central-1", "H100") == (4, 2, 2)
    dedicated = [{"key": "dedicated", "operator": "Equal", "value": "x", "effect": "NoSchedule"}]
    assert inventory.node_gpus("eu-central-1", "H100", [dedicated]) == (8, 4, 2, 2)
    # A plan shared with a model that does not tolerate the taint leaves the node out.
    assert inventory.node_gpus("eu-central-1", "H100", [dedicated, []]) == (4, 2, 2)


@pytest.mark.parametrize(
    ("toleration", "expected"),
    [
        ({"operator": "Exists"}, True),
        ({"key": "dedicated", "operator": "Exists"}, True),
        ({"key": "dedicated", "operator": "Equal", "value": "x"}, True),
        ({"key": "dedicated", "value": "y"}, False),
        ({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}, False),
        ({"key": "other", "operator": "Exists"}, False),
    ],
)
def test_tolerations_match_as_the_scheduler_matches(
    toleration: dict[str, str], expected: bool
) -> None:
    assert tolerates([toleration], Taint("dedicated", "x", "NoSchedule")) is expected


def test_taking_gpus_empties_the_largest_nodes_first() -> None:
    nodes = [node("a", "eu-central-1", "H100", "4"), node("b", "eu-central-1", "H100", "2")]
    inventory = build_inventory(nodes, [], SELECTORS).minus({("eu-central-1", "H100"): 3})
    assert inventory.node_gpus("eu-central-1", "H100") == (2, 1)
    assert inventory.available("eu-central-1", "H100") == 3


def idep_spec(tolerations: list[dict[str, str]] | None = None) -> InferenceDeploymentSpec:
    return InferenceDeploymentSpec.model_validate(
        {
            "model": {"name": "meta-llama/Meta-Llama-3.1-8B-Instruct", "gpuTypes": ["H100"]},
            "slo": {"p95TimeToFirstTokenSeconds": 1.0},
            "demand": {"static": [{"zone": "eu", "requestsPerSecond": 1}]},
            "pod": {"tolerations": tolerations or []},
        }
    )


def test_the_problem_gets_per_node_gpus_a_model_may_use() -> None:
    """The placement region lists free GPUs per node, tainted ones only for tolerating models."""
    nodes = [
        node("a", "eu-central-1", "H100", "3"),
        node("b", "eu-central-1", "H100", "2"),
        tainted(node("c", "eu-central-1", "H100", "8"), "dedicated"),
    ]
    inventory = build_inventory(nodes, [], SELECTORS)
    tolerant = idep_spec([{"key": "dedicated", "operator": "Exists"}])
    assert region_capacity(inventory, "eu-central-1", [idep_spec()]) == {
        "gpus": {"H100": 5},
        "node_gpus": {"H100": (3, 2)},
    }
    assert region_capacity(inventory, "eu-central-1", [tolerant]) == {
        "gpus": {"H100": 13},
        "node_gpus": {"H100": (8, 3, 2)},
    }
