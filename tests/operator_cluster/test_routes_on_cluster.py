"""HTTPRoutes on the local control plane, validated by Gateway API's own CRDs (standard channel,
installed by `gridplace-cluster up`): the examples' routes carry status.traffic's split, a hand
edit is restored, a steady state writes nothing, and deleting the model removes its routes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gridplace_e2e.cluster.handle import ClusterHandle
from gridplace_e2e.cluster.local import poll
from gridplace_e2e.operator_run import OperatorProcess, condition, get_json, wait_for
from gridplace_operator.reconcile.routes import WEIGHT_TOTAL, largest_remainder

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
MODEL = "llama-8b-chat"


def gateway(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name},
        "spec": {
            "gatewayClassName": "example",
            "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}],
        },
    }


def routed_example(zones: list[str]) -> dict[str, Any]:
    """The llama example with an entry per zone of its demand, on a Gateway named like it."""
    docs = yaml.safe_load_all((ROOT / "examples/inferencedeployments.yaml").read_text())
    body = next(d for d in docs if d and d["metadata"]["name"] == MODEL)
    body["spec"]["routing"] = {
        "hostnames": ["llama.example.com"],
        "entries": [
            {"zone": z, "gateway": {"name": f"gw-{z}", "sectionName": "http"}} for z in zones
        ],
    }
    return dict(body)


def routes(cluster: ClusterHandle, namespace: str) -> dict[str, dict[str, Any]]:
    items = get_json(cluster, "httproutes", "-n", namespace)["items"]
    return {r["metadata"]["name"]: r for r in items}


def weights(route: dict[str, Any]) -> dict[str, int]:
    refs = route["spec"]["rules"][0]["backendRefs"]
    return {b["name"].removeprefix(f"{MODEL}-"): b["weight"] for b in refs if b["weight"] > 0}


def matches_status(cluster: ClusterHandle, namespace: str) -> bool:
    """Every zone's route has the weights status.traffic's rates give (within a unit: status
    shows rates rounded to 3 decimals)."""
    obj = get_json(cluster, "idep", MODEL, "-n", namespace)
    by_zone: dict[str, dict[str, float]] = {}
    for t in obj.get("status", {}).get("traffic") or []:
        by_zone.setdefault(t["zone"], {})[t["region"]] = t["requestsPerSecond"]
    found = routes(cluster, namespace)
    if not by_zone or len(found) != len(by_zone):
        return False
    for zone, rates in by_zone.items():
        route = found.get(f"{MODEL}-{zone}")
        if route is None:
            return False
        want = {k: v for k, v in largest_remainder(rates).items() if v > 0}
        got = weights(route)
        if set(got) != set(want) or sum(got.values()) != WEIGHT_TOTAL:
            return False
        if any(abs(got[k] - want[k]) > 1 for k in want):
            return False
    return True


def test_example_routes_follow_status_are_repaired_and_go_with_the_model(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess
) -> None:
    body = routed_example([])
    zones = sorted(d["zone"] for d in body["spec"]["demand"]["static"])
    body = routed_example(zones)
    gateways = {"apiVersion": "v1", "kind": "List", "items": [gateway(f"gw-{z}") for z in zones]}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(gateways))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))
    wait_for(lambda: matches_status(cluster, namespace), 180, "routes matching traffic", operator)
    obj = get_json(cluster, "idep", MODEL, "-n", namespace)
    assert condition(obj, "Routed")["reason"] == "RoutesApplied", obj["status"]["conditions"]
    found = routes(cluster, namespace)
    services = {
        s["metadata"]["name"] for s in get_json(cluster, "services", "-n", namespace)["items"]
    }
    for route in found.values():
        # What a conformant gateway needs to accept the route: its parent and backends exist.
        parent = route["spec"]["parentRefs"][0]
        gw = get_json(cluster, "gateway", parent["name"], "-n", namespace)
        assert parent["sectionName"] in {x["name"] for x in gw["spec"]["listeners"]}
        assert {b["name"] for b in route["spec"]["rules"][0]["backendRefs"]} <= services
        assert route["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]

    # A steady state writes nothing.
    time.sleep(3)
    before = operator.writes()
    time.sleep(8)
    assert operator.writes() == before

    # A hand edit of the weights is restored, and reported.
    name = f"{MODEL}-{zones[0]}"
    edited = found[name]
    patch = [{"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 7}]
    cluster.kubectl(
        "patch", "httproute", name, "-n", namespace, "--type=json", "-p", json.dumps(patch)
    )
    wait_for(
        lambda: routes(cluster, namespace)[name]["spec"] == edited["spec"],
        60,
        "the edited route to be restored",
        operator,
    )
    events = get_json(cluster, "events", "-n", namespace)["items"]
    assert any(e["reason"] == "DriftRepaired" and "HTTPRoute" in e["message"] for e in events)

    # Deleting the model removes its routes (owner references; no finalizer).
    cluster.kubectl("delete", "idep", MODEL, "-n", namespace, "--timeout=30s")
    assert poll(lambda: not routes(cluster, namespace), 60), "routes left behind"
