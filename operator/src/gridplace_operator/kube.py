"""The only module that writes to the API server: server-side apply, deletes, status, Events.

Calls are synchronous (kubernetes client) and run in a worker thread; every write is counted so a
steady state can be shown to write nothing. Requests and responses stay plain JSON: the client's
typed models cost memory and time to build, and nothing here reads a write's response.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from gridplace_operator import labels
from gridplace_operator.api.common import GROUP, VERSION
from gridplace_operator.inventory import inventory_view
from gridplace_operator.metrics import OperatorMetrics

log = logging.getLogger(__name__)
APPLY = "application/apply-patch+yaml"


POD_PAGE = 500
# Concurrent requests the operator may have in flight (worker threads and pooled connections).
CONCURRENCY = 16


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


class Kube:
    def __init__(self, api_client: client.ApiClient, metrics: OperatorMetrics) -> None:
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.metrics = metrics

    def _count(self, kind: str, verb: str) -> None:
        self.metrics.writes.labels(kind=kind, verb=verb).inc()

    # Reads -----------------------------------------------------------------------------------
    async def list_gpu_pods(self) -> list[dict[str, Any]]:
        """Pods that hold or may hold GPUs (finished pods hold none), reduced to what the GPU
        inventory reads. Listed in pages so a large cluster never sits in memory whole."""

        def call() -> list[dict[str, Any]]:
            pods: list[dict[str, Any]] = []
            token: str | None = None
            while True:
                # Raw JSON: the typed models cost more to build than the planner needs.
                response: Any = self.core.list_pod_for_all_namespaces(
                    field_selector="status.phase!=Succeeded,status.phase!=Failed",
                    limit=POD_PAGE,
                    _continue=token,
                    _preload_content=False,
                )
                page = json.loads(response.data)
                pods.extend(inventory_view(pod) for pod in page["items"])
                token = page.get("metadata", {}).get("continue")
                if not token:
                    return pods

        return await asyncio.to_thread(call)

    def list_all(
        self, kind: str, *, label_selector: str = "", namespaces: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """Every object of a kind gridplace watches, as plain JSON (synchronous; used at start).

        Namespaced kinds are listed in `namespaces` only, when given, so that namespace-scoped
        RBAC suffices.
        """
        raw: dict[str, Any] = {"_preload_content": False}
        if label_selector:
            raw["label_selector"] = label_selector
        cluster_wide: dict[str, Callable[[], Any]] = {
            "InferenceDeployment": lambda: self.custom.list_cluster_custom_object(
                GROUP, VERSION, "inferencedeployments", **raw
            ),
            "Region": lambda: self.custom.list_cluster_custom_object(
                GROUP, VERSION, "regions", **raw
            ),
            "Node": lambda: self.core.list_node(**raw),
            "Deployment": lambda: self.apps.list_deployment_for_all_namespaces(**raw),
            "Service": lambda: self.core.list_service_for_all_namespaces(**raw),
        }
        in_namespace: dict[str, Callable[[str], Any]] = {
            "InferenceDeployment": lambda ns: self.custom.list_namespaced_custom_object(
                GROUP, VERSION, ns, "inferencedeployments", **raw
            ),
            "Deployment": lambda ns: self.apps.list_namespaced_deployment(ns, **raw),
            "Service": lambda ns: self.core.list_namespaced_service(ns, **raw),
        }
        if namespaces and kind in in_namespace:
            responses = [in_namespace[kind](ns) for ns in namespaces]
        else:
            responses = [cluster_wide[kind]()]
        return [
            {**item, "kind": kind}
            for response in responses
            for item in json.loads(response.data)["items"]
        ]

    # Writes ----------------------------------------------------------------------------------
    async def apply(self, obj: Mapping[str, Any], *, force: bool = True) -> None:
        """Server-side apply of a Deployment or Service under gridplace's field manager.

        `force=False` for objects not known to be gridplace's: the API server then answers 409
        instead of handing fields another manager owns over to gridplace.
        """
        kind = obj["kind"]
        meta = obj["metadata"]
        method: Callable[..., Any]
        if kind == "Deployment":
            method = self.apps.patch_namespaced_deployment
        elif kind == "Service":
            method = self.core.patch_namespaced_service
        else:
            raise ValueError(f"gridplace does not apply objects of kind {kind}")
        self._count(kind, "apply")
        response = await asyncio.to_thread(
            method,
            meta["name"],
            meta["namespace"],
            dict(obj),
            field_manager=labels.FIELD_MANAGER,
            force=force,
            _content_type=APPLY,
            _preload_content=False,
        )
        _discard(response)

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        method = {
            "Deployment": self.apps.delete_namespaced_deployment,
            "Service": self.core.delete_namespaced_service,
        }[kind]
        self._count(kind, "delete")
        try:
            response = await asyncio.to_thread(
                method, name, namespace, propagation_policy="Background", _preload_content=False
            )
        except ApiException as err:
            if err.status != 404:
                raise
            return
        _discard(response)

    async def apply_status(
        self, plural: str, namespace: str | None, name: str, status: Mapping[str, Any], kind: str
    ) -> None:
        """Server-side apply of a custom object's status subresource."""
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}}
        body["status"] = dict(status)
        self._count(kind, "apply-status")
        options: dict[str, Any] = {
            "field_manager": labels.FIELD_MANAGER,
            "force": True,
            "_content_type": APPLY,
            "_preload_content": False,
        }
        try:
            if namespace is None:
                response = await asyncio.to_thread(
                    self.custom.patch_cluster_custom_object_status,
                    GROUP,
                    VERSION,
                    plural,
                    name,
                    body,
                    **options,
                )
            else:
                response = await asyncio.to_thread(
                    self.custom.patch_namespaced_custom_object_status,
                    GROUP,
                    VERSION,
                    namespace,
                    plural,
                    name,
                    body,
                    **options,
                )
        except ApiException as err:
            if err.status != 404:  # deleted meanwhile: nothing left to report on
                raise
            return
        _discard(response)

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
        body: Any = {  # plain JSON, which the client sends as it is (typed as its model)
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
                self.core.create_namespaced_event, namespace, body, _preload_content=False
            )
        except ApiException as err:  # an Event is best effort; never fail a cycle for it
            log.warning("could not record Event %s on %s: %s", reason, meta["name"], err.reason)
            return
        _discard(response)
