"""HTTPRoutes from plans: weights (largest remainder, zero weights for draining regions, one
region, a zone the plan cannot serve), the rendered route, the Routed condition and the order of
route writes in make-before-break."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gridplace_operator.api.conditions import Reason
from gridplace_operator.api.inference_deployment import InferenceDeploymentSpec
from gridplace_operator.observe.world import Change, World, child_view
from gridplace_operator.reconcile.children import Owner, desired_children
from gridplace_operator.reconcile.routes import (
    WEIGHT_TOTAL,
    GatewayView,
    hostname_conflicts,
    largest_remainder,
    rates_by_zone,
    routed_condition,
    routes_for,
    zone_weights,
)
from gridplace_operator.reconcile.writes import (
    Apply,
    Delete,
    ObservedChild,
    drift,
    owned_fields,
    writes_for,
)

H100 = "NVIDIA-H100-80GB-HBM3"
SELECTORS = {
    "eu-central-1": {"topology.kubernetes.io/region": "eu-central-1"},
    "us-east-1": {"topology.kubernetes.io/region": "us-east-1"},
    "us-west-2": {"topology.kubernetes.io/region": "us-west-2"},
}
GATEWAYS = {
    ("gateways", "us"): GatewayView("gateways", "us", frozenset({"http"})),
    ("gateways", "eu"): GatewayView("gateways", "eu", frozenset({"http"})),
}
ROUTING: dict[str, Any] = {
    "hostnames": ["chat.example.com"],
    "entries": [
        {"zone": "us-east", "gateway": {"name": "us", "namespace": "gateways"}},
        {
            "zone": "eu-west",
            "gateway": {"name": "eu", "namespace": "gateways", "sectionName": "http"},
        },
    ],
}


@dataclass(frozen=True)
class R:
    """A plan's Route, as far as routing reads it."""

    zone: str
    region: str
    rate_rps: float
    gpu_type: str = H100


def owner(routing: dict[str, Any] | None = ROUTING, name: str = "chat") -> Owner:
    body: dict[str, Any] = {
        "model": {"name": "meta-llama/Llama-3.1-8B-Instruct", "gpuTypes": [H100]},
        "slo": {"p95TimeToFirstTokenSeconds": 0.5},
        "demand": {
            "static": [
                {"zone": "us-east", "requestsPerSecond": 10},
                {"zone": "eu-west", "requestsPerSecond": 5},
            ]
        },
    }
    if routing is not None:
        body["routing"] = routing
    spec = InferenceDeploymentSpec.model_validate(body)
    return Owner(namespace="serving", name=name, uid="uid-1", spec=spec)


def weights_of(route: dict[str, Any]) -> dict[str, int]:
    return {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}


def test_largest_remainder_adds_up_and_gives_leftover_units_to_the_largest_remainders() -> None:
    assert largest_remainder({"a": 1, "b": 1, "c": 1}) == {"a": 34, "b": 33, "c": 33}
    assert largest_remainder({"a": 2.0, "b": 1.0}) == {"a": 67, "b": 33}
    assert largest_remainder({"a": 0.996, "b": 0.004}) == {"a": 100, "b": 0}


def test_nothing_routed_gives_zero_weights() -> None:
    assert largest_remainder({"a": 0.0, "b": 0.0}) == {"a": 0, "b": 0}
    assert largest_remainder({}) == {}


@given(st.dictionaries(st.text(min_size=1, max_size=4), st.floats(0, 1e4), min_size=1))
def test_weights_always_add_up_and_stay_within_one_unit_of_the_share(
    rates: dict[str, float],
) -> None:
    weights = largest_remainder(rates)
    whole = sum(rates.values())
    if whole == 0:
        assert set(weights.values()) == {0}
        return
    assert sum(weights.values()) == WEIGHT_TOTAL
    for key, rate in rates.items():
        assert abs(weights[key] - rate * WEIGHT_TOTAL / whole) < 1


def test_a_single_region_gets_everything() -> None:
    rates = rates_by_zone([R("us-east", "us-east-1", 7.0)])
    assert zone_weights(rates, "us-east") == {"us-east-1": WEIGHT_TOTAL}


def test_gpu_types_of_one_region_add_up_into_its_service() -> None:
    rates = rates_by_zone(
        [
            R("us-east", "us-east-1", 3.0),
            R("us-east", "us-east-1", 1.0, "L40S"),
            R("us-east", "us-west-2", 4.0),
        ]
    )
    assert zone_weights(rates, "us-east") == {"us-east-1": 50, "us-west-2": 50}


