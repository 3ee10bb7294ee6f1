"""The operator as users run it (`gridplace run`), against the real local control plane."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gridplace_e2e.cluster.handle import ClusterHandle
from gridplace_e2e.operator_run import OperatorProcess


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
