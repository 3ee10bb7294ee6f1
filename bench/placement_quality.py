"""Placement quality on real grids: replay scenarios hour by hour and compare every policy.

Prints one JSON object per policy and scenario, one for the offline carbon bound, and one with the
targets: gridplace's carbon savings efficiency against latency-nearest,
(latency-nearest - gridplace) / (latency-nearest - bound) >= 0.9, and its p95-SLO attainment no
worse than latency-nearest's. Run from the repository root:

    uv run python bench/placement_quality.py                       # public scenario, 14 days
    uv run python bench/placement_quality.py --quick               # first 48 hours only
    uv run python bench/placement_quality.py examples/scenarios/public-november.yaml
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from gridplace_operator.placement_commands import native_output_to_stderr
from gridplace_placement.scenario import ScenarioData, load_scenario
from gridplace_placement.scenario.spec import ObjectiveWeights
from gridplace_placement.simulate import BOUND, DEFAULT_POLICIES, plot, simulate
from gridplace_placement.solver import SolveOptions

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = ROOT / "examples" / "scenarios" / "public.yaml"
EFFICIENCY_TARGET = 0.9
QUICK_HOURS = 48


def with_overrides(
    data: ScenarioData, weights: ObjectiveWeights | None, churn_penalty: float | None
) -> ScenarioData:
    """The scenario with every model's weights and the churn penalty replaced, if given."""
    update: dict[str, Any] = {}
    if weights is not None:
        update["models"] = [m.model_copy(update={"weights": weights}) for m in data.spec.models]
    if churn_penalty is not None:
        update["churn_penalty"] = churn_penalty
    return dataclasses.replace(data, spec=data.spec.model_copy(update=update))


def parse_weights(text: str) -> ObjectiveWeights:
    latency, carbon, cost = (float(part) for part in text.split(","))
    return ObjectiveWeights(latency=latency, carbon=carbon, cost=cost)


def run(scenario: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    data = with_overrides(load_scenario(scenario, args.data_dir), args.weights, args.churn_penalty)
    hours = QUICK_HOURS if args.quick else args.hours
    started = time.perf_counter()
    with native_output_to_stderr():  # keep stdout to JSON lines
        sim = simulate(
            data,
            policies=DEFAULT_POLICIES,
            options=SolveOptions(time_limit_seconds=args.time_limit),
            hours=hours,
        )
    elapsed = time.perf_counter() - started
    if args.plot is not None:
        plot(sim, args.plot if len(args.scenarios) == 1 else args.plot.with_stem(sim.scenario))
    totals = sim.totals()
    common = {
        "scenario": sim.scenario,
        "start": sim.hours[0].isoformat(),
        "hours": len(sim.hours),
        "weights": {m.name: m.weights.model_dump() for m in data.spec.models},
        "churn_penalty": data.spec.churn_penalty,
    }
    rows: list[dict[str, Any]] = []
    for policy in sim.runs:
        row = {**common, "policy": policy, **totals[policy]}
        row["vs"] = sim.comparisons(policy)
        rows.append(row)
    rows.append({**common, "policy": BOUND, **totals[BOUND]})
    gp, nearest = totals["gridplace"], totals["latency-nearest"]
    efficiency = sim.comparisons()["latency-nearest"]["carbon_savings_efficiency"]
    rows.append(
        {
            **common,
            "policy": "targets",
            "carbon_savings_efficiency_vs_latency_nearest": efficiency,
            "efficiency_target": EFFICIENCY_TARGET,
            "efficiency_met": efficiency is not None and efficiency >= EFFICIENCY_TARGET,
            "slo_attainment_gridplace": gp["slo_attainment"],
            "slo_attainment_latency_nearest": nearest["slo_attainment"],
            "slo_attainment_met": gp["slo_attainment"] >= nearest["slo_attainment"] - 1e-9,
            "simulation_seconds": elapsed,
        }
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", type=Path, default=[PUBLIC])
    parser.add_argument("--data-dir", type=Path, help="override the scenarios' data directory")
    parser.add_argument("--hours", type=int, help="replay only the first N hours")
    parser.add_argument("--quick", action="store_true", help=f"first {QUICK_HOURS} hours only")
    parser.add_argument("--time-limit", type=float, default=2.0, help="seconds per hourly solve")
    parser.add_argument(
        "--weights", type=parse_weights, help="override every model's weights: LATENCY,CARBON,COST"
    )
    parser.add_argument(
        "--churn-penalty", type=float, help="override the objective cost per moved replica"
    )
    parser.add_argument("--plot", type=Path, help="also write the simulation plot (PNG) here")
    args = parser.parse_args()
    for scenario in args.scenarios:
        for row in run(scenario, args):
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
