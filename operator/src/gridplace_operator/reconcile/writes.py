"""From desired and observed children to the writes that get there, make-before-break.

Pure: the planner calls `writes_for(...)` per InferenceDeployment and hands the result to kube.py.
A child is rewritten when what gridplace wants changed (the spec-hash annotation) or when the live
object's owned fields drifted from it (`kubectl scale`, another field manager's apply): the hash
says what gridplace wanted, only the live fields say what is.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gridplace_operator import labels


@dataclass(frozen=True)
class ObservedChild:
    """What the watch saw of a child gridplace created."""

    kind: str
    namespace: str
    name: str
    owner_uid: str | None
    spec_hash: str | None
    replicas: int = 0
    ready_replicas: int = 0
    owned: Mapping[str, Any] | None = None  # `owned_fields` of the live object; None: not seen
    # Fleet mode: the Karmada policy that claimed the child ("PropagationPolicy ns/name").
    propagated_by: str | None = None

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> ObservedChild:
        meta = obj.get("metadata", {})
        controller = [o for o in meta.get("ownerReferences") or [] if o.get("controller")]
        return cls(
            kind=obj.get("kind", ""),
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            owner_uid=controller[0].get("uid") if controller else None,
            spec_hash=(meta.get("annotations") or {}).get(labels.SPEC_HASH),
            replicas=int(obj.get("spec", {}).get("replicas") or 0),
            ready_replicas=int(obj.get("status", {}).get("readyReplicas") or 0),
            owned=owned_fields(obj),
            propagated_by=claimed_by(meta.get("annotations") or {}, meta.get("namespace", "")),
        )


# The annotations Karmada writes on a resource template its policy claimed.
POLICY_NAME = "propagationpolicy.karmada.io/name"
POLICY_NAMESPACE = "propagationpolicy.karmada.io/namespace"
CLUSTER_POLICY_NAME = "clusterpropagationpolicy.karmada.io/name"
KARMADA_ANNOTATIONS = (POLICY_NAME, POLICY_NAMESPACE, CLUSTER_POLICY_NAME)


def claimed_by(annotations: Mapping[str, str], namespace: str) -> str | None:
    """The Karmada policy that claimed an object, in words, or None."""
    if name := annotations.get(POLICY_NAME):
        return f"PropagationPolicy {annotations.get(POLICY_NAMESPACE) or namespace}/{name}"
    if name := annotations.get(CLUSTER_POLICY_NAME):
        return f"ClusterPropagationPolicy {name}"
    return None


def owned_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The fields gridplace sets on a child that the API server stores as written (no defaults
    are added to them), so the live object and the manifest compare equal until someone else
    changes them: a Deployment's replicas and each container's image, command, args and plain
    env values; a Service's selector; a PodDisruptionBudget's selector and maxUnavailable; an
    HTTPRoute's parentRefs, hostnames and rules (written with every defaulted field set)."""
    spec = obj.get("spec") or {}
    if obj.get("kind") == "PropagationPolicy":
        # Only what gridplace decides: Karmada's webhook fills in defaults around it.
        placement = spec.get("placement") or {}
        affinity = placement.get("clusterAffinity") or {}
        return {
            "resourceSelectors": [
                [s.get("apiVersion"), s.get("kind"), s.get("name")]
                for s in spec.get("resourceSelectors") or []
            ],
            "clusterNames": list(affinity.get("clusterNames") or []),
            "replicaScheduling": (placement.get("replicaScheduling") or {}).get(
                "replicaSchedulingType"
            ),
        }
    if obj.get("kind") == "HTTPRoute":
        return {
            "parentRefs": copy.deepcopy(spec.get("parentRefs") or []),
            "hostnames": list(spec.get("hostnames") or []),
            "rules": copy.deepcopy(spec.get("rules") or []),
        }
    if obj.get("kind") == "Service":
        return {"selector": dict(spec.get("selector") or {})}
    if obj.get("kind") == "PodDisruptionBudget":
        return {
            "selector": copy.deepcopy(spec.get("selector")),
            "maxUnavailable": spec.get("maxUnavailable"),
        }
    pod = (spec.get("template") or {}).get("spec") or {}
    return {
        "replicas": spec.get("replicas"),
        "containers": [
            {
                "name": c.get("name"),
                "image": c.get("image"),
                "command": list(c.get("command") or []),
                "args": list(c.get("args") or []),
                "env": [(e.get("name"), e.get("value")) for e in c.get("env") or []],
            }
            for c in pod.get("containers") or []
        ],
    }


