"""Scale benchmark of the placement engine: JSON lines with solve times, certified gaps, status.

    uv run python bench/placement_scale.py            # up to 1,000 models x 100 regions
    uv run python bench/placement_scale.py --quick    # under a minute
    uv run python bench/placement_scale.py --size 1000x100x4x50 --seeds 1
    uv run python bench/placement_scale.py --size 1000x100x4x50 --policy gridplace

Instances come from `gridplace_placement.generator.random_problem` (seeded). For every instance
it runs gridplace, the naive object-by-object MILP (time-limited; skipped, and said so, when it
would build more variables than --naive-max-variables) and the baselines, each printed as one
JSON object; then one summary object per size and policy with p50/p99 times and gaps.
Times are wall-clock seconds on this machine (gridplace: everything from problem to plan;
baselines and naive: the policy itself, after the shared coefficients); cpuSecondsTotal is the
process CPU time of the whole call, which shows how much of the wall time was waiting for a
shared CPU. Every solve stops once its plan is certified within --relative-gap (default 1%, the
target) or its work (--work-limit nodes per MILP, --model-milps) is spent; --time-limit is a
safety net (timeLimitReached says when it fired: that plan depends on the machine). Gaps are
certified by the bound the solve reports (the LP bound, lifted by the models' own MILPs where
they ran).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from gridplace_placement.generator import random_problem
from gridplace_placement.problem import Problem
from gridplace_placement.solver import MODEL_MILPS, POLICIES, WORK_LIMIT, SolveOptions, solve

FULL_SIZES = [
    (10, 6, 2, 5),
    (50, 10, 3, 10),
    (100, 20, 4, 20),
    (300, 50, 4, 30),
    (1000, 100, 4, 50),
]
QUICK_SIZES = [(10, 6, 2, 5), (50, 10, 3, 10), (100, 20, 4, 20)]


def naive_variables(problem: Problem) -> int:
    """Variables the naive model builds: a route per (model, zone, region, GPU type) and more."""
    regions = len(problem.regions)
    routes = sum(
        sum(1 for rate in m.demand.values() if rate > 0) * regions * len(m.gpu_types)
        for m in problem.models
    )
    return routes + sum(regions * len(m.gpu_types) for m in problem.models)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def run(args: argparse.Namespace) -> None:
    sizes = args.size or (QUICK_SIZES if args.quick else FULL_SIZES)
    if args.max_models:
        sizes = [s for s in sizes if s[0] <= args.max_models]
    seeds = range(args.seeds if args.seeds else (2 if args.quick else 3))
    naive_limit = args.naive_time_limit if args.naive_time_limit else (3.0 if args.quick else 30.0)
    for models, regions, gpu_types, zones in sizes:
        results: dict[str, list[dict[str, Any]]] = {}
        for seed in seeds:
            problem = random_problem(models, regions, gpu_types=gpu_types, zones=zones, seed=seed)
            size = {"models": models, "regions": regions, "gpuTypes": gpu_types, "zones": zones}
            for policy in args.policy or POLICIES:
                line: dict[str, Any] = {
                    "kind": "instance",
                    **size,
                    "seed": seed,
                    "policy": policy,
                    "relativeGap": args.relative_gap,
                }
                if policy == "naive":
                    variables = naive_variables(problem)
                    line["naiveVariables"] = variables
                    line["timeLimitSeconds"] = naive_limit
                    if variables > args.naive_max_variables:
                        line["status"] = "SKIPPED"
                        line["reason"] = (
                            f"would build {variables} variables object by object "
                            f"(> {args.naive_max_variables})"
                        )
                        emit(line)
                        continue
                options = SolveOptions(
                    time_limit_seconds=naive_limit if policy == "naive" else args.time_limit,
                    relative_gap=args.relative_gap,
                    work_limit=args.work_limit,
                    model_milps=args.model_milps,
                )
                cpu = time.process_time()
                plan = solve(problem, options, policy)
                cpu = time.process_time() - cpu
                t = plan.timing
                line.update(
                    status=plan.status.value,
                    timeLimitReached=plan.time_limit_reached,
                    workLimitReached=plan.work_limit_reached,
                    seconds=t.total_seconds if policy == "gridplace" else t.solve_seconds,
                    cpuSecondsTotal=cpu,
                    gap=plan.gap,
                    objective=plan.objective,
                    lowerBound=plan.lower_bound,
                    carbonGPerHour=plan.carbon_g_per_hour,
                    usdPerHour=plan.usd_per_hour,
                    unservedRps=plan.unserved_rps,
                    timing=t.model_dump(by_alias=True),
                    modelSize=plan.size,
                )
                emit(line)
                results.setdefault(policy, []).append(line)
        for name, lines in results.items():
            times = [x["seconds"] for x in lines]
            gaps = [x["gap"] for x in lines]
            cpu_seconds = [x["cpuSecondsTotal"] for x in lines]
            emit(
                {
                    "kind": "summary",
                    **size,
                    "policy": name,
                    "runs": len(lines),
                    "p50Seconds": statistics.median(times),
                    "p99Seconds": percentile(times, 0.99),
                    "maxSeconds": max(times),
                    "p50CpuSeconds": statistics.median(cpu_seconds),
                    "relativeGap": args.relative_gap,
                    "p50Gap": statistics.median(gaps),
                    "maxGap": max(gaps),
                    "statuses": sorted({x["status"] for x in lines}),
                }
            )


def size_arg(text: str) -> tuple[int, int, int, int]:
    parts = text.lower().split("x")
    if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(
            f"--size {text!r}: expected four positive integers like 1000x100x4x50"
        )
    models, regions, gpu_types, zones = (int(p) for p in parts)
    return models, regions, gpu_types, zones


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 seeds (< 1 min)")
    parser.add_argument("--seeds", type=int, default=0, help="seeds per size (default 3; 2 quick)")
    parser.add_argument("--max-models", type=int, default=0, help="skip larger sizes")
    parser.add_argument(
        "--size",
        type=size_arg,
        action="append",
        help="models x regions x GPU types x zones, e.g. 1000x100x4x50 (repeatable)",
    )
    parser.add_argument(
        "--time-limit", type=float, default=60.0, help="safety net of each solve, seconds"
    )
    parser.add_argument("--work-limit", type=int, default=WORK_LIMIT, help="nodes per MILP")
    parser.add_argument(
        "--model-milps", type=int, default=MODEL_MILPS, help="models' MILPs of the search"
    )
    parser.add_argument(
        "--relative-gap",
        type=float,
        default=0.01,
        help="certified gap at which a solve stops (default 1%%, the scale target)",
    )
    parser.add_argument(
        "--policy",
        choices=POLICIES,
        action="append",
        help="run only this policy (repeatable; default all)",
    )
    parser.add_argument("--naive-time-limit", type=float, default=0.0, help="default 30 (3 quick)")
    parser.add_argument("--naive-max-variables", type=int, default=400_000)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
