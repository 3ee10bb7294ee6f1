"""Signal providers against real servers: scripted HTTP servers on 127.0.0.1, the local
cluster's API server (Secrets, ConfigMaps) and its Prometheus."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from kubernetes import client
from scripted_server import ScriptedServer
from signal_kit import FAST, Providers

from gridplace_e2e.cluster.handle import ClusterHandle
from gridplace_operator.kube.refs import KubeRefs
from gridplace_operator.signals.providers.build import build_providers


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer()
    scripted.start()
    yield scripted
    scripted.stop()


@pytest.fixture
def make_providers(
    server: ScriptedServer,
) -> Callable[..., Providers]:
    """Providers pointed at the scripted server; pass an api_client for Secrets/ConfigMaps."""

    def make(api_client: client.ApiClient | None = None, **settings: Any) -> Providers:
        sleeps: list[float] = []
        local = {
            "electricity_maps_url": f"{server.url}/v3",
            "watt_time_url": server.url,
            "prometheus_url": server.url,
        }
        chosen = replace(FAST, **{**local, **settings})

        def sleep(seconds: float) -> None:
            sleeps.append(seconds)  # recorded, not slept: the backoff schedule is under test

        refs = KubeRefs(
            api_client or client.ApiClient(),
            chosen.namespace,
            ttl_seconds=chosen.secret_ttl_seconds,
            timeout_seconds=chosen.http_timeout_seconds,
        )
        built = build_providers(refs, chosen, sleep=sleep)
        return Providers(built, sleeps)

    return make


@pytest.fixture(scope="module")
def kube(cluster: ClusterHandle) -> Iterator[tuple[client.ApiClient, str]]:
    """An API client and a namespace of its own for Secrets and ConfigMaps."""
    api_client = cluster.api_client()
    core = client.CoreV1Api(api_client)
    name = f"sig-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield api_client, name
    core.delete_namespace(name)
