"""gridplace in fleet mode on a real local Karmada fleet: placement, failover and cost.

For each count of InferenceDeployments: starts a Karmada fleet of three kwok-backed members (the
local fleet's topologies, node counts multiplied by `--scale`), applies the CRDs and the example
Regions (each naming its member) to the Karmada API server, runs the operator as users do against
it, applies the InferenceDeployments in one go and measures

- the time until every one is placed, and until every planned replica is Ready **in the member
  clusters** (read from the members' own API servers);
- the operator's writes per InferenceDeployment and its peak RSS;
- failover: the member running the most replicas loses its API server; the time until Karmada
  reports it lost, and until every planned replica is Ready on the other members (also in plan
  periods: the target is two);
- the planned cost and emissions (sum of the models' predictions in status) against the plan the
  single-cluster planner makes offline for the same models on the same nodes: fleet mode changes
  where decisions are written, not what is decided, so the ratios should be 1 (within the
  solver's gap).

Prints one JSON object.

    uv run python bench/fleet.py [--counts 50 200] [--scale 4] [--plan-period 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from gridplace_e2e.cluster.fleet import DEFAULT_MEMBERS, FleetMember, LocalFleet
from gridplace_e2e.cluster.local import poll
from gridplace_e2e.cluster.topology import Topology, load_topology
from gridplace_e2e.operator_run import OperatorProcess
from gridplace_operator.api.region import Region
from gridplace_placement.solver import SolveOptions, solve

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the repository root holds `bench`
    sys.path.insert(0, str(ROOT))

from bench.operator_problem import fresh_problem, inventory  # noqa: E402
from bench.operator_scale import inference_deployments, rss_mib  # noqa: E402

# The example Regions the local fleet's members have nodes for.
MEMBER_OF = {"eu-central-1": "eu", "us-east-1": "us", "us-west-1": "us", "ap-northeast-1": "ap"}
NAMESPACES = 5


def scaled_members(scale: int, work: Path) -> list[FleetMember]:
    members = []
    for member in DEFAULT_MEMBERS:
        topology = yaml.safe_load(member.topology.read_text())
        for pools in topology["regions"].values():
            for pool in pools:
                pool["nodes"] *= scale
        path = work / f"{member.name}.yaml"
        path.write_text(yaml.safe_dump(topology))
        members.append(FleetMember(member.name, path))
    return members


def regions() -> list[dict[str, Any]]:
    out = []
    for body in yaml.safe_load_all((ROOT / "examples" / "regions.yaml").read_text()):
        if body["metadata"]["name"] in MEMBER_OF:
            body["spec"]["cluster"] = MEMBER_OF[body["metadata"]["name"]]
            out.append(body)
    return out


def models(count: int, seed: int) -> list[dict[str, Any]]:
    """The operator-scale bench's models, with demand only from zones these regions serve."""
    served = {e["zone"] for r in regions() for e in r["spec"].get("rtt", [])}
    out = inference_deployments(count, NAMESPACES, seed)
    for body in out:
        demand = body["spec"]["demand"]["static"]
        kept = [d for d in demand if d["zone"] in served]
        body["spec"]["demand"]["static"] = kept or [{"zone": "us-east", "requestsPerSecond": 1.0}]
    return out


def karmada_items(fleet: LocalFleet, *args: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        fleet.kubectl("get", *args, "-o", "json", timeout=300).stdout
    )["items"]
    return items


def planned(fleet: LocalFleet) -> dict[tuple[str, str, str, str], int]:
    """(namespace, model, region, GPU type) -> planned replicas, from status."""
    out = {}
    for obj in karmada_items(fleet, "idep", "-A"):
        for pool in (obj.get("status") or {}).get("placement") or []:
            if pool["desiredReplicas"]:
                key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
                out[(*key, pool["region"], pool["gpuType"])] = pool["desiredReplicas"]
    return out


def ready_in_members(
    fleet: LocalFleet, without: str | None = None
) -> dict[tuple[str, str, str, str], int]:
    out = {}
    for member in fleet.members:
        if member == without:
            continue
        found = fleet.member_kubectl(
            member, "get", "deployments", "-A", "-l", "app.kubernetes.io/managed-by=gridplace",
            "-o", "json", check=False,
        )  # fmt: skip
        if found.returncode != 0:
            continue
        for dep in json.loads(found.stdout)["items"]:
            labels = dep["metadata"]["labels"]
            key = (
                dep["metadata"]["namespace"],
                labels["gridplace.dev/inference-deployment"],
                labels["gridplace.dev/region"],
                labels["gridplace.dev/gpu-type"],
            )
            out[key] = int((dep.get("status") or {}).get("readyReplicas") or 0)
    return out


def all_ready(fleet: LocalFleet, count: int, without: str | None = None) -> bool:
    want = planned(fleet)
    placed = {k[:2] for k in want}
    have = ready_in_members(fleet, without)
    lost = {r for r, m in MEMBER_OF.items() if m == without}
    return (
        len(placed) >= count
        and all(have.get(k) == n for k, n in want.items())
        and not any(k[2] in lost for k in want)
    )


def predicted(fleet: LocalFleet) -> tuple[float, float]:
    usd = co2 = 0.0
    for obj in karmada_items(fleet, "idep", "-A"):
        prediction = (obj.get("status") or {}).get("predicted") or {}
        usd += prediction.get("usdPerHour") or 0.0
        co2 += prediction.get("gCO2PerHour") or 0.0
    return usd, co2


