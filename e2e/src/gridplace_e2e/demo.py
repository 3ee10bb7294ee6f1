"""`gridplace-demo`: the local demo behind `make demo`.

Brings up the local cluster (or reuses it), installs the CRDs and the example Regions and
InferenceDeployments, runs the operator, and prints the placement as it settles. Then raises the
carbon intensity of the busiest region and shows gridplace moving replicas away, make-before-break,
and back once the spike is over. Last, the closed loop: simulators back the pods, a load
generator steps Azure trace requests up and down, and gridplace scales on the p95 it reads from
Prometheus.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from gridplace_e2e.cluster.local import LocalCluster
from gridplace_e2e.cluster.topology import DEFAULT_TOPOLOGY, load_topology
from gridplace_e2e.demo_loop import autoscale_act
from gridplace_e2e.operator_run import OperatorProcess

ROOT = Path(__file__).resolve().parents[3]
NAMESPACE = "demo"


def _idep_rows(cluster: LocalCluster) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "idep", "-n", NAMESPACE, "-o", "json", check=False)
    if out.returncode != 0:
        return []
    rows = []
    for obj in json.loads(out.stdout)["items"]:
        status = obj.get("status") or {}
        ready: dict[str, Any] = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {}
        )
        predicted = status.get("predicted") or {}
        rows.append(
            {
                "name": obj["metadata"]["name"],
                "mode": obj["spec"].get("placement", {}).get("mode", "Enforce"),
                "ready": f"{ready.get('status', '-')}/{ready.get('reason', '-')}",
                "replicas": f"{status.get('readyReplicas', 0)}/{status.get('replicas', 0)}",
                "placement": status.get("placementSummary") or "-",
                "p95": predicted.get("p95Seconds"),
                "gco2h": predicted.get("gCO2PerHour"),
                "usdh": predicted.get("usdPerHour"),
            }
        )
    return rows


def _print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"  {'NAME':24} {'MODE':8} {'READY':22} {'REPL':6} {'P95 s':>6} {'gCO2/h':>8}"
        f" {'$/h':>7}  PLACEMENT"
    )
    for r in rows:
        p95 = f"{r['p95']:.2f}" if r["p95"] is not None else "-"
        gco2 = f"{r['gco2h']:.0f}" if r["gco2h"] is not None else "-"
        usd = f"{r['usdh']:.3f}" if r["usdh"] is not None else "-"
        print(
            f"  {r['name']:24} {r['mode']:8} {r['ready']:22} {r['replicas']:6} {p95:>6}"
            f" {gco2:>8} {usd:>7}  {r['placement']}"
        )


def _settled(rows: list[dict[str, Any]]) -> bool:
    return bool(rows) and all(r["ready"].startswith("True/") for r in rows)


def _watch(cluster: LocalCluster, title: str, timeout: float, until: Any = _settled) -> None:
    print(f"\n== {title}")
    deadline = time.monotonic() + timeout
    last: list[dict[str, Any]] | None = None
    while time.monotonic() < deadline:
        rows = _idep_rows(cluster)
        if rows != last:
            print(time.strftime("%H:%M:%S"))
            _print_table(rows)
            last = rows
        if until(rows):
            return
        time.sleep(2)
    print("  (still settling; the operator keeps working in the background)")


def _events(cluster: LocalCluster) -> None:
    out = cluster.kubectl("get", "events", "-n", NAMESPACE, "-o", "json")
    items = json.loads(out.stdout)["items"]
    mine = [
        e
        for e in items
        if e.get("source", {}).get("component") == "gridplace.dev/operator"
        or e.get("reportingComponent") == "gridplace.dev/operator"
    ]
    mine.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    print("\n== What gridplace said (kubectl get events -n demo):")
    for event in mine[-8:]:
        name = event["involvedObject"]["name"]
        print(f"  {event['type']:7} {event['reason']:20} {name}: {event['message'][:160]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gridplace-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="gridplace", help="cluster name (default gridplace)")
    parser.add_argument("--no-spike", action="store_true", help="skip the carbon-spike act")
    parser.add_argument("--no-loop", action="store_true", help="skip the autoscaling act")
    args = parser.parse_args(argv)

    cluster = LocalCluster(args.name)
    cluster.up(load_topology(DEFAULT_TOPOLOGY))
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    cluster.kubectl("apply", "-f", str(ROOT / "examples" / "regions.yaml"))
    cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    log = cluster.workdir / "operator.log"
    operator = OperatorProcess(cluster.kubeconfig, log, plan_period=15.0)
    operator.start()
    print(f"operator running (log: {log})")
    try:
        cluster.kubectl(
            "apply", "-n", NAMESPACE, "-f", str(ROOT / "examples" / "inferencedeployments.yaml")
        )
        _watch(cluster, "Placing the example InferenceDeployments", 180)
        if not args.no_spike:
            _spike(cluster)
        _events(cluster)
    finally:
        operator.stop()
    if not args.no_loop:
        autoscale_act(cluster, cluster.workdir / "operator-loop.log")
    print(
        "\nThe cluster keeps running; explore it with:\n"
        f"  export KUBECONFIG={cluster.kubeconfig} PATH={cluster.binaries.bin_dir}:$PATH\n"
        f"  kubectl get idep -n {NAMESPACE} -o wide; kubectl get gpr; "
        f"kubectl describe idep -n {NAMESPACE} llama-8b-chat\n"
        f"  uv run gridplace run --kubeconfig {cluster.kubeconfig}   # the operator again\n"
        "Stop it with: make cluster-down"
    )
    return 0


def _spike(cluster: LocalCluster) -> None:
    rows = _idep_rows(cluster)
    counts: dict[str, int] = {}
    for row in rows:
        if row["mode"] != "Enforce" or row["placement"] == "-":
            continue
        for part in row["placement"].split(","):
            region, _, n = part.partition("=")
            counts[region] = counts.get(region, 0) + int(n)
    if not counts:
        return
    busiest = max(counts, key=lambda r: counts[r])
    region = json.loads(cluster.kubectl("get", "gpr", busiest, "-o", "json").stdout)
    original = region["spec"]["carbonIntensity"]
    value = float((original.get("static") or {}).get("gCO2PerKWh", 400))
    spiked = {"spec": {"carbonIntensity": {"static": {"gCO2PerKWh": round(value * 4)}}}}
    print(f"\n== Carbon spike: {busiest} goes from {value:.0f} to {value * 4:.0f} gCO2/kWh")
    cluster.kubectl("patch", "gpr", busiest, "--type=merge", "-p", json.dumps(spiked))

    def moved(rows: list[dict[str, Any]]) -> bool:
        return _settled(rows) and all(
            f"{busiest}=" not in r["placement"] or r["mode"] != "Enforce" for r in rows
        )

    _watch(cluster, f"Replicas leave {busiest} (within each model's churn budget)", 120, moved)
    restore = {"spec": {"carbonIntensity": original}}
    print(f"\n== The spike is over: {busiest} back to {value:.0f} gCO2/kWh")
    spiked_placement = [r["placement"] for r in _idep_rows(cluster)]
    cluster.kubectl("patch", "gpr", busiest, "--type=merge", "-p", json.dumps(restore))

    def returned(rows: list[dict[str, Any]]) -> bool:
        return _settled(rows) and [r["placement"] for r in rows] != spiked_placement

    _watch(cluster, "Replicas return where the saving beats the churn cost", 60, returned)


if __name__ == "__main__":
    sys.exit(main())
