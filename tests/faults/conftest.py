"""Fixtures of the fault-injection suite: the CRDs and the example Regions on the session's local
cluster. Each test starts (and stops) its own operators, so that a fault one test injects never
reaches another."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gridplace_e2e.cluster.handle import ClusterHandle

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