def single_cluster_plan(
    bodies: list[dict[str, Any]], members: list[FleetMember], time_limit: float
) -> tuple[float, float]:
    """($/h, gCO2/h) of the plan the single-cluster planner makes for the same models on the
    same GPUs: one cluster holding every member's nodes, the same Regions without members. Its
    GPUs are pooled per (region, GPU type), a relaxation of the per-node packing the operator
    plans with, so this plan can only be as cheap or cheaper."""
    region_objs = [Region.model_validate({**b, "status": None}) for b in regions()]
    pools = tuple(p for m in members for p in load_topology(m.topology).pools)
    problem = fresh_problem(bodies, region_objs, inventory(Topology(pools=pools)))
    plan = solve(problem, SolveOptions(time_limit_seconds=time_limit))
    return (
        sum(m.usd_per_hour for m in plan.models),
        sum(m.carbon_g_per_hour for m in plan.models),
    )


def run(count: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    members = scaled_members(args.scale, work)
    bodies = models(count, args.seed)
    single_usd, single_co2 = single_cluster_plan(bodies, members, time_limit=120)
    fleet = LocalFleet("bench-fleet", members=members, progress=lambda _: None)
    fleet.down()
    fleet.up()
    operator = OperatorProcess(
        fleet.kubeconfig, work / f"operator-{count}.log", plan_period=args.plan_period
    )
    try:
        fleet.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        fleet.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        fleet.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(regions()))
        for n in range(NAMESPACES):
            fleet.kubectl("create", "namespace", f"bench-{n}")
        operator.start()
        assert operator.process is not None
        manifest = work / f"ideps-{count}.yaml"
        manifest.write_text(yaml.safe_dump_all(bodies))
        started = time.monotonic()
        fleet.kubectl("apply", "--server-side", "-f", str(manifest), timeout=600)
        placed = poll(lambda: len({k[:2] for k in planned(fleet)}) >= count, args.timeout, 2.0)
        placed_s = time.monotonic() - started
        ready = poll(lambda: all_ready(fleet, count), args.timeout, 2.0)
        ready_s = time.monotonic() - started
        writes = operator.writes()
        usd, co2 = predicted(fleet)
        operator.wait_cycles(1)
        before = operator.writes()
        time.sleep(args.settle)
        steady = (operator.writes() - before) / args.settle

        running: dict[str, int] = {}
        for key, n in planned(fleet).items():
            running[MEMBER_OF[key[2]]] = running.get(MEMBER_OF[key[2]], 0) + n
        lost = max(running, key=lambda m: running[m])
        stopped = time.monotonic()
        fleet.stop_member_api_server(lost)
        lost_regions = [r for r, m in MEMBER_OF.items() if m == lost]
        noticed = poll(
            lambda: any(
                c.get("type") == "Ready" and c.get("status") == "False"
                for r in karmada_items(fleet, "regions")
                if r["metadata"]["name"] in lost_regions
                for c in (r.get("status") or {}).get("conditions") or []
            ),
            args.timeout,
            1.0,
        )
        noticed_s = time.monotonic() - stopped
        failed_over = poll(lambda: all_ready(fleet, count, without=lost), args.timeout, 2.0)
        failover_s = time.monotonic() - stopped
        fleet.start_member_api_server(lost)
        return {
            "inference_deployments": count,
            "gpus": sum(
                p.nodes * p.gpus_per_node for m in members for p in load_topology(m.topology).pools
            ),
            "all_placed": placed,
            "seconds_until_placed": round(placed_s, 1),
            "all_ready_in_members": ready,
            "seconds_until_ready_in_members": round(ready_s, 1),
            "writes_per_inference_deployment": round(writes / count, 2),
            "steady_state_writes_per_second": round(steady, 3),
            "operator_peak_rss_mib": rss_mib(operator.process.pid),
            "predicted_usd_per_hour": round(usd, 2),
            "predicted_g_co2_per_hour": round(co2, 1),
            "single_cluster_usd_per_hour": round(single_usd, 2),
            "single_cluster_g_co2_per_hour": round(single_co2, 1),
            "cost_over_single_cluster": round(usd / single_usd, 4) if single_usd else None,
            "carbon_over_single_cluster": round(co2 / single_co2, 4) if single_co2 else None,
            "failover": {
                "member": lost,
                "replicas_there": running[lost],
                "noticed": noticed,
                "seconds_until_noticed": round(noticed_s, 1),
                "complete": failed_over,
                "seconds_until_ready_elsewhere": round(failover_s, 1),
                "seconds_after_noticed": round(failover_s - noticed_s, 1),
                "plan_periods_after_noticed": round((failover_s - noticed_s) / args.plan_period, 2),
            },
        }
    finally:
        operator.stop()
        fleet.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--scale", type=int, default=4, help="node count multiplier")
    parser.add_argument("--plan-period", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=20.0, help="seconds of steady state")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gridplace-bench-fleet-"))
    runs = [run(count, args, work) for count in args.counts]
    print(
        json.dumps(
            {
                "benchmark": "fleet",
                "members": [m.name for m in DEFAULT_MEMBERS],
                "plan_period_seconds": args.plan_period,
                "runs": runs,
                "targets": {"failover_plan_periods": 2, "steady_writes": 0},
            }
        )
    )
    print(f"logs: {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
