"""How gridplace copes with many InferenceDeployments applied at once, on the local cluster.

Starts a cluster of its own (a scaled-up default topology), applies the CRDs and the example
Regions, runs the operator as users do, applies N InferenceDeployments in one go and measures:
time until every one is placed and its Deployments exist, time until every replica is ready, the
operator's API writes per InferenceDeployment, its peak RSS, and its write rate once everything
is ready. Prints one JSON object.

    uv run python bench/operator_scale.py [--count 500] [--scale 6] [--settle 30] [--one-core]

Absolute seconds depend on the machine; two ratios travel between machines: the operator's CPU
seconds per InferenceDeployment until every one is placed, and the time until placed divided by
the time of a fixed reference solve (`reference_problem`, held to the same core) measured in the
same run. `--one-core` holds the operator (and the reference solve) to CPU 0 with `taskset`, as a
CPU request of one core would, beside a cluster that uses the others.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from gridplace_e2e.cluster.local import LocalCluster, poll
from gridplace_e2e.cluster.topology import DEFAULT_TOPOLOGY, Topology, load_topology
from gridplace_e2e.operator_run import OperatorProcess
from gridplace_placement.generator import random_problem
from gridplace_placement.solver import SolveOptions, solve

ROOT = Path(__file__).resolve().parents[1]
ZONES = ["us-east", "us-west", "eu-central", "ap-northeast", "ap-southeast", "au-southeast"]
GPU_CHOICES = [
    ["NVIDIA-H100-80GB-HBM3", "NVIDIA-L40S"],
    ["NVIDIA-A100-SXM4-40GB", "NVIDIA-L40S"],
    ["NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-40GB", "NVIDIA-L40S"],
]


def scaled(topology: Topology, factor: int) -> Topology:
    return Topology(
        pools=tuple(dataclasses.replace(p, nodes=p.nodes * factor) for p in topology.pools)
    )


def inference_deployments(count: int, namespaces: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        zones = rng.sample(ZONES, rng.randint(1, 3))
        out.append(
            {
                "apiVersion": "gridplace.dev/v1alpha1",
                "kind": "InferenceDeployment",
                "metadata": {"name": f"model-{i:04d}", "namespace": f"bench-{i % namespaces}"},
                "spec": {
                    "model": {
                        "name": "meta-llama/Meta-Llama-3.1-8B-Instruct",
                        "gpuTypes": rng.choice(GPU_CHOICES),
                    },
                    "slo": {"p95TimeToFirstTokenSeconds": 1.0},
                    "scaling": {"minReplicas": 1, "maxReplicas": 4},
                    "demand": {
                        "static": [
                            {"zone": z, "requestsPerSecond": round(rng.uniform(0.2, 2.0), 2)}
                            for z in zones
                        ]
                    },
                },
            }
        )
    return out


def rss_mib(pid: int, field: str = "VmHWM") -> float:
    """Peak (VmHWM) or current (VmRSS) resident memory of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def placed_and_deployed(cluster: LocalCluster, count: int) -> tuple[int, int]:
    """(InferenceDeployments with a plan, those whose planned Deployments all exist)."""
    ideps = json.loads(cluster.kubectl("get", "idep", "-A", "-o", "json").stdout)["items"]
    deps = json.loads(
        cluster.kubectl(
            "get", "deployments", "-A", "-l", "app.kubernetes.io/managed-by=gridplace", "-o", "json"
        ).stdout
    )["items"]
    have: dict[tuple[str, str], int] = {}
    for d in deps:
        key = (
            d["metadata"]["namespace"],
            d["metadata"]["labels"]["gridplace.dev/inference-deployment"],
        )
        have[key] = have.get(key, 0) + 1
    placed = deployed = 0
    for obj in ideps:
        pools = (obj.get("status") or {}).get("placement") or []
        if not pools:
            continue
        placed += 1
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        deployed += have.get(key, 0) == len(pools)
    return placed, deployed


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds a process has used so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hold_to_core(pid: int, core: int) -> None:
    """Pin every thread of a running process to one CPU (threads started later inherit it)."""
    subprocess.run(
        ["taskset", "-a", "-p", "-c", str(core), str(pid)], check=True, capture_output=True
    )


def reference_seconds(repeat: int = 3, core: int | None = None) -> float:
    """The fastest of `repeat` solves of a fixed problem (50 models x 10 regions, seed 0, work
    bounded, so the same work on every machine): the yardstick the run's times are divided by.
    With `core`, held to that CPU as the operator is; the affinity is restored afterwards, since
    the cluster this process starts next inherits it."""
    problem = random_problem(50, 10, gpu_types=3, zones=10, seed=0)
    options = SolveOptions(time_limit_seconds=600)
    everywhere = os.sched_getaffinity(0)
    if core is not None:
        os.sched_setaffinity(0, {core})
    best = float("inf")
    try:
        for _ in range(repeat):
            started = time.perf_counter()
            solve(problem, options)
            best = min(best, time.perf_counter() - started)
    finally:
        os.sched_setaffinity(0, everywhere)
    return best


