"""Children changed outside gridplace are found from their live fields and restored."""

from __future__ import annotations

import copy
from typing import Any

from test_children import H100, SELECTORS, owner

from gridplace_operator.observe.world import World, child_view
from gridplace_operator.reconcile.children import desired_children
from gridplace_operator.reconcile.writes import (
    Apply,
    ObservedChild,
    drift,
    owned_fields,
    writes_for,
)


def live(manifest: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    """A manifest as the API server returns it: defaults added, status filled in."""
    obj = copy.deepcopy(manifest)
    if obj["kind"] == "Deployment":
        obj["spec"].update(revisionHistoryLimit=10, progressDeadlineSeconds=600)
        container = obj["spec"]["template"]["spec"]["containers"][0]
        container.update(imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termlog")
        obj["status"] = {"readyReplicas": obj["spec"]["replicas"]}
    else:
        obj["spec"].update(clusterIP="10.0.0.1", type="ClusterIP", sessionAffinity="None")
    obj.update(defaults)
    return obj


def observed_of(objs: list[dict[str, Any]]) -> list[ObservedChild]:
    # Through the operator's own slim view of the watch, as the planner sees children.
    return [ObservedChild.from_api(child_view(o)) for o in objs]


def test_defaults_added_by_the_api_server_are_not_drift() -> None:
    children = desired_children(owner(), {("us-east-1", H100): 2}, SELECTORS)
    writes = writes_for(children, observed_of([live(c) for c in children]), "uid-1")
    assert (writes.make, writes.brk, writes.repairs) == ([], [], [])


def test_a_hand_scaled_deployment_is_scaled_back_and_reported() -> None:
    children = desired_children(owner(), {("us-east-1", H100): 2}, SELECTORS)
    objs = [live(c) for c in children]
    dep = next(o for o in objs if o["kind"] == "Deployment")
    dep["spec"]["replicas"] = 5
    writes = writes_for(children, observed_of(objs), "uid-1")
    # Down from 5 to 2 is a scale-down: it goes with the make-before-break writes.
    assert [w.manifest["spec"]["replicas"] for w in writes.brk if isinstance(w, Apply)] == [2]
    assert [(r.kind, r.name) for r in writes.repairs] == [("Deployment", "chat-us-east-1")]
    assert writes.repairs[0].differences == ["replicas 5, wanted 2"]
    assert "chat-us-east-1" in writes.repairs[0].message()


def test_an_image_forced_by_another_manager_is_restored() -> None:
    children = desired_children(owner(), {("us-east-1", H100): 2}, SELECTORS)
    objs = [live(c) for c in children]
    dep = next(o for o in objs if o["kind"] == "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx"
    writes = writes_for(children, observed_of(objs), "uid-1")
    assert [w.manifest["metadata"]["name"] for w in writes.make] == ["chat-us-east-1"]
    assert writes.repairs[0].differences == ["container vllm image nginx"]


def test_a_service_selector_edit_is_restored() -> None:
    children = desired_children(owner(), {("us-east-1", H100): 1}, SELECTORS)
    objs = [live(c) for c in children]
    svc = next(o for o in objs if o["metadata"]["name"] == "chat")
    svc["spec"]["selector"] = {"app": "other"}
    writes = writes_for(children, observed_of(objs), "uid-1")
    assert [(r.kind, r.name) for r in writes.repairs] == [("Service", "chat")]


def test_drift_names_args_and_env_without_their_values() -> None:
    wanted = owned_fields(desired_children(owner(), {("us-east-1", H100): 1}, SELECTORS)[-1])
    changed = copy.deepcopy(wanted)
    changed["containers"][0]["args"].append("--enforce-eager")
    changed["containers"][0]["env"] = [("TOKEN", "secret")]
    assert drift(wanted, changed) == ["container vllm args changed", "container vllm env changed"]


def test_a_hand_edit_wakes_a_refresh_in_the_world_mirror() -> None:
    world = World()
    dep = live(desired_children(owner(), {("us-east-1", H100): 1}, SELECTORS)[-1])
    world.observe_child(dep, deleted=False)
    edited = copy.deepcopy(dep)
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx"
    assert world.observe_child(edited, deleted=False).name == "REFRESH"
    assert world.observe_child(edited, deleted=False).name == "NONE"
