"""`gridplace-loadgen`: replay an LLM request trace from user zones and print a JSON report."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from gridplace_e2e.loadgen.plan import (
    LoadPlan,
    Zone,
    load_zones,
    natural_rate,
    parse_steps,
    parse_zone,
    read_trace,
    replay_plan,
    step_plan,
)
from gridplace_e2e.loadgen.runner import RunOptions, round_robin, run_plan, summarize


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridplace-loadgen",
        description="Replay an Azure-format LLM trace (TIMESTAMP, ContextTokens, GeneratedTokens) "
        "against OpenAI endpoints on this machine, from user zones with added RTT.",
    )
    parser.add_argument("--trace", type=Path, required=True)
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        help="base URL, e.g. http://127.0.0.1:8000 (repeatable; requests go round-robin)",
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--api", choices=("chat", "completions"), default="chat")
    zones = parser.add_mutually_exclusive_group()
    zones.add_argument(
        "--zone", action="append", default=[], help="name=rtt_ms[:weight] (repeatable)"
    )
    zones.add_argument(
        "--zones", type=Path, help="YAML file: zones: [{name, rtt_ms, weight, targets}]"
    )
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument(
        "--rate-multiplier", type=float, default=1.0, help="replay the trace this many times faster"
    )
    rate.add_argument(
        "--target-rps", type=float, help="replay the trace sped up to this mean request rate"
    )
    rate.add_argument(
        "--steps", help="step load: duration_s:rate_rps,... with Poisson arrivals and trace sizes"
    )
    parser.add_argument(
        "--max-requests", type=int, default=200, help="upper bound on requests sent"
    )
    parser.add_argument(
        "--max-duration",
        type=float,
        default=60.0,
        help="no request is issued after this many seconds",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=60.0,
        help="seconds before a request counts as timed out",
    )
    parser.add_argument("--max-in-flight", type=int, default=512, help="open connections at most")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="also write the JSON report here")
    return parser  # fmt: skip


def plan_from_args(args: argparse.Namespace) -> LoadPlan:
    for flag in ("max_requests", "max_duration", "request_timeout", "max_in_flight"):
        if getattr(args, flag) <= 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be > 0, got {getattr(args, flag)}")
    zones: tuple[Zone, ...] = (
        load_zones(args.zones)
        if args.zones
        else tuple(parse_zone(z) for z in args.zone) or (Zone("local", 0.0),)
    )
    if args.steps:
        rows = read_trace(args.trace)
        steps = parse_steps(args.steps)
        return step_plan(
            rows,
            zones,
            steps=steps,
            max_requests=args.max_requests,
            max_duration_s=args.max_duration,
            seed=args.seed,
        )
    rows = read_trace(args.trace, limit=args.max_requests)
    multiplier = args.rate_multiplier
    if args.target_rps is not None:
        if args.target_rps <= 0:
            raise ValueError(f"--target-rps must be > 0, got {args.target_rps}")
        multiplier = args.target_rps / natural_rate(rows)
    return replay_plan(
        rows,
        zones,
        rate_multiplier=multiplier,
        max_requests=args.max_requests,
        max_duration_s=args.max_duration,
        seed=args.seed,
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        plan = plan_from_args(args)
        route = round_robin(args.target, plan.zones)
    except (ValueError, OSError) as exc:
        sys.exit(f"gridplace-loadgen: {exc}")
    options = RunOptions(args.model, args.api, args.request_timeout, args.max_in_flight)
    outcomes, wall_s = asyncio.run(run_plan(plan, route, options))
    report = json.dumps(summarize(plan, outcomes, wall_s), indent=2)
    print(report)
    if args.output:
        args.output.write_text(report + "\n")


if __name__ == "__main__":
    main()
