"""The demo's closed-loop act: gridplace autoscaling on the p95 that Prometheus scrapes from
simulators backing its pods, while Azure trace requests step from light to heavy and back."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from gridplace_e2e import loop_scenario as scenario
from gridplace_e2e.cluster.local import LocalCluster, api_client, poll
from gridplace_e2e.loadgen.plan import Zone, read_trace, step_plan, step_starts
from gridplace_e2e.loadgen.runner import RunOptions, run_plan
from gridplace_e2e.operator_run import OperatorProcess
from gridplace_e2e.podsim import ClusterRouter, PodSimulators, split
from gridplace_operator.autoscale.prometheus import Prometheus, PrometheusError, Target, p95_query

NAMESPACE = "demo-loop"
NAME = "code-completion"
# Far from the example models' users, so its L40S GPUs are free for this act.
REGION, ZONE = "ap-southeast-2", "au-southeast"


def _status(cluster: LocalCluster) -> dict[str, Any]:
    out = cluster.kubectl("get", "idep", NAME, "-n", NAMESPACE, "-o", "json", check=False)
    return dict(json.loads(out.stdout).get("status") or {}) if out.returncode == 0 else {}


def _p95(prometheus: Prometheus) -> float | None:
    query = p95_query(Target(NAMESPACE, NAME), "ttft", "20s")
    try:
        values = [s.value for s in prometheus.query(query) if not math.isnan(s.value)]
    except PrometheusError:
        return None
    return max(values) if values else None


def _offered(elapsed: float) -> float:
    rate = 0.0
    for start, step in zip(step_starts(scenario.STEPS), scenario.STEPS, strict=True):
        if elapsed >= start:
            rate = step.rate_rps
    return rate


def _line(elapsed: float, status: dict[str, Any], p95: float | None) -> str:
    conditions = status.get("conditions") or []
    scaled: dict[str, Any] = next((c for c in conditions if c["type"] == "Scaled"), {})
    carbon = (status.get("predicted") or {}).get("gCO2PerHour")
    p95_text = f"{p95:5.2f}s" if p95 is not None else "    - "
    mark = "!" if p95 is not None and p95 > scenario.SLO_S else " "
    return (
        f"  t={elapsed:5.0f}s  load {_offered(elapsed):4.1f} req/s  p95 TTFT {p95_text}{mark}"
        f"  replicas {status.get('readyReplicas', 0)}/{status.get('replicas', 0)}"
        f" ({status.get('placementSummary') or '-'})"
        f"  {carbon or 0:6.0f} gCO2/h  {scaled.get('reason', '-')}"
    )


def autoscale_act(cluster: LocalCluster, log: Path) -> None:
    if not scenario.TRACE.is_file():
        print(f"\n(closed-loop act skipped: no request trace at {scenario.TRACE})")
        return
    print(
        f"\n== Autoscaling on p95 (SLO {scenario.SLO_S:.1f}s): Azure code-completion requests"
        f" step {scenario.LIGHT:.0f} -> {scenario.HEAVY:.0f} -> {scenario.LIGHT:.0f} req/s;"
        " each pod is backed by a vLLM simulator that Prometheus scrapes"
    )
    cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    assert cluster.prometheus_url is not None
    sims = PodSimulators(
        api_client(cluster.kubeconfig),
        cluster.file_sd_dir,
        namespace=NAMESPACE,
        latency=scenario.LATENCY,
    )
    sims.start(period_s=1.0)
    operator = OperatorProcess(
        cluster.kubeconfig,
        log,
        plan_period=5.0,
        extra_args=[f"--prometheus-url={cluster.prometheus_url}", *scenario.OPERATOR_ARGS],
    )
    operator.start()
    try:
        body = yaml.safe_dump(scenario.inference_deployment(NAME, REGION, ZONE))
        cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=body)
        prometheus = Prometheus(cluster.prometheus_url)
        if not poll(lambda: bool(sims.endpoints(NAMESPACE, NAME)), 120):
            print("  (no replica came up; skipping the load)")
            return
        _drive(cluster, sims, prometheus)
    finally:
        operator.stop()
        sims.close()
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def _drive(cluster: LocalCluster, sims: PodSimulators, prometheus: Prometheus) -> None:
    matrix = scenario.rtt_matrix_ms()
    zones = (Zone(ZONE, matrix[ZONE][REGION]),)  # each request gets its region's RTT
    plan = step_plan(
        read_trace(scenario.TRACE),
        zones,
        steps=scenario.STEPS,
        max_requests=5000,
        max_duration_s=400,
        seed=7,
    )
    latest = [_status(cluster)]  # replaced whole, so the load thread never sees it half-built
    router = ClusterRouter(
        traffic=lambda: split(latest[0].get("traffic") or []),
        endpoints=lambda: sims.endpoints(NAMESPACE, NAME),
    )
    runner = threading.Thread(
        target=lambda: asyncio.run(
            run_plan(plan, router, RunOptions(scenario.MODEL, rtt_matrix_ms=matrix))
        ),
        daemon=True,
    )
    started = time.monotonic()
    runner.start()
    end = started + sum(step.duration_s for step in scenario.STEPS) + 90
    while time.monotonic() < end:
        latest[0] = _status(cluster)
        print(_line(time.monotonic() - started, latest[0], _p95(prometheus)), flush=True)
        if not runner.is_alive() and latest[0].get("replicas") == 1:
            break
        time.sleep(5)
    runner.join(timeout=60)
