"""Fixtures of the chart tests: the helm binary (built once from its Go module, like the cluster's
binaries) and the manifest linter."""

from __future__ import annotations

from pathlib import Path

import pytest
from helmchart import Helm

from gridplace_e2e.cluster.build import BuildError, ensure_binaries


@pytest.fixture(scope="session")
def helm() -> Helm:
    try:
        return Helm(ensure_binaries(progress=lambda _: None).helm)
    except BuildError as err:
        pytest.fail(f"helm could not be built: {err}", pytrace=False)


@pytest.fixture(scope="session")
def kube_score() -> Path:
    try:
        return ensure_binaries(progress=lambda _: None).kube_score
    except BuildError as err:
        pytest.fail(f"kube-score could not be built: {err}", pytrace=False)
