"""Traffic follows the plan: one Gateway API HTTPRoute per (InferenceDeployment, user zone).

Each route attaches to the Gateway that `spec.routing` names for the zone, and its weighted
`backendRefs` are the regional Services `<name>-<region>` (children.py) with the plan's split of
that zone's demand, as integers that add up to WEIGHT_TOTAL (largest-remainder rounding). Pure
functions: the planner renders routes with the other children and `diff.writes_for` orders their
writes (a route changes only once the capacity it sends traffic to is ready, and before any
replica it takes traffic from stops). docs/traffic.md describes the behaviour.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gridplace_operator import labels
from gridplace_operator.api.conditions import Reason
from gridplace_operator.api.inference_deployment import RoutingSpec, ZoneEntry
from gridplace_operator.reconcile.children import (
    VLLM_PORT,
    Owner,
    _common_labels,
    _owner_reference,
    _with_hash,
    child_name,
)

GATEWAY_GROUP = "gateway.networking.k8s.io"
ROUTE_API_VERSION = f"{GATEWAY_GROUP}/v1"
# Weights of a route add up to this, so each is the percentage of the zone's requests a region
# gets. Coarse on purpose: a plan that moves less than half a percent of a zone's demand does not
# rewrite the route.
WEIGHT_TOTAL = 100
# Gateway API allows at most 16 backendRefs per rule.
MAX_BACKENDS = 16
ZONE_LABEL = "gridplace.dev/zone"

Verdict = tuple[str, Reason, str]
RatesByZone = dict[str, dict[str, float]]


@dataclass(frozen=True)
class GatewayView:
    """What routing reads of a Gateway: where it is and the names of its listeners."""

    namespace: str
    name: str
    listeners: frozenset[str]

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> GatewayView:
        meta = obj.get("metadata") or {}
        listeners = (obj.get("spec") or {}).get("listeners") or []
        return cls(
            namespace=meta.get("namespace") or "",
            name=meta.get("name") or "",
            listeners=frozenset(str(x.get("name")) for x in listeners if x.get("name")),
        )


GatewayIndex = Mapping[tuple[str, str], GatewayView]


def largest_remainder(rates: Mapping[str, float], total: int = WEIGHT_TOTAL) -> dict[str, int]:
    """Integer weights proportional to `rates` that add up to `total` exactly (or are all 0 when
    nothing is routed). Each key gets the floor of its quota, then the units left go to the
    largest remainders (ties by name), so no weight is off by more than one unit from its exact
    share and the same rates always give the same weights."""
    positive = {k: v for k, v in rates.items() if v > 0 and math.isfinite(v)}
    weights = dict.fromkeys(rates, 0)
    whole = sum(positive.values())
    if whole <= 0:
        return weights
    quotas = {k: v * total / whole for k, v in positive.items()}
    for key, quota in quotas.items():
        weights[key] = math.floor(quota)
    left = total - sum(weights.values())
    by_remainder = sorted(quotas, key=lambda k: (-(quotas[k] - math.floor(quotas[k])), k))
    for key in by_remainder[:left]:
        weights[key] += 1
    return weights


def rates_by_zone(routes: Iterable[Any]) -> RatesByZone:
    """Requests per second from each zone to each region, summed over GPU types (the regional
    Service spans them). `routes` are the plan's `Route`s of one model."""
    out: RatesByZone = {}
    for route in routes:
        if route.rate_rps > 0:
            regions = out.setdefault(route.zone, {})
            regions[route.region] = regions.get(route.region, 0.0) + route.rate_rps
    return out


def zone_weights(rates: RatesByZone, zone: str, draining: Collection[str] = ()) -> dict[str, int]:
    """The weights of `zone`'s route, per region.

    A zone the plan routes nothing from (no demand declared there yet, or demand the plan could
    not serve) gets the model's split over all zones: its users are then served, further away,
    instead of answered with errors. `draining` regions (their Service still exists but the plan
    no longer uses them) are kept at weight 0, so a gateway stops sending them requests before
    their replicas stop."""
    own = rates.get(zone) or {}
    if sum(own.values()) <= 0:
        own = {}
        for regions in rates.values():
            for region, rate in regions.items():
                own[region] = own.get(region, 0.0) + rate
    weights = largest_remainder(own)
    for region in draining:
        weights.setdefault(region, 0)
    return weights


