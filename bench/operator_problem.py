"""The operator scale benchmark's joint problem, built without a cluster.

`bench/operator_scale.py` applies N InferenceDeployments to a cluster of six times the default
nodes; the operator turns them into one placement problem. This builds that same problem in
process (the same InferenceDeployments, the example Regions with their static signals, the
scaled default topology as the GPU inventory), so the solve the operator runs can be timed,
counted and repeated on its own:

    uv run python bench/operator_problem.py [--count 500] [--scale 6] [--repeat 3]

prints one JSON object per solve (status, gap, objective, wall and CPU seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from gridplace_e2e.cluster.topology import DEFAULT_TOPOLOGY, Topology, load_topology
from gridplace_operator.api.inference_deployment import InferenceDeploymentSpec
from gridplace_operator.api.parsed import IdepRef, Rejection, parse_spec
from gridplace_operator.api.region import Region
from gridplace_operator.observe.inventory import GpuPool, Inventory
from gridplace_operator.planning.problem import RegionSignalValues, build_problem, static_demand
from gridplace_placement.problem import Problem
from gridplace_placement.solver import SolveOptions, solve

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the repository root holds `bench`
    sys.path.insert(0, str(ROOT))

from bench.operator_scale import inference_deployments, scaled  # noqa: E402


def regions() -> list[Region]:
    """The example Regions (their signals are static values)."""
    docs = yaml.safe_load_all((ROOT / "examples" / "regions.yaml").read_text())
    return [Region.model_validate(d) for d in docs if d and d.get("kind") == "Region"]


def inventory(topology: Topology) -> Inventory:
    """Every GPU of the topology free for gridplace, as the operator sees an empty cluster."""
    pools = {
        (p.region, p.product): GpuPool(p.region, p.product, p.nodes * p.gpus_per_node, 0, p.nodes)
        for p in topology.pools
    }
    return Inventory(pools=pools)


def static_signals(region_objs: list[Region]) -> dict[str, RegionSignalValues]:
    """Each Region's signals, which the example Regions give as static values."""
    signals: dict[str, RegionSignalValues] = {}
    for r in region_objs:
        carbon, price = r.spec.carbon_intensity.static, r.spec.power_price.static
        assert carbon is not None and price is not None, "example Regions use static signals"
        signals[r.metadata.name] = RegionSignalValues(carbon.g_co2_per_kwh, price.usd_per_mwh)
    return signals


def fresh_problem(
    bodies: list[dict[str, Any]], region_objs: list[Region], gpus: Inventory
) -> Problem:
    """The operator's joint problem for these InferenceDeployments (their declared demand) on
    these Regions and GPUs, nothing running yet."""
    specs: dict[IdepRef, InferenceDeploymentSpec] = {}
    for body in bodies:
        spec = parse_spec(body)
        assert not isinstance(spec, Rejection), spec
        specs[IdepRef(body["metadata"]["namespace"], body["metadata"]["name"])] = spec
    translation = build_problem(
        specs,
        demand={ref: static_demand(spec) for ref, spec in specs.items()},
        regions=region_objs,
        signals=static_signals(region_objs),
        inventory=gpus,
        current=[],
    )
    assert translation.problem is not None and not translation.rejected, translation.rejected
    return translation.problem


def operator_problem(count: int = 500, scale: int = 6, seed: int = 1) -> Problem:
    """The joint problem of `count` benchmark InferenceDeployments, nothing running yet."""
    return fresh_problem(
        inference_deployments(count, 10, seed),
        regions(),
        inventory(scaled(load_topology(DEFAULT_TOPOLOGY), scale)),
    )


def timed_solve(problem: Problem, options: SolveOptions) -> dict[str, Any]:
    """One solve with its wall and process CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    plan = solve(problem, options)
    return {
        "status": plan.status.value,
        "gap": round(plan.gap, 5),
        "objective": round(plan.objective, 4),
        "seconds": round(time.perf_counter() - wall, 3),
        "cpu_seconds": round(time.process_time() - cpu, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--scale", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--time-limit", type=float, default=10.0)
    args = parser.parse_args()
    problem = operator_problem(args.count, args.scale)
    options = SolveOptions(time_limit_seconds=args.time_limit)
    for _ in range(args.repeat):
        print(json.dumps({"models": len(problem.models), **timed_solve(problem, options)}))


if __name__ == "__main__":
    main()
