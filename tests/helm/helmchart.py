"""The real `helm` CLI on the gridplace chart: render with values, install, read what it made."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "gridplace"
RELEASE = "gp"
NAMESPACE = "gridplace-system"


class HelmError(RuntimeError):
    """helm exited non-zero; the message is its stderr."""


@dataclass(frozen=True)
class Helm:
    binary: Path
    kubeconfig: Path | None = None

    def run(self, *args: str, values: Mapping[str, Any] | None = None) -> str:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
            yaml.safe_dump(dict(values or {}), file)
            file.flush()
            command = [str(self.binary), *args]
            if values is not None:
                command += ["--values", file.name]
            if self.kubeconfig is not None:
                command += ["--kubeconfig", str(self.kubeconfig)]
            done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise HelmError(done.stderr.strip())
        return done.stdout

    def template(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        api_versions: Sequence[str] = (),
        namespace: str = NAMESPACE,
    ) -> list[dict[str, Any]]:
        """Every object `helm template` renders, parsed."""
        extra = [f"--api-versions={v}" for v in api_versions]
        out = self.run("template", RELEASE, str(CHART), "-n", namespace, *extra, values=values)
        return [doc for doc in yaml.safe_load_all(out) if doc]


def objects(docs: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: Sequence[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [d for d in objects(docs, kind) if d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, got {len(found)}"
    return found[0]


def operator_container(docs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return container


def rules(role: Mapping[str, Any]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """(apiGroup, resource, verb, resourceNames) for every grant of a Role or ClusterRole."""
    return [
        (group, resource, verb, tuple(rule.get("resourceNames") or ()))
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    ]


# kube-score checks that are off by default and that gridplace's workloads should pass.
OPTIONAL_CHECKS = ("container-seccomp-profile", "container-ports-check")


def kube_score_report(binary: Path, manifests: str) -> list[dict[str, Any]]:
    """kube-score's JSON report of `manifests` (one entry per object), the optional checks on."""
    optional = [f"--enable-optional-test={check}" for check in OPTIONAL_CHECKS]
    done = subprocess.run(
        [str(binary), "score", "--kubernetes-version=v1.34", *optional, "-o", "json", "-"],
        input=manifests,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.stdout, done.stderr
    report: list[dict[str, Any]] = json.loads(done.stdout)
    return report
