"""Run the gridplace operator as users do (`gridplace run`) against a test cluster, and read its
metrics. Used by the operator's cluster tests and benchmarks."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridplace_e2e.cluster.handle import ClusterHandle
from gridplace_e2e.cluster.local import poll


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OperatorProcess:
    kubeconfig: Path
    log: Path
    plan_period: float = 2.0
    extra_args: list[str] = field(default_factory=list)
    metrics_port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        self.metrics_port = free_port()
        command = [
            str(Path(sys.executable).with_name("gridplace")),
            "run",
            f"--kubeconfig={self.kubeconfig}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.metrics_port}",
            f"--liveness=http://127.0.0.1:{free_port()}/healthz",
            f"--plan-period={self.plan_period}",
            "--debounce=0.3",
            *self.extra_args,
        ]
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as handle:
            # Only --kubeconfig may point the operator at the cluster, as for a user.
            env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
            env.setdefault("MALLOC_ARENA_MAX", "2")  # as the Helm chart runs it
            self.process = subprocess.Popen(
                command, stdout=handle, stderr=subprocess.STDOUT, env=env
            )

        def started() -> bool:
            with self.log.open("rb") as handle:
                handle.seek(offset)
                return b"gridplace started" in handle.read()

        if not poll(started, timeout):
            self.stop()
            raise RuntimeError(f"the operator did not start:\n{self.tail()}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text()[-chars:] if self.log.exists() else ""

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def counter(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include `labels`."""
        total = 0.0
        for line in self.metrics().splitlines():
            match = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
            if not match:
                continue
            got = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
            if all(got.get(k) == v for k, v in labels.items()):
                total += float(match.group(2))
        return total

    def writes(self, **labels: str) -> float:
        return self.counter("gridplace_api_writes_total", **labels)

    def cycles(self) -> float:
        return self.counter("gridplace_plans_total")

    def wait_cycles(self, count: int) -> None:
        target = self.cycles() + count
        if not poll(lambda: self.cycles() >= target, self.plan_period * count * 10):
            raise RuntimeError(f"the operator ran no plan cycles:\n{self.tail()}")


def get_json(cluster: ClusterHandle, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for item in obj.get("status", {}).get("conditions") or []:
        if item.get("type") == type_:
            return dict(item)
    return {}


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, operator: OperatorProcess
) -> None:
    if not poll(predicate, timeout):
        raise AssertionError(
            f"timed out after {timeout:.0f}s waiting for {what}\n{operator.tail()}"
        )
