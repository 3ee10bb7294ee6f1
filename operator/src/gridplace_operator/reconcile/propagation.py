"""Fleet mode: the Karmada PropagationPolicies that send each region's children to its member
cluster with exactly the planned replicas.

gridplace decides where and how many; Karmada only carries the decision out. So each policy names
one member (`clusterAffinity.clusterNames`) and duplicates the template's replicas there: with a
single cluster, Duplicated is "exactly these replicas", and Karmada has nothing to re-weight.
Children of a region without a member cluster stay in the cluster gridplace runs against and get
no policy. Pure: rendered from the desired children, written like them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from gridplace_operator import labels
from gridplace_operator.reconcile.children import Owner, child_name, owned_child
from gridplace_operator.reconcile.writes import ObservedChild

API_VERSION = "policy.karmada.io/v1alpha1"
KIND = "PropagationPolicy"


def _selector(child: Mapping[str, Any]) -> dict[str, str]:
    return {
        "apiVersion": child["apiVersion"],
        "kind": child["kind"],
        "name": child["metadata"]["name"],
    }


def policy(
    owner: Owner, name: str, members: Sequence[str], children: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """One policy sending `children` to each of `members`, their replicas as written."""
    return owned_child(
        owner,
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": name, "namespace": owner.namespace},
            "spec": {
                "resourceSelectors": sorted(
                    (_selector(c) for c in children), key=lambda s: (s["kind"], s["name"])
                ),
                "placement": {
                    "clusterAffinity": {"clusterNames": sorted(members)},
                    "replicaScheduling": {"replicaSchedulingType": "Duplicated"},
                },
            },
        },
    )


def propagation_policies(
    owner: Owner, children: Sequence[Mapping[str, Any]], members: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The policies for `children` when regions live in member clusters (`members`: region ->
    member). Each member gets one policy for its regions' children (`<model>-<member>`); the
    model-wide children (the Service over every region) go to every member that runs a region
    of the model (`<model>`), so each member's clients reach its local replicas by that name."""
    by_member: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    model_wide: list[Mapping[str, Any]] = []
    for child in children:
        if child["kind"] == KIND or child["kind"] == "HTTPRoute":
            continue  # routes stay where their Gateways are
        region = (child["metadata"].get("labels") or {}).get(labels.REGION)
        if region is None:
            model_wide.append(child)
        elif region in members:
            by_member[members[region]].append(child)
    policies = [
        policy(owner, child_name(owner.name, member), [member], sent)
        for member, sent in sorted(by_member.items())
    ]
    if by_member and model_wide:
        policies.append(policy(owner, owner.name, sorted(by_member), model_wide))
    return policies


def foreign_claims(
    policies: Sequence[Mapping[str, Any]], observed: Sequence[ObservedChild]
) -> list[str]:
    """Children that a policy of gridplace's should propagate but another Karmada policy has
    claimed: Karmada sends them where that policy says, so the plan would not be what runs."""
    have = {(o.kind, o.name): o for o in observed}
    found = []
    for p in policies:
        ours = f"PropagationPolicy {p['metadata']['namespace']}/{p['metadata']['name']}"
        for selector in p["spec"]["resourceSelectors"]:
            child = have.get((selector["kind"], selector["name"]))
            if child is not None and child.propagated_by not in (None, ours):
                found.append(
                    f"{child.kind} {child.namespace}/{child.name} is propagated by"
                    f" {child.propagated_by}, not by gridplace's {ours}: delete that policy or"
                    " narrow its resourceSelectors"
                )
    return found
