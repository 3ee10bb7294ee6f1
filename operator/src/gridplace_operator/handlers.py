"""kopf handlers: record what changed in the World and wake the planning loop. Nothing else;
starting and stopping the operator's parts is `main`'s.

No handler here is a create/update/delete handler, so kopf adds no finalizer: deleting an
InferenceDeployment never waits for the operator, and owner references remove its children.
"""

from __future__ import annotations

from typing import Any

import kopf

from gridplace_operator import main
from gridplace_operator.api.common import GROUP, VERSION
from gridplace_operator.kube.client import CHILD_KINDS, api_resource
from gridplace_operator.observe.world import Change


def _wake(memo: Any, change: Change) -> None:
    if change is Change.REPLAN:
        memo.loop.request(replan=True)
    elif change is Change.REFRESH:
        memo.loop.request(replan=False)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    await main.start(settings, memo)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await main.stop(memo)


@kopf.on.event(GROUP, VERSION, "inferencedeployments")
async def inference_deployment_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _wake(memo, memo.world.observe_idep(event["object"], event["type"] == "DELETED"))


@kopf.on.event(GROUP, VERSION, "regions")
async def region_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _wake(memo, memo.world.observe_region(event["object"], event["type"] == "DELETED"))


@kopf.on.event("", "v1", "nodes")
async def node_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _wake(memo, memo.world.observe_node(event["object"], event["type"] == "DELETED"))


def _watch_child(kind: str) -> None:
    """One watch per kind of child gridplace writes: each event updates the World and may wake
    the loop. Gateway API's HTTPRoutes are watched once their CRDs are installed."""
    group, version, plural = api_resource(kind)

    async def child_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        body = {**event["object"], "kind": kind}
        _wake(memo, memo.world.observe_child(body, event["type"] == "DELETED"))

    kopf.on.event(group, version, plural, labels=main.OWNED, id=f"{kind}-event")(child_event)


for _child_kind in CHILD_KINDS:
    _watch_child(_child_kind)


# The Gateways routes attach to (gateway.networking.k8s.io/v1); without the CRDs kopf watches
# nothing here until they are installed.
@kopf.on.event("gateway.networking.k8s.io", "v1", "gateways")
async def gateway_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _wake(memo, memo.world.observe_gateway(event["object"], event["type"] == "DELETED"))


# Karmada's member clusters (fleet mode: gridplace runs against the Karmada API server). Where
# the Cluster API is not served, kopf watches nothing here.
@kopf.on.event("cluster.karmada.io", "v1alpha1", "clusters")
async def member_cluster_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _wake(memo, memo.world.observe_member(event["object"], event["type"] == "DELETED"))
