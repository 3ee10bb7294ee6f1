"""The only module that writes to the API server: server-side apply, deletes, status, Events.

Calls are synchronous (plain JSON over the kubernetes client's connection, `rest.py`) and run in
a worker thread; every write is counted so a
steady state can be shown to write nothing. Requests and responses stay plain JSON: the client's
typed models cost memory and time to build, and nothing here reads a write's response.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from gridplace_operator import labels
from gridplace_operator.api.common import GROUP, VERSION
from gridplace_operator.kube.rest import APPLY, Rest, core_path, group_path
from gridplace_operator.observe.inventory import inventory_view, node_view
from gridplace_operator.report.metrics import OperatorMetrics

log = logging.getLogger(__name__)
# What a request answered with an error status raises (`.status` is the HTTP code); the rest
# of the operator catches it by this name and never imports the Kubernetes client itself.
ApiError = ApiException


POD_PAGE = 500
# Concurrent requests the operator may have in flight (worker threads and pooled connections).
CONCURRENCY = 16
# A member cluster's nodes must answer within this through Karmada's proxy, or it counts as lost.
MEMBER_TIMEOUT_S = 10.0


def _discard(response: Any) -> None:
    """Read a raw response to its end and hand its connection back to the pool."""
    response.drain_conn()
    response.release_conn()


def load_client_config(kubeconfig: str | None = None) -> client.ApiClient:
    """In-cluster credentials when running as a Pod, else the kubeconfig."""
    configuration = client.Configuration()
    try:
        if kubeconfig is not None:
            raise config.ConfigException("a kubeconfig was given")
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration
        )
    configuration.connection_pool_maxsize = CONCURRENCY
    return client.ApiClient(configuration)


# Every kind gridplace reads or writes: (API group and version, or None for core/v1; plural).
_KINDS: dict[str, tuple[tuple[str, str] | None, str]] = {
    "InferenceDeployment": ((GROUP, VERSION), "inferencedeployments"),
    "Region": ((GROUP, VERSION), "regions"),
    "Node": (None, "nodes"),
    "Pod": (None, "pods"),
    "Service": (None, "services"),
    "Event": (None, "events"),
    "Deployment": (("apps", "v1"), "deployments"),
    "PodDisruptionBudget": (("policy", "v1"), "poddisruptionbudgets"),
    "HTTPRoute": (("gateway.networking.k8s.io", "v1"), "httproutes"),
    "Gateway": (("gateway.networking.k8s.io", "v1"), "gateways"),
    # Karmada's, in fleet mode: a member cluster, and what propagates a child to it.
    "Cluster": (("cluster.karmada.io", "v1alpha1"), "clusters"),
    "PropagationPolicy": (("policy.karmada.io", "v1alpha1"), "propagationpolicies"),
}
# The kinds of children gridplace writes (server-side apply) and deletes.
CHILD_KINDS = ("Deployment", "PodDisruptionBudget", "Service", "HTTPRoute", "PropagationPolicy")
# Kinds a cluster may not serve (Gateway API, Karmada's): listing them there finds nothing.
OPTIONAL_KINDS = frozenset({"HTTPRoute", "Gateway", "Cluster", "PropagationPolicy"})
CLUSTER_SCOPED = frozenset({"Region", "Node", "Cluster"})


def api_resource(kind: str) -> tuple[str, str, str]:
    """(group, version, plural) of a kind, as a watch names it ("" is the core group)."""
    group_version, plural = _KINDS[kind]
    group, version = group_version or ("", "v1")
    return group, version, plural


def path_of(kind: str, namespace: str | None = None, name: str | None = None) -> str:
    """API path of a kind's collection (all namespaces when `namespace` is None) or object."""
    group_version, plural = _KINDS[kind]
    if group_version is None:
        return core_path(plural, namespace, name)
    return group_path(*group_version, plural, namespace, name)


def member_proxy(member: str) -> str:
    """Path prefix under which Karmada's aggregated API server proxies a member's API."""
    return path_of("Cluster", None, member) + "/proxy"


class NotLeaderError(RuntimeError):
    """A write was refused because this operator does not hold the leader Lease (any more)."""


