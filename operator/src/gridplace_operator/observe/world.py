"""The operator's in-memory mirror of the objects it plans with, filled by the kopf handlers.

Each `observe_*` returns whether the change matters for planning (`replan`), only for status and
children (`refresh`), or not at all — so the operator's own status writes and node heartbeats do
not set off new solves.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from gridplace_operator import labels
from gridplace_operator.api.inference_deployment import InferenceDeploymentSpec
from gridplace_operator.api.parsed import Rejection, parse_spec
from gridplace_operator.observe.fleet import MemberState
from gridplace_operator.observe.inventory import node_is_schedulable, node_view, parse_quantity
from gridplace_operator.reconcile.routes import GatewayView
from gridplace_operator.reconcile.writes import KARMADA_ANNOTATIONS, owned_fields

Obj = Mapping[str, Any]


class Change(Enum):
    NONE = 0
    REFRESH = 1
    REPLAN = 2


def _slim(obj: Obj) -> dict[str, Any]:
    """A private copy without managedFields, often the bulk of an object and never read here."""
    body = copy.deepcopy(dict(obj))
    body.get("metadata", {}).pop("managedFields", None)
    return body


# The spec hash, and which Karmada policy claimed the child (fleet mode).
_KEPT_ANNOTATIONS = frozenset({labels.SPEC_HASH, *KARMADA_ANNOTATIONS})


def child_view(obj: Obj) -> dict[str, Any]:
    """What the planner reads of a Deployment, PodDisruptionBudget, Service, HTTPRoute or
    PropagationPolicy it owns."""
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    view_meta: dict[str, Any] = {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "labels": meta.get("labels") or {},
        "annotations": {k: v for k, v in annotations.items() if k in _KEPT_ANNOTATIONS},
        "ownerReferences": meta.get("ownerReferences") or [],
    }
    if meta.get("deletionTimestamp"):
        view_meta["deletionTimestamp"] = meta["deletionTimestamp"]
    spec = obj.get("spec") or {}
    if obj.get("kind") == "PropagationPolicy":
        placement = spec.get("placement") or {}
        return {
            "kind": "PropagationPolicy",
            "metadata": view_meta,
            "spec": {
                "resourceSelectors": copy.deepcopy(spec.get("resourceSelectors") or []),
                "placement": {
                    k: copy.deepcopy(placement[k])
                    for k in ("clusterAffinity", "replicaScheduling")
                    if k in placement
                },
            },
        }
    if obj.get("kind") == "HTTPRoute":
        return {
            "kind": "HTTPRoute",
            "metadata": view_meta,
            "spec": {
                k: copy.deepcopy(spec[k]) for k in ("parentRefs", "hostnames", "rules") if k in spec
            },
        }
    pod_spec = (spec.get("template") or {}).get("spec") or {}
    kept = ("name", "image", "command", "args", "env", "resources")
    return {
        "kind": obj.get("kind"),
        "metadata": view_meta,
        "spec": {
            "replicas": spec.get("replicas"),
            **({"selector": spec.get("selector")} if obj.get("kind") != "Deployment" else {}),
            **(
                {"maxUnavailable": spec.get("maxUnavailable")}
                if obj.get("kind") == "PodDisruptionBudget"
                else {}
            ),
            # The GPUs each replica asks for (over-committed pools) and the fields gridplace
            # owns (drift from what it applied).
            "template": {
                "spec": {
                    "containers": [
                        {k: c[k] for k in kept if k in c} for c in pod_spec.get("containers") or []
                    ]
                }
            },
        },
        "status": {"readyReplicas": (obj.get("status") or {}).get("readyReplicas")},
    }


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata", {})
    return (meta.get("namespace") or "", meta.get("name") or "")


def node_fingerprint(node: Obj) -> str:
    """What of a Node the planner uses; heartbeats leave it unchanged."""
    meta = node.get("metadata", {})
    allocatable = (node.get("status", {}).get("allocatable") or {}).get(labels.GPU_RESOURCE)
    return json.dumps(
        [
            meta.get("labels") or {},
            parse_quantity(allocatable),
            node_is_schedulable(node),
            node.get("spec", {}).get("taints") or [],
        ],
        sort_keys=True,
    )


def child_fingerprint(obj: Obj) -> str:
    meta = obj.get("metadata", {})
    status = obj.get("status") or {}
    return json.dumps(
        [
            (meta.get("annotations") or {}).get(labels.SPEC_HASH),
            [(meta.get("annotations") or {}).get(k) for k in KARMADA_ANNOTATIONS],
            status.get("readyReplicas"),
            meta.get("deletionTimestamp") is not None,
            owned_fields(obj),  # replicas, images, args: a hand edit wakes a repair
        ]
    )


# What losing an object of each collection sets off.
_LOSS = {
    "ideps": Change.REPLAN,
    "regions": Change.REPLAN,
    "nodes": Change.REPLAN,
    "children": Change.REFRESH,
    "gateways": Change.REFRESH,
    "members": Change.REPLAN,
}


@dataclass
class World:
    ideps: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # Each InferenceDeployment's spec, parsed once per generation (status writes keep it).
    specs: dict[tuple[str, str], InferenceDeploymentSpec | Rejection] = field(default_factory=dict)
    regions: dict[str, dict[str, Any]] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    children: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    gateways: dict[tuple[str, str], GatewayView] = field(default_factory=dict)
    # Karmada's member clusters (fleet mode), by name.
    members: dict[str, MemberState] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    _node_prints: dict[str, str] = field(default_factory=dict)
    _child_prints: dict[tuple[str, str, str], str] = field(default_factory=dict)
    _seen: dict[tuple[str, Hashable], float] = field(default_factory=dict)  # last event, by key

    def _saw(self, collection: str, key: Hashable, deleted: bool) -> None:
        if deleted:
            self._seen.pop((collection, key), None)
        else:
            self._seen[(collection, key)] = self.clock()

    def resync(self, listed: World, listed_at: float) -> Change:
        """Forget what a full listing begun at `listed_at` (on `clock`) no longer holds and no
        event has mentioned since: a deletion the watches missed. A watch that reconnects lists
        what exists, so an object deleted while it was away never sends a DELETED event."""
        change = Change.NONE
        for collection, lost in _LOSS.items():
            mine, theirs = getattr(self, collection), getattr(listed, collection)
            for key in set(mine) - set(theirs):
                if self._seen.get((collection, key), 0.0) < listed_at:
                    del mine[key]
                    self._seen.pop((collection, key), None)
                    derived: dict[str, dict[Any, Any]] = {
                        "ideps": self.specs,
                        "nodes": self._node_prints,
                        "children": self._child_prints,
                    }
                    derived.get(collection, {}).pop(key, None)
                    change = max(change, lost, key=lambda c: c.value)
        return change

    @staticmethod
    def _generation_changed(old: Obj | None, new: Obj) -> bool:
        if old is None:
            return True
        return bool(
            old.get("metadata", {}).get("generation") != new.get("metadata", {}).get("generation")
        )

    def observe_idep(self, body: Obj, deleted: bool) -> Change:
        key = _key(body)
        self._saw("ideps", key, deleted)
        if deleted:
            self.specs.pop(key, None)
            return Change.REPLAN if self.ideps.pop(key, None) is not None else Change.NONE
        old = self.ideps.get(key)
        self.ideps[key] = _slim(body)
        if not self._generation_changed(old, body) and key in self.specs:
            return Change.NONE
        self.specs[key] = parse_spec(body)
        return Change.REPLAN

    def spec_of(self, body: Obj) -> InferenceDeploymentSpec | Rejection:
        """An InferenceDeployment's parsed spec: the one kept for it, or parsed now (an object
        forgotten while a cycle was still using it)."""
        kept = self.specs.get(_key(body))
        return kept if kept is not None else parse_spec(body)

    def observe_region(self, body: Obj, deleted: bool) -> Change:
        name = _key(body)[1]
        self._saw("regions", name, deleted)
        if deleted:
            return Change.REPLAN if self.regions.pop(name, None) is not None else Change.NONE
        old = self.regions.get(name)
        self.regions[name] = _slim(body)
        return Change.REPLAN if self._generation_changed(old, body) else Change.NONE

    def observe_node(self, body: Obj, deleted: bool) -> Change:
        name = _key(body)[1]
        self._saw("nodes", name, deleted)
        if deleted:
            self._node_prints.pop(name, None)
            return Change.REPLAN if self.nodes.pop(name, None) is not None else Change.NONE
        self.nodes[name] = node_view(body)
        printed = node_fingerprint(body)
        changed = self._node_prints.get(name) != printed
        self._node_prints[name] = printed
        return Change.REPLAN if changed else Change.NONE

    def observe_child(self, body: Obj, deleted: bool) -> Change:
        namespace, name = _key(body)
        key = (str(body.get("kind")), namespace, name)
        self._saw("children", key, deleted)
        if deleted:
            self._child_prints.pop(key, None)
            return Change.REFRESH if self.children.pop(key, None) is not None else Change.NONE
        self.children[key] = child_view(body)
        printed = child_fingerprint(body)
        changed = self._child_prints.get(key) != printed
        self._child_prints[key] = printed
        return Change.REFRESH if changed else Change.NONE

    def observe_gateway(self, body: Obj, deleted: bool) -> Change:
        """A Gateway routes may attach to: its appearance, loss or a renamed listener changes
        which routes can be written and the Routed condition, not the plan."""
        key = _key(body)
        self._saw("gateways", key, deleted)
        if deleted:
            return Change.REFRESH if self.gateways.pop(key, None) is not None else Change.NONE
        view = GatewayView.from_api(body)
        changed = self.gateways.get(key) != view
        self.gateways[key] = view
        return Change.REFRESH if changed else Change.NONE

    def observe_member(self, body: Obj, deleted: bool) -> Change:
        """A Karmada member cluster: one appearing, going or changing readiness re-plans (its
        regions gain or lose their GPUs)."""
        name = _key(body)[1]
        self._saw("members", name, deleted)
        if deleted:
            return Change.REPLAN if self.members.pop(name, None) is not None else Change.NONE
        state = MemberState.from_api(body)
        old = self.members.get(name)
        self.members[name] = state
        return Change.REPLAN if old is None or old.ready != state.ready else Change.NONE
