"""Rendered manifests through kube-score, a maintained Kubernetes manifest linter (built from its
Go module at a pinned version). Every finding is either fixed in the chart or listed below with
the reason it is by design; an exception that no longer fires is an error too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from helmchart import Helm, kube_score_report

# (kind, kube-score check id) -> why the chart does it this way
EXCEPTIONS = {
    ("Deployment", "deployment-replicas"): (
        "one replica by default: only the Lease holder plans and writes, and a standby costs its"
        " memory; replicaCount: 2 adds one that takes over within 15 s"
    ),
    ("Deployment", "container-image-pull-policy"): (
        "the image is an immutable release tag (the chart's appVersion) or a digest; "
        "IfNotPresent is right for it"
    ),
    ("Deployment", "container-ephemeral-storage-request-and-limit"): (
        "the root filesystem is read-only; the only writable path is /tmp, an emptyDir with a "
        "sizeLimit, and a request would keep the pod off nodes that report no ephemeral storage"
    ),
    ("Deployment", "pod-networkpolicy"): (
        "the chart's NetworkPolicy restricts ingress only: egress goes to the API server, "
        "Prometheus and signal APIs, whose addresses differ in every cluster"
    ),
}
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "watch-namespaces-and-named-secrets": {
        "watchNamespaces": ["serving"],
        "signals": {"secrets": {"access": "named", "names": ["electricity-maps"]}},
        "metrics": {"serviceMonitor": {"enabled": True}, "vllmPodMonitor": {"enabled": True}},
    },
}


def findings(binary: Path, manifests: str) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for obj in kube_score_report(binary, manifests):
        for check in obj["checks"]:
            if not check["skipped"] and check["grade"] < 10:  # 10 = OK
                found.add((obj["type_meta"]["kind"], check["check"]["id"]))
    return found


@pytest.mark.parametrize("case", VALUE_SETS)
def test_kube_score_finds_nothing_unexplained(helm: Helm, kube_score: Path, case: str) -> None:
    docs = helm.template(
        VALUE_SETS[case],
        api_versions=(
            "monitoring.coreos.com/v1/ServiceMonitor",
            "monitoring.coreos.com/v1/PodMonitor",
        ),
    )
    found = findings(kube_score, yaml.safe_dump_all(docs))
    assert found - EXCEPTIONS.keys() == set()
    assert EXCEPTIONS.keys() - found == set(), "an exception is no longer needed"


def test_kube_score_reports_a_weakened_pod(helm: Helm, kube_score: Path) -> None:
    """The linter is live: a chart without probes and limits is flagged."""
    docs = helm.template()
    for doc in docs:
        if doc["kind"] == "Deployment":
            container = doc["spec"]["template"]["spec"]["containers"][0]
            del container["readinessProbe"], container["resources"]["limits"]
    found = findings(kube_score, yaml.safe_dump_all(docs))
    assert ("Deployment", "pod-probes") in found
    assert ("Deployment", "container-resources") in found