def test_a_zone_the_plan_cannot_serve_gets_the_models_overall_split() -> None:
    rates = rates_by_zone([R("us-east", "us-east-1", 6.0), R("eu-west", "eu-central-1", 2.0)])
    assert zone_weights(rates, "ap-south") == {"us-east-1": 75, "eu-central-1": 25}
    assert zone_weights({}, "ap-south") == {}


def test_a_draining_region_keeps_weight_zero() -> None:
    rates = rates_by_zone([R("us-east", "us-west-2", 6.0)])
    assert zone_weights(rates, "us-east", draining=["us-east-1"]) == {
        "us-west-2": 100,
        "us-east-1": 0,
    }


def test_one_route_per_entry_with_the_zones_split_over_the_regional_services() -> None:
    plan = [
        R("us-east", "us-east-1", 6.0),
        R("us-east", "eu-central-1", 2.0),
        R("eu-west", "eu-central-1", 5.0),
    ]
    routes = routes_for(owner(), plan, [], GATEWAYS)
    by_name = {r["metadata"]["name"]: r for r in routes}
    assert sorted(by_name) == ["chat-eu-west", "chat-us-east"]
    us = by_name["chat-us-east"]
    assert us["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert weights_of(us) == {"chat-us-east-1": 75, "chat-eu-central-1": 25}
    assert weights_of(by_name["chat-eu-west"]) == {"chat-eu-central-1": 100}
    assert us["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "us",
            "namespace": "gateways",
        }
    ]
    assert by_name["chat-eu-west"]["spec"]["parentRefs"][0]["sectionName"] == "http"
    assert us["spec"]["hostnames"] == ["chat.example.com"]
    assert us["spec"]["rules"][0]["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert all(b["port"] == 8000 for b in us["spec"]["rules"][0]["backendRefs"])
    assert us["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert us["metadata"]["labels"]["gridplace.dev/zone"] == "us-east"


def test_the_same_plan_renders_the_same_route() -> None:
    plan = [R("us-east", "us-east-1", 6.0), R("us-east", "eu-central-1", 2.0)]
    first = routes_for(owner(), plan, [], GATEWAYS)
    again = routes_for(owner(), [R("us-east", "us-east-1", 6.01), *plan[1:]], [], GATEWAYS)
    assert first == again  # a change below a unit of weight writes nothing


def test_no_routing_no_routes_and_no_condition() -> None:
    assert routes_for(owner(None), [R("us-east", "us-east-1", 1.0)], [], GATEWAYS) == []
    assert routed_condition(owner(None), ["us-east"], {}, GATEWAYS) is None


def test_an_unknown_gateway_or_listener_gets_no_route_and_a_reason() -> None:
    routing = {
        "entries": [
            {"zone": "us-east", "gateway": {"name": "nope", "namespace": "gateways"}},
            {
                "zone": "eu-west",
                "gateway": {"name": "eu", "namespace": "gateways", "sectionName": "x"},
            },
        ]
    }
    assert routes_for(owner(routing), [R("us-east", "us-east-1", 1.0)], [], GATEWAYS) == []
    status, reason, message = routed_condition(owner(routing), [], {}, GATEWAYS) or ("", "", "")
    assert (status, reason) == ("False", Reason.GATEWAY_NOT_FOUND)
    assert "Gateway gateways/nope not found" in message
    assert "has no listener x" in message


def test_a_zone_of_demand_without_an_entry_is_reported() -> None:
    routing = {"entries": [{"zone": "us-east", "gateway": {"name": "us", "namespace": "gateways"}}]}
    verdict = routed_condition(owner(routing), ["ap-south"], {}, GATEWAYS)
    assert verdict is not None
    assert verdict[:2] == ("False", Reason.ZONE_WITHOUT_ENTRY)
    assert "ap-south" in verdict[2] and "eu-west" in verdict[2]  # declared in spec.demand


def test_two_models_claiming_one_host_on_one_gateway_conflict() -> None:
    other = {"spec": {"routing": {**ROUTING, "entries": ROUTING["entries"][:1]}}}
    elsewhere = {"spec": {"routing": {**ROUTING, "hostnames": ["other.example.com"]}}}
    ideps: dict[tuple[str, str], Any] = {
        ("serving", "chat"): {"spec": {"routing": ROUTING}},
        ("serving", "copy"): other,
        ("serving", "fine"): elsewhere,
    }
    assert hostname_conflicts(("serving", "chat"), ideps) == ["serving/copy"]
    verdict = routed_condition(owner(), ["us-east", "eu-west"], ideps, GATEWAYS)
    assert verdict is not None and verdict[1] == Reason.HOSTNAME_CONFLICT
    del ideps[("serving", "copy")]
    verdict = routed_condition(owner(), ["us-east", "eu-west"], ideps, GATEWAYS)
    assert verdict is not None and verdict[:2] == ("True", Reason.ROUTES_APPLIED)


def observed(objs: list[dict[str, Any]], ready: int | None = None) -> list[ObservedChild]:
    out = []
    for obj in objs:
        live = child_view(obj)
        if ready is not None and obj["kind"] == "Deployment":
            live["status"]["readyReplicas"] = ready
        out.append(ObservedChild.from_api(live))
    return out


def test_a_route_is_not_drift_once_stored_and_a_hand_edit_is() -> None:
    route = routes_for(owner(), [R("us-east", "us-east-1", 1.0)], [], GATEWAYS)[0]
    assert drift(owned_fields(route), owned_fields(child_view(route))) == []
    edited = child_view(route)
    edited["spec"]["rules"][0]["backendRefs"][0]["weight"] = 1
    assert drift(owned_fields(route), owned_fields(edited))
    writes = writes_for([route], observed([edited]), "uid-1")
    assert [w.manifest["metadata"]["name"] for w in writes.brk if isinstance(w, Apply)] == [
        "chat-eu-west"
    ]
    assert writes.repairs and writes.repairs[0].kind == "HTTPRoute"


def test_traffic_moves_after_the_new_region_is_ready_and_before_the_old_one_goes() -> None:
    """A move from us-east-1 to us-west-2: the route keeps sending to us-east-1 until us-west-2
    is ready; then, in one cycle, the route (us-east-1 at weight 0) goes before the removals."""
    o = owner()
    before_plan = [R("us-east", "us-east-1", 6.0), R("eu-west", "us-east-1", 1.0)]
    before = desired_children(o, {("us-east-1", H100): 2}, SELECTORS)
    before += routes_for(o, before_plan, [], GATEWAYS)
    live = before
    after_plan = [R("us-east", "us-west-2", 6.0), R("eu-west", "us-west-2", 1.0)]
    after = desired_children(o, {("us-west-2", H100): 2}, SELECTORS)
    after += routes_for(o, after_plan, [child_view(c) for c in live], GATEWAYS)
    us_route = next(c for c in after if c["metadata"]["name"] == "chat-us-east")
    assert weights_of(us_route) == {"chat-us-west-2": 100, "chat-us-east-1": 0}

    writes = writes_for(after, observed(live, ready=2), "uid-1")
    made = [(w.manifest["kind"], w.manifest["metadata"]["name"]) for w in writes.make]
    assert ("HTTPRoute", "chat-us-east") not in made  # not yet: us-west-2 has no ready pod
    assert writes.held
    first = writes.brk[0]
    assert isinstance(first, Apply) and first.manifest["kind"] == "HTTPRoute"
    kinds = [w.manifest["kind"] if isinstance(w, Apply) else f"-{w.kind}" for w in writes.brk]
    assert kinds.index("-Deployment") > kinds.index("HTTPRoute")

    # Once us-east-1's Service is gone, its weight-0 backend leaves the route.
    left = [c for c in after if c["kind"] != "HTTPRoute"]
    final = routes_for(o, after_plan, [child_view(c) for c in left], GATEWAYS)
    assert weights_of(final[0]) in ({"chat-us-west-2": 100},)
    assert not any(isinstance(w, Delete) for w in writes.make)


def test_a_gateway_appearing_or_changing_listeners_refreshes_and_nothing_else_does() -> None:
    world = World()
    gw = {
        "metadata": {"namespace": "gateways", "name": "us"},
        "spec": {"listeners": [{"name": "http"}]},
    }
    assert world.observe_gateway(gw, deleted=False) is Change.REFRESH
    status_only = {**gw, "status": {"conditions": [{"type": "Accepted"}]}}
    assert world.observe_gateway(status_only, deleted=False) is Change.NONE
    renamed = {**gw, "spec": {"listeners": [{"name": "https"}]}}
    assert world.observe_gateway(renamed, deleted=False) is Change.REFRESH
    assert world.gateways[("gateways", "us")].listeners == frozenset({"https"})
    assert world.observe_gateway(renamed, deleted=True) is Change.REFRESH
    assert world.gateways == {}
