"""What tests (and benchmarks) get to work with a running cluster, whichever cluster it is."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kubernetes.client import ApiClient

from gridplace_e2e.cluster.local import LocalCluster, api_client, run_kubectl
from gridplace_e2e.cluster.topology import Topology

TEST_CLUSTER_PREFIX = "gridplace-test"
CHOSEN_NAME = "GRIDPLACE_TEST_CLUSTER"  # environment variable: a name of one's own choosing


def session_cluster_name(suffix: str = "") -> str:
    """The name of a cluster owned by this test process: $GRIDPLACE_TEST_CLUSTER, or else
    `gridplace-test-<pid>`, so that concurrent test runs on one machine each get their own and a
    later run can remove those whose process has ended."""
    base = os.environ.get(CHOSEN_NAME) or f"{TEST_CLUSTER_PREFIX}-{os.getpid()}"
    return base + (f"-{suffix}" if suffix else "")


@dataclass(frozen=True)
class ClusterHandle:
    kubeconfig: Path
    prometheus_url: str
    bin_dir: Path  # kubectl, helm, kwokctl, etcd, kube-*, prometheus
    workdir: Path  # this cluster's own folder (Prometheus config, data, logs)
    file_sd_dir: Path  # Prometheus scrapes the targets listed in *.json / *.yaml files put here
    topology: Topology  # the GPU nodes the cluster was given
    local: LocalCluster | None  # None when running against an external cluster

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """kubectl v1.34 against this cluster; with check, a failure raises ClusterError."""
        return run_kubectl(
            self.bin_dir / "kubectl", self.kubeconfig, *args, input=input, check=check
        )

    def api_client(self) -> ApiClient:
        return api_client(self.kubeconfig)