def gateway_of(entry: ZoneEntry, namespace: str) -> tuple[str, str]:
    """(namespace, name) of an entry's Gateway; an unset namespace is the model's."""
    return (entry.gateway.namespace or namespace, entry.gateway.name)


def missing_gateway(entry: ZoneEntry, namespace: str, gateways: GatewayIndex) -> str | None:
    """Why an entry's Gateway cannot take a route (it or its listener does not exist), or None."""
    ns, name = gateway_of(entry, namespace)
    gateway = gateways.get((ns, name))
    if gateway is None:
        return f"zone {entry.zone}: Gateway {ns}/{name} not found"
    section = entry.gateway.section_name
    if section is not None and section not in gateway.listeners:
        return f"zone {entry.zone}: Gateway {ns}/{name} has no listener {section}"
    return None


def route_name(owner: Owner, zone: str) -> str:
    return child_name(owner.name, zone)


def desired_route(owner: Owner, entry: ZoneEntry, weights: Mapping[str, int]) -> dict[str, Any]:
    """The HTTPRoute of one zone. Every field the Gateway API CRD would default is written out
    (parentRef group and kind, backendRef group and kind, the path match type), so the stored
    route equals the manifest and drift can be told from defaults."""
    routing = owner.spec.routing
    assert routing is not None
    ns, name = gateway_of(entry, owner.namespace)
    parent: dict[str, Any] = {"group": GATEWAY_GROUP, "kind": "Gateway", "name": name}
    parent["namespace"] = ns
    if entry.gateway.section_name is not None:
        parent["sectionName"] = entry.gateway.section_name
    backends = [
        {
            "group": "",
            "kind": "Service",
            "name": child_name(owner.name, region),
            "port": VLLM_PORT,
            "weight": weight,
        }
        # Planned regions first (largest weight), then the draining ones, within the API's cap.
        for region, weight in sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_BACKENDS]
    ]
    spec: dict[str, Any] = {
        "parentRefs": [parent],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": routing.path_prefix}}],
                "backendRefs": backends,
            }
        ],
    }
    if routing.hostnames:
        spec["hostnames"] = list(routing.hostnames)
    manifest: dict[str, Any] = {
        "apiVersion": ROUTE_API_VERSION,
        "kind": "HTTPRoute",
        "metadata": {
            "name": route_name(owner, entry.zone),
            "namespace": owner.namespace,
            "labels": {**_common_labels(owner), ZONE_LABEL: entry.zone},
            "ownerReferences": [_owner_reference(owner)],
        },
        "spec": spec,
    }
    return _with_hash(manifest)


def desired_routes(
    owner: Owner, rates: RatesByZone, draining: Collection[str], gateways: GatewayIndex
) -> list[dict[str, Any]]:
    """One HTTPRoute per entry of spec.routing whose Gateway (and listener) exists."""
    routing = owner.spec.routing
    if routing is None:
        return []
    return [
        desired_route(owner, entry, zone_weights(rates, entry.zone, draining))
        for entry in sorted(routing.entries, key=lambda e: e.zone)
        if missing_gateway(entry, owner.namespace, gateways) is None
    ]


def draining_regions(
    owner_uid: str, planned: Collection[str], services: Iterable[Mapping[str, Any]]
) -> list[str]:
    """Regions whose Service of this model still exists though the plan no longer uses them."""
    out = set()
    for svc in services:
        meta = svc.get("metadata") or {}
        region = (meta.get("labels") or {}).get(labels.REGION)
        uid = next((o.get("uid") for o in meta.get("ownerReferences") or []), None)
        if region and uid == owner_uid and region not in planned:
            out.add(region)
    return sorted(out)


# Hostname conflicts -------------------------------------------------------------------------
Claim = tuple[str, str, str, str, str]  # gateway namespace, name, listener, host ("" any), path