def drift(wanted: Mapping[str, Any], live: Mapping[str, Any]) -> list[str]:
    """What differs between two `owned_fields`, in words (`replicas 5, wanted 3`)."""
    out: list[str] = []
    for key in sorted(set(wanted) | set(live)):
        if key == "containers":
            continue
        if wanted.get(key) != live.get(key):
            out.append(f"{key} {live.get(key)}, wanted {wanted.get(key)}")
    have = {c["name"]: c for c in live.get("containers") or []}
    for container in wanted.get("containers") or []:
        theirs = have.get(container["name"])
        if theirs is None:
            out.append(f"container {container['name']} missing")
            continue
        for field_ in ("image", "command", "args", "env"):
            if container[field_] != theirs[field_]:
                shown = theirs[field_] if field_ == "image" else "changed"
                out.append(f"container {container['name']} {field_} {shown}")
    return out


@dataclass(frozen=True)
class Apply:
    manifest: dict[str, Any]
    new: bool = False  # no child of this name is known to be ours: never take one over


@dataclass(frozen=True)
class Delete:
    kind: str
    namespace: str
    name: str


Write = Apply | Delete


@dataclass(frozen=True)
class Repair:
    """A child whose live owned fields differ from what gridplace last applied."""

    kind: str
    name: str
    differences: list[str]

    def message(self) -> str:
        changes = "; ".join(self.differences)
        return f"{self.kind} {self.name} was changed outside gridplace ({changes}); restored"


@dataclass(frozen=True)
class Writes:
    make: list[Apply]  # new children and scale-ups: safe at once
    # Route changes, then scale-downs and removals: only once the new capacity is ready.
    brk: list[Write]
    held: bool  # True when `brk` must wait for the scale-ups to become ready
    repairs: list[Repair] = field(default_factory=list)  # drifted children among the writes


def _key(kind: str, name: str) -> tuple[str, str]:
    return (kind, name)


def writes_for(
    desired: Sequence[dict[str, Any]],
    observed: Sequence[ObservedChild],
    owner_uid: str,
    crowded: Collection[tuple[str, str]] = (),
) -> Writes:
    """The writes that turn `observed` into `desired`; unchanged children cost nothing.

    `crowded`: (region, GPU type) pools whose Deployments ask for more GPUs than the pool has.
    A replacement there cannot start before other replicas stop, so nothing waits for it: when
    two models swap pools, each would otherwise hold its old replicas for the other's forever.
    """
    have = {_key(o.kind, o.name): o for o in observed if o.owner_uid == owner_uid}
    want = {_key(d["kind"], d["metadata"]["name"]): d for d in desired}
    make: list[Apply] = []
    brk: list[Write] = []
    repairs: list[Repair] = []
    routes: list[Write] = []
    for key, manifest in want.items():
        current = have.get(key)
        wanted_hash = manifest["metadata"]["annotations"][labels.SPEC_HASH]
        if current is not None and current.spec_hash == wanted_hash:
            differences = (
                [] if current.owned is None else drift(owned_fields(manifest), current.owned)
            )
            if not differences:
                continue
            repairs.append(Repair(current.kind, current.name, differences))
        replicas = manifest.get("spec", {}).get("replicas")
        if manifest["kind"] == "HTTPRoute":
            # Traffic moves once the capacity it moves to is ready, and before any replica it
            # moves from stops: the route is the first of the writes that wait.
            routes.append(Apply(manifest, new=current is None))
        elif current is not None and replicas is not None and replicas < current.replicas:
            brk.append(Apply(manifest))
        else:
            make.append(Apply(manifest, new=current is None))
    for key, current in have.items():
        if key not in want:
            brk.append(Delete(current.kind, current.namespace, current.name))
    # A child goes before the policy that propagates it (fleet mode), so Karmada removes it
    # from its member cluster instead of leaving it there unclaimed.
    brk = routes + sorted(
        brk, key=lambda w: isinstance(w, Delete) and w.kind == "PropagationPolicy"
    )
    # Capacity is still coming while any Deployment that stays has fewer ready pods than wanted.
    coming = any(
        d["spec"]["replicas"] > have[k].ready_replicas if k in have else d["spec"]["replicas"] > 0
        for k, d in want.items()
        if d["kind"] == "Deployment" and labels.pool_of(d) not in crowded
    )
    return Writes(make=make, brk=brk, held=bool(brk) and coming, repairs=repairs)
