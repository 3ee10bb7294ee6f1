"""The load generator against real simulator processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from gridplace_e2e.loadgen.plan import Step, Zone, read_trace, step_plan
from gridplace_e2e.loadgen.runner import Route, RunOptions, round_robin, run_plan, summarize
from gridplace_e2e.public_data import CONV_TRACE
from gridplace_e2e.vllmsim.scrape import scrape

SimFactory = Callable[..., str]


def _loadgen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridplace_e2e.loadgen.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_replays_trace_rows_with_exact_sizes_and_zone_rtt(start_sim: SimFactory) -> None:
    base = start_sim("--model", "m", "--max-num-seqs", "64", "--time-to-first-token", "10",
                     "--inter-token-latency", "1")  # fmt: skip
    rows = read_trace(CONV_TRACE, limit=20)
    result = _loadgen(
        "--trace", str(CONV_TRACE), "--target", base, "--model", "m",
        "--zone", "near=0:1", "--zone", "far=300:1",
        "--max-requests", "20", "--rate-multiplier", "20", "--max-duration", "60",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["overall"]["sent"] == 20
    assert report["overall"]["ok"] == 20
    assert report["overall"]["errors"] == {}
    near, far = report["zones"]["near"], report["zones"]["far"]
    assert near["sent"] + far["sent"] == 20
    assert near["sent"] > 0
    assert far["sent"] > 0
    assert far["rtt_ms"] == 300
    assert far["ttft_p50_ms"] >= 300  # the zone's RTT is part of what its users see
    assert far["ttft_p50_ms"] > near["ttft_p50_ms"]
    assert far["e2e_p95_ms"] >= far["ttft_p95_ms"]
    assert report["overall"]["output_tokens_per_s"] > 0
    # the server saw exactly the trace's prompt and output sizes
    samples = scrape(base)
    assert samples.get("vllm:prompt_tokens_total") == sum(r.prompt_tokens for r in rows)
    assert samples.get("vllm:generation_tokens_total") == sum(r.output_tokens for r in rows)
    assert samples.get("vllm:request_success_total", finished_reason="length") == 20


def test_refuses_targets_off_this_machine() -> None:
    for target in ("http://10.1.2.3:8000", "http://example.com"):
        result = _loadgen("--trace", str(CONV_TRACE), "--target", target, "--model", "m")
        assert result.returncode == 1
        assert f"target '{target}' refused" in result.stderr
        assert result.stdout == ""


def test_bad_arguments_are_named() -> None:
    result = _loadgen(
        "--trace", str(CONV_TRACE), "--target", "http://127.0.0.1:1", "--model", "m",
        "--zone", "eu=ten",
    )  # fmt: skip
    assert result.returncode == 1
    assert "zone 'eu=ten' must look like name=rtt_ms[:weight]" in result.stderr
    result = _loadgen(
        "--trace", str(CONV_TRACE), "--target", "http://127.0.0.1:1", "--model", "m",
        "--max-requests", "0",
    )  # fmt: skip
    assert result.returncode == 1
    assert "--max-requests must be > 0, got 0" in result.stderr


def test_failed_requests_are_counted_per_status(start_sim: SimFactory) -> None:
    base = start_sim("--model", "m", "--failure-injection-rate", "100")
    result = _loadgen(
        "--trace", str(CONV_TRACE), "--target", base, "--model", "m",
        "--max-requests", "10", "--rate-multiplier", "50",
    )  # fmt: skip
    overall = json.loads(result.stdout)["overall"]
    assert overall["ok"] == 0
    assert overall["ttft_p95_ms"] is None
    assert sum(overall["errors"].values()) == 10
    assert set(overall["errors"]) <= {"http 429", "http 500", "http 503"}


def test_step_load_past_capacity_raises_ttft_p95(start_sim: SimFactory, tmp_path: Path) -> None:
    # 2 slots, each held for one prefill step and 19 decode steps of 10 ms = 0.2 s (the 20 ms
    # before the scheduler hold none): capacity ~10 req/s
    base = start_sim("--model", "m", "--max-num-seqs", "2", "--time-to-first-token", "20",
                     "--inter-token-latency", "10")  # fmt: skip
    trace = tmp_path / "trace.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 00:00:00,10,20\n")
    steps = (Step(4, 4.8), Step(4, 11.4))  # 48 % and 114 % of capacity
    plan = step_plan(
        read_trace(trace), [Zone("z", 0)], steps=steps, max_requests=200, max_duration_s=10, seed=2
    )
    outcomes, wall_s = asyncio.run(run_plan(plan, round_robin([base], plan.zones), RunOptions("m")))
    report = summarize(plan, outcomes, wall_s)
    light, heavy = report["steps"]
    assert light["ok"] == light["sent"] > 5
    assert heavy["ok"] == heavy["sent"] > light["sent"]
    assert heavy["ttft_p95_ms"] > 1.5 * light["ttft_p95_ms"]
    assert scrape(base).get("vllm:request_queue_time_seconds_count") == len(plan.requests)


def test_each_request_gets_the_rtt_of_the_region_it_is_routed_to(start_sim: SimFactory) -> None:
    near = start_sim("--model", "m", "--max-num-seqs", "64", "--time-to-first-token", "10")
    far = start_sim("--model", "m", "--max-num-seqs", "64", "--time-to-first-token", "10")
    plan = step_plan(
        read_trace(CONV_TRACE), [Zone("z", 1000.0)], steps=(Step(3, 8),), max_requests=24,
        max_duration_s=5, seed=1,
    )  # fmt: skip
    turns = itertools.cycle([Route(near, "near-1"), Route(far, "far-1")])
    matrix = {"z": {"near-1": 0.0, "far-1": 300.0}}
    outcomes, _ = asyncio.run(
        run_plan(plan, lambda _: next(turns), RunOptions("m", rtt_matrix_ms=matrix))
    )
    assert all(o.error is None for o in outcomes), [o.error for o in outcomes]
    by_region = {r: [o for o in outcomes if o.region == r] for r in ("near-1", "far-1")}
    assert by_region["near-1"] and by_region["far-1"]
    assert {o.rtt_ms for o in by_region["near-1"]} == {0.0}
    assert {o.rtt_ms for o in by_region["far-1"]} == {300.0}
    # what users saw: the far region's round trip on top, never the zone's default 1000 ms
    assert all(o.ttft_s is not None and 0.3 <= o.ttft_s < 1.0 for o in by_region["far-1"])
    assert all(o.ttft_s is not None and o.ttft_s < 0.3 for o in by_region["near-1"])


def test_a_route_to_a_region_without_an_rtt_fails_the_request(start_sim: SimFactory) -> None:
    base = start_sim("--model", "m")
    plan = step_plan(
        read_trace(CONV_TRACE), [Zone("z", 0.0)], steps=(Step(1, 3),), max_requests=2,
        max_duration_s=2, seed=1,
    )  # fmt: skip
    options = RunOptions("m", rtt_matrix_ms={"z": {"near-1": 1.0}})
    outcomes, _ = asyncio.run(run_plan(plan, lambda _: Route(base, "mars-1"), options))
    assert outcomes
    assert {o.error for o in outcomes} == {
        "no RTT from zone 'z' to region 'mars-1' in the RTT matrix (regions: near-1)"
    }
