"""Fixtures shared by the whole suite.

`cluster` starts the local control plane (kwokctl + Prometheus, see docs/development.md) once per
test session and stops it at the end. It is named after the test process, so that concurrent runs
do not meet, or as $GRIDPLACE_TEST_CLUSTER says. With GRIDPLACE_KUBECONFIG set, it uses that
cluster instead (e.g. kind with kwok installed) and leaves it running; the GPU nodes of the default
topology are applied to it either way. A cluster that cannot start fails the tests with the reason.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridplace_e2e.cluster.build import BuildError
from gridplace_e2e.cluster.handle import (
    CHOSEN_NAME,
    TEST_CLUSTER_PREFIX,
    ClusterHandle,
    session_cluster_name,
)
from gridplace_e2e.cluster.local import ClusterError, LocalCluster, abandoned_clusters, poll
from gridplace_e2e.cluster.topology import DEFAULT_TOPOLOGY, load_topology


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterHandle]:
    external = os.environ.get("GRIDPLACE_KUBECONFIG")
    topology = load_topology(DEFAULT_TOPOLOGY)
    for name in abandoned_clusters(TEST_CLUSTER_PREFIX):  # left by runs that crashed
        LocalCluster(name).down()
    if external:
        # Only Prometheus runs locally; the cluster itself is someone else's to stop.
        local = LocalCluster(session_cluster_name("prometheus"), kubeconfig=Path(external))
    else:
        local = LocalCluster(session_cluster_name())
    try:
        if os.environ.get(CHOSEN_NAME):
            local.down()  # what an earlier run under the same chosen name left behind
        if external:
            local.apply_topology(topology)
            local.start_prometheus()
        else:
            local.up(topology)
    except (BuildError, ClusterError, subprocess.TimeoutExpired) as error:
        with contextlib.suppress(ClusterError, subprocess.TimeoutExpired):
            local.down()
        pytest.fail(f"the test cluster could not start: {error}", pytrace=False)
    assert local.prometheus_url is not None
    yield ClusterHandle(
        kubeconfig=local.kubeconfig,
        prometheus_url=local.prometheus_url,
        bin_dir=local.binaries.bin_dir,
        workdir=local.workdir,
        file_sd_dir=local.file_sd_dir,
        topology=topology,
        local=None if external else local,
    )
    local.down()


@pytest.fixture
def namespace(cluster: ClusterHandle) -> Iterator[str]:
    """A fresh namespace, ready for pods (its default ServiceAccount exists). Deleted afterwards;
    the fixture waits until its pods are gone, so the next test finds the GPUs free again."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)

    def has_default_service_account() -> bool:
        found = cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False)
        return found.returncode == 0

    if not poll(has_default_service_account, 60):
        pytest.fail(f"namespace {name}: the default ServiceAccount never appeared")
    yield name
    # The namespace controller finishes the deletion in the background; only the pods must be gone.
    cluster.kubectl("delete", "namespace", name, "--wait=false")
    pods_gone = poll(
        lambda: not cluster.kubectl("get", "pods", "-n", name, "-o", "name").stdout, 120
    )
    assert pods_gone, f"pods of namespace {name} were not deleted"


REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def crds(cluster: ClusterHandle) -> None:
    """gridplace's CRDs, established, on the session's cluster."""
    cluster.kubectl("apply", "--server-side", "-f", str(REPOSITORY / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")


@pytest.fixture(scope="module")
def regions(cluster: ClusterHandle, crds: None) -> Iterator[None]:
    """The example Regions, removed after the module."""
    cluster.kubectl("apply", "-f", str(REPOSITORY / "examples" / "regions.yaml"))
    yield
    cluster.kubectl("delete", "-f", str(REPOSITORY / "examples" / "regions.yaml"), "--wait=false")