def claims_of(namespace: str, routing: Mapping[str, Any]) -> set[Claim]:
    """What an InferenceDeployment's raw spec.routing claims on Gateways: (gateway, listener,
    host, path) for each host (none: any host). Read from the raw object so that every
    InferenceDeployment's claims can be compared without parsing whole specs."""
    hosts = [str(h) for h in routing.get("hostnames") or []] or [""]
    path = str(routing.get("pathPrefix") or "/")
    out: set[Claim] = set()
    for entry in routing.get("entries") or []:
        gw = entry.get("gateway") or {}
        key = (str(gw.get("namespace") or namespace), str(gw.get("name") or ""))
        for host in hosts:
            out.add((*key, str(gw.get("sectionName") or ""), host, path))
    return out


def hostname_conflicts(
    me: tuple[str, str], ideps: Mapping[tuple[str, str], Mapping[str, Any]]
) -> list[str]:
    """Other InferenceDeployments (`namespace/name`) claiming a host and path this one claims
    on the same Gateway listener."""
    mine_body = ideps.get(me)
    mine_routing = ((mine_body or {}).get("spec") or {}).get("routing")
    if not mine_routing:
        return []
    mine = claims_of(me[0], mine_routing)
    out = []
    for key, body in sorted(ideps.items()):
        routing = (body.get("spec") or {}).get("routing")
        if key != me and routing and mine & claims_of(key[0], routing):
            out.append(f"{key[0]}/{key[1]}")
    return out


def routing_verdict(
    routing: RoutingSpec,
    namespace: str,
    demand_zones: Collection[str],
    gateways: GatewayIndex,
    conflicts: Collection[str] = (),
) -> Verdict:
    """The Routed condition: unknown Gateways first (a zone without a route), then zones of
    demand without an entry, then host names another model claims on the same Gateway."""
    missing = [
        why for e in routing.entries if (why := missing_gateway(e, namespace, gateways)) is not None
    ]
    if missing:
        return "False", Reason.GATEWAY_NOT_FOUND, "; ".join(sorted(missing))
    declared = {e.zone for e in routing.entries}
    unrouted = sorted(set(demand_zones) - declared)
    if unrouted:
        return (
            "False",
            Reason.ZONE_WITHOUT_ENTRY,
            f"no entry in spec.routing for zone(s) {', '.join(unrouted)}",
        )
    if conflicts:
        return (
            "False",
            Reason.HOSTNAME_CONFLICT,
            "the same host and path on the same Gateway are claimed by " + ", ".join(conflicts),
        )
    return (
        "True",
        Reason.ROUTES_APPLIED,
        f"{len(routing.entries)} HTTPRoute(s), weights out of {WEIGHT_TOTAL}",
    )


def routes_for(
    owner: Owner,
    plan_routes: Iterable[Any],
    children: Iterable[Mapping[str, Any]],
    gateways: GatewayIndex,
) -> list[dict[str, Any]]:
    """The HTTPRoutes of one InferenceDeployment for its plan (`plan_routes`, the plan's
    `Route`s of the model), given the children the watch shows (for the regions still
    draining) and the Gateways that exist."""
    if owner.spec.routing is None:
        return []
    rates = rates_by_zone(plan_routes)
    planned = {region for regions in rates.values() for region in regions}
    services = [c for c in children if c.get("kind") == "Service"]
    draining = draining_regions(owner.uid, planned, services)
    return desired_routes(owner, rates, draining, gateways)


def routed_condition(
    owner: Owner,
    demand_zones: Iterable[str],
    ideps: Mapping[tuple[str, str], Mapping[str, Any]],
    gateways: GatewayIndex,
) -> Verdict | None:
    """The Routed condition of an InferenceDeployment; None when spec.routing is unset. Zones of
    demand are those declared in spec.demand.static and those the plan has demand from."""
    routing = owner.spec.routing
    if routing is None:
        return None
    zones = set(demand_zones)
    zones.update(z.zone for z in owner.spec.demand.static or ())
    conflicts = hostname_conflicts((owner.namespace, owner.name), ideps)
    return routing_verdict(routing, owner.namespace, zones, gateways, conflicts)
