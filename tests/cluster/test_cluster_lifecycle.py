"""`gridplace-cluster up/down` on a cluster of its own, beside the session's test cluster."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
from cluster_kit import is_loopback, listening_addresses

from gridplace_e2e.cluster.build import cache_dir
from gridplace_e2e.cluster.handle import ClusterHandle, session_cluster_name
from gridplace_e2e.cluster.local import CLUSTER_PROGRAMS, LocalCluster, poll
from gridplace_e2e.cluster.topology import parse_topology

pytestmark = pytest.mark.cluster

SMALL = parse_topology(
    {"regions": {"us-west-1": [{"product": "NVIDIA-A100-SXM4-80GB", "nodes": 1}]}}
)


def test_up_is_idempotent_heals_and_down_leaves_nothing(cluster: ClusterHandle) -> None:
    other = LocalCluster(session_cluster_name("lifecycle"))
    try:
        other.up(SMALL)
        first = other.status()
        assert first.api_server_ready and first.prometheus_ready and first.nodes == 1
        assert set(first.processes.values()) == CLUSTER_PROGRAMS

        other.up(SMALL)  # again: nothing restarts, nothing moves
        second = other.status()
        assert second.processes == first.processes
        assert second.prometheus_url == first.prometheus_url
        assert second.kubeconfig == first.kubeconfig and second.nodes == 1

        # Its own ports, next to the session's cluster, and none reachable from outside.
        addresses = listening_addresses(set(first.processes))
        assert addresses and all(is_loopback(a) for a in addresses), addresses
        if cluster.local is not None:
            session_ports = listening_addresses(set(cluster.local.processes()))
            assert not addresses & session_ports

        # A component that died is brought back by the next `up`.
        (scheduler,) = [pid for pid, name in first.processes.items() if name == "kube-scheduler"]
        os.kill(scheduler, signal.SIGKILL)
        assert poll(lambda: "kube-scheduler" not in other.processes().values(), 30)
        other.up(SMALL)
        assert set(other.processes().values()) == CLUSTER_PROGRAMS
        assert other.status().nodes == 1
    finally:
        other.down()

    assert other.processes() == {}
    assert not other.workdir.exists() and not other.kwok_cluster_dir.exists()
    assert not other.status().api_server_ready
    if cluster.local is not None:
        assert cluster.local.api_server_ready(), "stopping one cluster must not touch another"


def test_kwokctl_is_told_to_download_nothing(tmp_path: Path) -> None:
    probe = LocalCluster("dry-run", root=tmp_path)
    result = probe.kwokctl("--dry-run", *probe.kwokctl_create_args())
    assert result.returncode == 0, result.stderr
    plan = result.stdout
    # kwokctl "downloads" each binary by linking the path it is given: all are in our cache.
    sources = re.findall(r"^# Download (\S+) to ", plan, flags=re.MULTILINE)
    assert len(sources) == 5, plan
    assert all(Path(source).is_relative_to(cache_dir()) for source in sources), sources
    # The only other URL names the service-account issuer, an identifier that is never fetched.
    hosts = set(re.findall(r"https?://([^/\s:]+)", plan)) - {"kubernetes.default.svc.cluster.local"}
    assert hosts == {"127.0.0.1"}
    assert "--bind-address=0.0.0.0" not in plan
