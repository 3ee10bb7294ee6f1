"""The operator as users run it (`gridplace run`), against the real local control plane."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gridplace_e2e.cluster.handle import ClusterHandle
from gridplace_e2e.operator_run import OperatorProcess

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def crds(cluster: ClusterHandle) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")


@pytest.fixture(scope="module")
def regions(cluster: ClusterHandle, crds: None) -> Iterator[None]:
    cluster.kubectl("apply", "-f", str(ROOT / "examples" / "regions.yaml"))
    yield
    cluster.kubectl("delete", "-f", str(ROOT / "examples" / "regions.yaml"), "--wait=false")


@pytest.fixture(scope="module")
def operator(
    cluster: ClusterHandle, regions: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        cluster.kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log"
    )
    try:
        process.start()
    except RuntimeError as err:
        pytest.fail(str(err), pytrace=False)
    yield process
    process.stop()
