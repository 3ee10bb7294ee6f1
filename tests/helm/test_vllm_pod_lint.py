"""The vLLM Deployment gridplace renders, with its PodDisruptionBudget, through the chart's
manifest linter (kube-score). Every finding is fixed or listed with why it is by design; an
exception that no longer fires is an error too, and a finding's comments are checked where one
check covers several things (container-resources: only the CPU limit may be missing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from helmchart import Helm, kube_score_report, one, rules
from test_chart_lint import findings

from gridplace_operator.api.inference_deployment import InferenceDeploymentSpec
from gridplace_operator.kube.client import _KINDS, CHILD_KINDS
from gridplace_operator.reconcile.children import Owner, desired_children

H100 = "NVIDIA-H100-80GB-HBM3"

# (kind, kube-score check id) -> why the vLLM pod is this way
EXCEPTIONS = {
    ("Deployment", "container-resources"): (
        "no CPU limit (requests and the memory limit are set): a throttled engine loop stalls"
        " every sequence of the batch, and the request already reserves the cores"
    ),
    ("Deployment", "pod-probes-identical"): (
        "vLLM has one health endpoint, /health; liveness allows 60 s of failures against"
        " readiness's 15 s, so a struggling replica leaves the endpoints long before a restart"
    ),
    ("Deployment", "container-image-pull-policy"): (
        "the image is a vLLM release tag (or the user's digest) of tens of GB; IfNotPresent"
        " keeps a restart from pulling it again"
    ),
    ("Deployment", "container-ephemeral-storage-request-and-limit"): (
        "not every node reports ephemeral storage (a request would keep pods off them), and"
        " the weights belong on a volume (spec.pod.volumes) rather than in the root filesystem"
    ),
    ("Deployment", "container-security-context-readonlyrootfilesystem"): (
        "vLLM, torch and Triton write caches under $HOME and /tmp"
    ),
    ("Deployment", "container-security-context-user-group-id"): (
        "the official vLLM image runs as root and torch fails under a UID without a passwd"
        " entry; capabilities, privilege escalation and syscalls are denied instead"
    ),
    ("Deployment", "deployment-has-host-podantiaffinity"): (
        "replicas are packed onto GPU nodes as the plan counts them; spreading is the user's"
        " choice (spec.pod.affinity), and the PodDisruptionBudget bounds a drain's damage"
    ),
    ("Deployment", "pod-networkpolicy"): (
        "the clients of a model are the user's; a NetworkPolicy is theirs to write"
    ),
}


def rendered(**pod: Any) -> list[dict[str, Any]]:
    spec = InferenceDeploymentSpec.model_validate(
        {
            "model": {"name": "meta-llama/Meta-Llama-3.1-8B-Instruct", "gpuTypes": [H100]},
            "slo": {"p95TimeToFirstTokenSeconds": 0.5},
            "demand": {"static": [{"zone": "us-east", "requestsPerSecond": 10}]},
            "pod": pod,
        }
    )
    owner = Owner(namespace="serving", name="chat", uid="uid-1", spec=spec)
    return desired_children(
        owner, {("us-east-1", H100): 2}, {"us-east-1": {"topology.kubernetes.io/region": "x"}}
    )


def comments(binary: Path, manifests: str, check_id: str) -> list[str]:
    return [
        c["summary"]
        for obj in kube_score_report(binary, manifests)
        for check in obj["checks"]
        if check["check"]["id"] == check_id and not check["skipped"] and check["grade"] < 10
        for c in check["comments"] or []
    ]


@pytest.mark.parametrize("pod", [{}, {"serviceAccountName": "vllm", "imagePullSecrets": ["r"]}])
def test_the_vllm_deployment_has_no_unexplained_finding(
    kube_score: Path, pod: dict[str, Any]
) -> None:
    manifests = yaml.safe_dump_all(rendered(**pod))
    found = findings(kube_score, manifests)
    assert found - EXCEPTIONS.keys() == set()
    assert EXCEPTIONS.keys() - found == set(), "an exception is no longer needed"
    assert comments(kube_score, manifests, "container-resources") == ["CPU limit is not set"]


def test_the_linter_sees_the_disruption_budget_and_the_probes(kube_score: Path) -> None:
    """Without the PodDisruptionBudget, or without probes and memory, kube-score objects: the
    checks above are live."""
    docs = rendered()
    no_budget = [d for d in docs if d["kind"] != "PodDisruptionBudget"]
    found = findings(kube_score, yaml.safe_dump_all(no_budget))
    assert ("Deployment", "deployment-has-poddisruptionbudget") in found
    for doc in docs:
        if doc["kind"] == "Deployment":
            container = doc["spec"]["template"]["spec"]["containers"][0]
            del container["readinessProbe"], container["resources"]["limits"]["memory"]
    manifests = yaml.safe_dump_all(docs)
    assert ("Deployment", "pod-probes") in findings(kube_score, manifests)
    assert "Memory limit is not set" in comments(kube_score, manifests, "container-resources")


def test_the_chart_lets_the_operator_write_and_watch_every_kind_of_child(helm: Helm) -> None:
    """Each kind desired_children and routes_for render is one the workloads role may apply,
    watch (drift repair) and delete; the operator's client knows its API path."""
    workloads = one(helm.template(), "ClusterRole", "-workloads")
    granted = {(group, resource, verb) for group, resource, verb, _ in rules(workloads)}
    plural = {k: (gv[0] if gv else "", p) for k, (gv, p) in _KINDS.items()}
    # routes.py renders the HTTPRoutes (spec.routing), propagation.py the PropagationPolicies
    # (fleet mode); children.py the rest.
    assert set(CHILD_KINDS) == {d["kind"] for d in rendered()} | {"HTTPRoute", "PropagationPolicy"}
    for kind in CHILD_KINDS:
        group, resource = plural[kind]
        for verb in ("get", "list", "watch", "create", "patch", "delete"):
            assert (group, resource, verb) in granted, (kind, verb)