class Kube:
    def __init__(
        self,
        api_client: client.ApiClient,
        metrics: OperatorMetrics,
        *,
        may_write: Callable[[], bool] = lambda: True,
    ) -> None:
        self.rest = Rest(api_client)
        self.metrics = metrics
        self.may_write = may_write  # the leader election's fence; always True without one

    def _count(self, kind: str, verb: str) -> None:
        """Every write passes here first: a standby, or a leader that lost its Lease, stops."""
        if not self.may_write():
            raise NotLeaderError(f"not the leader: {verb} of a {kind} refused")
        self.metrics.writes.labels(kind=kind, verb=verb).inc()

    # Reads -----------------------------------------------------------------------------------
    async def list_gpu_pods(self, member: str | None = None) -> list[dict[str, Any]]:
        """Pods that hold or may hold GPUs (finished pods hold none), reduced to what the GPU
        inventory reads; a member cluster's through Karmada's cluster proxy. Listed in pages so
        a large cluster never sits in memory whole."""
        prefix = member_proxy(member) if member else ""

        def call() -> list[dict[str, Any]]:
            pods: list[dict[str, Any]] = []
            token: str | None = None
            while True:
                # Raw JSON: the typed models cost more to build than the planner needs.
                query: dict[str, str | int] = {
                    "fieldSelector": "status.phase!=Succeeded,status.phase!=Failed",
                    "limit": POD_PAGE,
                }
                if token:
                    query["continue"] = token
                page = self.rest.get_json(
                    prefix + path_of("Pod"),
                    query=query,
                    timeout=MEMBER_TIMEOUT_S if member else None,
                )
                pods.extend(inventory_view(pod) for pod in page["items"])
                token = page.get("metadata", {}).get("continue")
                if not token:
                    return pods

        return await asyncio.to_thread(call)

    async def list_member_nodes(self, member: str) -> list[dict[str, Any]]:
        """A member cluster's Nodes, reduced to what the GPU inventory reads, through Karmada's
        cluster proxy (bounded in time: a lost member must not stall the plan)."""

        def call() -> list[dict[str, Any]]:
            path = member_proxy(member) + path_of("Node")
            items = self.rest.get_json(path, timeout=MEMBER_TIMEOUT_S)["items"]
            return [node_view(node) for node in items]

        return await asyncio.to_thread(call)

    def list_all(
        self, kind: str, *, label_selector: str = "", namespaces: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """Every object of a kind gridplace watches, as plain JSON (synchronous; used at start).

        Namespaced kinds are listed in `namespaces` only, when given, so that namespace-scoped
        RBAC suffices.
        """
        query = {"labelSelector": label_selector} if label_selector else {}
        scoped = namespaces and kind not in CLUSTER_SCOPED
        paths = [path_of(kind, ns) for ns in namespaces] if scoped else [path_of(kind)]
        found: list[dict[str, Any]] = []
        for path in paths:
            try:
                items = self.rest.get_json(path, query=query)["items"]
            except ApiException as err:
                if err.status != 404 or kind not in OPTIONAL_KINDS:
                    raise
                items = []  # the Gateway API CRDs are not installed
            found.extend({**item, "kind": kind} for item in items)
        return found

    # Writes ----------------------------------------------------------------------------------
    async def apply(self, obj: Mapping[str, Any], *, force: bool = True) -> None:
        """Server-side apply of a child (CHILD_KINDS) under gridplace's field manager.

        `force=False` for objects not known to be gridplace's: the API server then answers 409
        instead of handing fields another manager owns over to gridplace.
        """
        kind = obj["kind"]
        if kind not in CHILD_KINDS:
            raise ValueError(f"gridplace does not apply objects of kind {kind}")
        meta = obj["metadata"]
        self._count(kind, "apply")
        response = await asyncio.to_thread(
            self.rest.request,
            "PATCH",
            path_of(kind, meta["namespace"], meta["name"]),
            query={"fieldManager": labels.FIELD_MANAGER, "force": "true" if force else "false"},
            body=dict(obj),
            content_type=APPLY,
        )
        _discard(response)

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        self._count(kind, "delete")
        try:
            response = await asyncio.to_thread(
                self.rest.request,
                "DELETE",
                path_of(kind, namespace, name),
                query={"propagationPolicy": "Background"},
            )
        except ApiException as err:
            if err.status != 404:
                raise
            return
        _discard(response)

    async def apply_status(
        self, kind: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> bool:
        """Server-side apply of a custom object's status subresource; False when the object is
        gone."""
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}}
        body["status"] = dict(status)
        self._count(kind, "apply-status")
        try:
            response = await asyncio.to_thread(
                self.rest.request,
                "PATCH",
                path_of(kind, namespace, name) + "/status",
                query={"fieldManager": labels.FIELD_MANAGER, "force": "true"},
                body=body,
                content_type=APPLY,
            )
        except ApiException as err:
            if err.status != 404:  # deleted meanwhile: nothing left to report on
                raise
            return False
        _discard(response)
        return True

    async def exists(self, kind: str, namespace: str | None, name: str) -> bool:
        """Whether the API server still has the object (a deletion a watch may have missed)."""
        try:
            response = await asyncio.to_thread(
                self.rest.request, "GET", path_of(kind, namespace, name)
            )
        except ApiException as err:
            if err.status != 404:
                raise
            return False
        _discard(response)
        return True

    async def event(
        self,
        regarding: Mapping[str, Any],
        *,
        reason: str,
        message: str,
        warning: bool = False,
    ) -> None:
        """A core/v1 Event about `regarding` (an object as the API returns it)."""
        meta = regarding["metadata"]
        namespace = meta.get("namespace") or "default"
        now = datetime.now(UTC).isoformat()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": regarding.get("apiVersion"),
                "kind": regarding.get("kind"),
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": labels.CONTROLLER_NAME},
            "reportingComponent": labels.CONTROLLER_NAME,
            "reportingInstance": labels.FIELD_MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self._count("Event", "create")
        try:
            response = await asyncio.to_thread(
                self.rest.request, "POST", path_of("Event", namespace), body=body
            )
        except ApiException as err:  # an Event is best effort; never fail a cycle for it
            log.warning("could not record Event %s on %s: %s", reason, meta["name"], err.reason)
            return
        _discard(response)