def ready_count(cluster: LocalCluster) -> int:
    ideps = json.loads(cluster.kubectl("get", "idep", "-A", "-o", "json").stdout)["items"]
    return sum(
        any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (obj.get("status") or {}).get("conditions") or []
        )
        for obj in ideps
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--scale", type=int, default=6, help="node count multiplier")
    parser.add_argument("--settle", type=float, default=30.0, help="seconds of steady state")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--one-core", action="store_true", help="hold the operator to CPU 0 (taskset)"
    )
    args = parser.parse_args()
    reference = reference_seconds(core=0 if args.one_core else None)

    cluster = LocalCluster("bench-operator-scale", progress=lambda _: None)
    work = Path(tempfile.mkdtemp(prefix="gridplace-bench-"))
    cluster.down()
    topology = scaled(load_topology(DEFAULT_TOPOLOGY), args.scale)
    cluster.up(topology)
    operator = OperatorProcess(cluster.kubeconfig, work / "operator.log", plan_period=10.0)
    try:
        cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        cluster.kubectl("apply", "-f", str(ROOT / "examples" / "regions.yaml"))
        for n in range(args.namespaces):
            cluster.kubectl("create", "namespace", f"bench-{n}")
        operator.start()
        assert operator.process is not None
        if args.one_core:
            hold_to_core(operator.process.pid, 0)
        idle_rss = rss_mib(operator.process.pid, "VmRSS")
        manifest = work / "ideps.yaml"
        manifest.write_text(
            yaml.safe_dump_all(inference_deployments(args.count, args.namespaces, args.seed))
        )
        cpu_before = cpu_seconds(operator.process.pid)
        started = time.monotonic()
        cluster.kubectl("apply", "--server-side", "-f", str(manifest), timeout=600)
        applied = time.monotonic() - started
        done = poll(
            lambda: placed_and_deployed(cluster, args.count)[1] >= args.count, args.timeout, 1.0
        )
        settled = time.monotonic() - started
        operator_cpu = cpu_seconds(operator.process.pid) - cpu_before
        solves = operator.counter("gridplace_plan_duration_seconds_count")
        solve_seconds = operator.counter("gridplace_plan_duration_seconds_sum")
        placed, deployed = placed_and_deployed(cluster, args.count)
        placed_rss = rss_mib(operator.process.pid, "VmRSS")
        writes_settled = operator.writes()
        all_ready = poll(lambda: ready_count(cluster) >= args.count, args.timeout, 2.0)
        ready_after = time.monotonic() - started
        operator.wait_cycles(1)
        kinds = ("Deployment", "Service", "InferenceDeployment", "Region", "Event")
        before = {kind: operator.writes(kind=kind) for kind in kinds}
        time.sleep(args.settle)
        steady_by_kind = {kind: operator.writes(kind=kind) - before[kind] for kind in kinds}
        steady = sum(steady_by_kind.values()) / args.settle
        result = {
            "benchmark": "operator_scale",
            "inference_deployments": args.count,
            "gpus": sum(p.nodes * p.gpus_per_node for p in topology.pools),
            "apply_seconds": round(applied, 1),
            "all_placed_and_deployed": done,
            "seconds_until_placed_and_deployed": round(settled, 1),
            "one_core": args.one_core,
            "reference_solve_seconds": round(reference, 3),
            "placed_over_reference_solve": round(settled / reference, 1),
            "operator_cpu_seconds_until_placed": round(operator_cpu, 1),
            "operator_cpu_seconds_per_inference_deployment": round(operator_cpu / args.count, 4),
            "solves_until_placed": int(solves),
            "solve_seconds_until_placed": round(solve_seconds, 1),
            "solve_seconds_per_inference_deployment": round(solve_seconds / args.count, 4),
            "placed": placed,
            "deployed": deployed,
            "writes_per_inference_deployment": round(writes_settled / args.count, 2),
            "writes_by_kind": {
                kind: operator.writes(kind=kind)
                for kind in ("Deployment", "Service", "InferenceDeployment", "Region", "Event")
            },
            "plan_cycles": operator.cycles(),
            "all_ready": all_ready,
            "seconds_until_all_replicas_ready": round(ready_after, 1),
            "steady_state_writes_per_second": round(steady, 3),
            "steady_state_writes_by_kind": steady_by_kind,
            "operator_rss_mib": {
                "idle": idle_rss,
                "placed": placed_rss,
                "ready": rss_mib(operator.process.pid, "VmRSS"),
                "peak": rss_mib(operator.process.pid),
            },
            "targets": {"seconds": 60, "steady_writes": 0, "rss_mib": 300},
        }
        print(json.dumps(result))
    finally:
        operator.stop()
        cluster.down()
        print(f"operator log: {operator.log}", file=sys.stderr)


if __name__ == "__main__":
    main()
