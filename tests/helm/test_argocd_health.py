"""The Argo CD health checks' decision table, on status shapes the operator writes (the cluster
tests run the same scripts on live objects)."""

from __future__ import annotations

from typing import Any

import pytest
from argocd_health import health, scripts


def _obj(
    kind: str, generation: int, *conditions: dict[str, Any], observed: int | None = None
) -> dict[str, Any]:
    obj: dict[str, Any] = {"kind": kind, "metadata": {"name": "x", "generation": generation}}
    if conditions:
        obj["status"] = {"conditions": list(conditions)}
        if observed is not None:
            obj["status"]["observedGeneration"] = observed
    return obj


def _ready(status: str, reason: str, generation: int = 1, message: str = "m") -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def test_both_kinds_have_a_check() -> None:
    assert scripts().keys() == {"InferenceDeployment", "Region"}


CASES = {
    "no-status": (
        _obj("InferenceDeployment", 1),
        "Progressing",
        "Waiting for gridplace to reconcile",
    ),
    "available": (
        _obj("InferenceDeployment", 1, _ready("True", "Available")),
        "Healthy",
        "Available: m",
    ),
    "advised": (
        _obj("InferenceDeployment", 3, _ready("True", "Advised", 3)),
        "Healthy",
        "Advised: m",
    ),
    "old-generation": (
        _obj("InferenceDeployment", 2, _ready("True", "Available", 1)),
        "Progressing",
        "Waiting for gridplace to observe generation 2",
    ),
    "status-level-generation": (
        _obj(
            "InferenceDeployment",
            2,
            {"type": "Ready", "status": "True", "reason": "Available"},
            observed=1,
        ),
        "Progressing",
        "Waiting for gridplace to observe generation 2",
    ),
    "pending": (
        _obj("InferenceDeployment", 1, _ready("Unknown", "Pending")),
        "Progressing",
        "Pending: m",
    ),
    "starting": (
        _obj("InferenceDeployment", 1, _ready("False", "ReplicasNotReady")),
        "Progressing",
        "ReplicasNotReady: m",
    ),
    "invalid": (
        _obj("InferenceDeployment", 1, _ready("False", "InvalidSpec")),
        "Degraded",
        "InvalidSpec: m",
    ),
    "not-placed": (
        _obj("InferenceDeployment", 1, _ready("False", "NotPlaced")),
        "Degraded",
        "NotPlaced: m",
    ),
    "region-gpus": (_obj("Region", 1, _ready("True", "GPUsFound")), "Healthy", "GPUsFound: m"),
    "region-no-gpus": (_obj("Region", 1, _ready("False", "NoGPUs")), "Degraded", "NoGPUs: m"),
    "region-new-spec": (
        _obj("Region", 4, _ready("False", "NoGPUs", 3)),
        "Progressing",
        "Waiting for gridplace to observe generation 4",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_health(case: str) -> None:
    obj, status, message = CASES[case]
    assert health(obj) == (status, message)
