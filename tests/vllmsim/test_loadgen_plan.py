"""Unit tests of load planning: trace reading, zones, steps, arrival scaling, the loopback rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridplace_e2e.loadgen.plan import (
    Step,
    TraceRow,
    Zone,
    load_rtt_matrix,
    load_zones,
    natural_rate,
    parse_steps,
    parse_zone,
    read_trace,
    replay_plan,
    require_loopback,
    rtt_matrix,
    step_plan,
    step_starts,
)
from gridplace_e2e.loadgen.runner import Route, percentile, round_robin, rtt_ms
from gridplace_e2e.public_data import CONV_TRACE


def test_reads_the_azure_conversation_trace() -> None:
    rows = read_trace(CONV_TRACE, limit=4)
    # first rows of the file: 18:15:46.68059, 18:15:50.995169, 18:15:51.222467, 18:15:51.391017
    assert [r.prompt_tokens for r in rows] == [374, 396, 879, 91]
    assert [r.output_tokens for r in rows] == [44, 109, 55, 16]
    assert rows[0].offset_s == 0
    assert rows[1].offset_s == pytest.approx(4.314579)
    assert rows[3].offset_s == pytest.approx(4.710427)


def test_trace_errors_name_line_column_and_value(tmp_path: Path) -> None:
    bad = tmp_path / "trace.csv"
    bad.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.68,10,5\n"
        "2023-11-16 18:15:47.00,ten,5\n"
    )
    with pytest.raises(ValueError, match=r"trace.csv:3: column ContextTokens has bad value 'ten'"):
        read_trace(bad)
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,10,0\n")
    with pytest.raises(ValueError, match=r":2: column GeneratedTokens has bad value '0'"):
        read_trace(bad)
    bad.write_text("time,prompt\n1,2\n")
    with pytest.raises(ValueError, match="missing column"):
        read_trace(bad)


def test_trace_rows_are_sorted_by_arrival(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 00:00:02,2,2\n2023-11-16 00:00:00,1,1\n2023-11-16 00:00:06,3,3\n"
    )
    assert read_trace(trace) == [TraceRow(0, 1, 1), TraceRow(2, 2, 2), TraceRow(6, 3, 3)]


def test_zones_parse_from_flags_and_yaml(tmp_path: Path) -> None:
    assert parse_zone("us-east=40") == Zone("us-east", 40.0, 1.0)
    assert parse_zone("eu=12.5:3") == Zone("eu", 12.5, 3.0)
    for bad in ("eu", "eu=", "eu=-1", "eu=10:0", "=10", "eu=x:1"):
        with pytest.raises(ValueError, match="name=rtt_ms"):
            parse_zone(bad)
    spec = tmp_path / "zones.yaml"
    spec.write_text(
        "zones:\n"
        "  - {name: us, rtt_ms: 30, weight: 2, targets: ['http://127.0.0.1:8001']}\n"
        "  - {name: eu, rtt_ms: 90}\n"
    )
    assert load_zones(spec) == (
        Zone("us", 30.0, 2.0, ("http://127.0.0.1:8001",)),
        Zone("eu", 90.0, 1.0),
    )
    spec.write_text("zones:\n  - {name: us, rtt_ms: -5}\n")
    with pytest.raises(ValueError, match=r"zones\[0\].rtt_ms must be a number >= 0, got -5"):
        load_zones(spec)
    spec.write_text("zones:\n  - {name: us, targets: ['http://192.168.1.5:8000']}\n")
    with pytest.raises(ValueError, match="refused"):
        load_zones(spec)
    spec.write_text("zones:\n  - {name: us}\n  - {name: us}\n")
    with pytest.raises(ValueError, match="more than once: us"):
        load_zones(spec)


def test_steps_parse() -> None:
    assert parse_steps("60:2,30:8.5") == (Step(60, 2), Step(30, 8.5))
    assert step_starts(parse_steps("60:2,30:8,10:0")) == [0, 60, 90]
    for bad in ("60", "0:2", "60:-1", "a:b"):
        with pytest.raises(ValueError, match="duration_s:rate_rps"):
            parse_steps(bad)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://127.3.4.5", "http://localhost:9", "http://[::1]:80"]
)
def test_loopback_targets_are_accepted(url: str) -> None:
    assert require_loopback(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:8000",
        "http://192.168.1.10:8000",
        "http://172.16.0.1",
        "http://8.8.8.8",
        "http://example.com",
        "ftp://127.0.0.1",
        "127.0.0.1:8000",
    ],
)
def test_other_targets_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="refused"):
        require_loopback(url)
    with pytest.raises(ValueError, match="refused"):
        round_robin([url], [Zone("z", 0)])


def test_round_robin_uses_zone_targets_or_defaults() -> None:
    route = round_robin(
        ["http://127.0.0.1:1", "http://127.0.0.1:2"],
        [Zone("a", 0), Zone("b", 0, targets=("http://127.0.0.1:9",))],
    )
    assert [route("a").url for _ in range(3)] == [
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
        "http://127.0.0.1:1",
    ]
    assert {route("b") for _ in range(3)} == {Route("http://127.0.0.1:9")}
    with pytest.raises(ValueError, match="no targets"):
        round_robin([], [Zone("a", 0)])


ROWS = [TraceRow(float(i), 10 + i, 5) for i in range(10)]  # one request per second


def test_replay_scales_arrivals_and_respects_bounds() -> None:
    zones = [Zone("a", 0, 1), Zone("b", 0, 3)]
    plan = replay_plan(ROWS, zones, rate_multiplier=4, max_requests=100, max_duration_s=100, seed=1)
    assert [r.at_s for r in plan.requests] == [i / 4 for i in range(10)]
    assert [r.prompt_tokens for r in plan.requests] == [10 + i for i in range(10)]
    assert {r.zone for r in plan.requests} <= {"a", "b"}
    same = replay_plan(ROWS, zones, rate_multiplier=4, max_requests=100, max_duration_s=100, seed=1)
    assert same == plan
    capped = replay_plan(ROWS, zones, rate_multiplier=1, max_requests=6, max_duration_s=3, seed=1)
    assert [r.at_s for r in capped.requests] == [0, 1, 2, 3]
    assert natural_rate(ROWS) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="rate multiplier must be > 0"):
        replay_plan(ROWS, zones, rate_multiplier=0, max_requests=1, max_duration_s=1, seed=1)


def test_zone_weights_shape_the_split() -> None:
    rows = [TraceRow(float(i), 1, 1) for i in range(2000)]
    plan = replay_plan(
        rows,
        [Zone("a", 0, 1), Zone("b", 0, 3)],
        rate_multiplier=1,
        max_requests=2000,
        max_duration_s=10_000,
        seed=3,
    )
    share_b = sum(r.zone == "b" for r in plan.requests) / len(plan.requests)
    assert 0.70 < share_b < 0.80


def test_step_plan_follows_each_steps_rate() -> None:
    steps = (Step(100, 2), Step(100, 10), Step(50, 0))
    plan = step_plan(
        ROWS, [Zone("z", 0)], steps=steps, max_requests=10_000, max_duration_s=1000, seed=5
    )
    per_step = [sum(r.step == i for r in plan.requests) for i in range(3)]
    assert 150 < per_step[0] < 250  # ~200 Poisson arrivals
    assert 850 < per_step[1] < 1150  # ~1000
    assert per_step[2] == 0
    assert all(0 <= r.at_s < 100 for r in plan.requests if r.step == 0)
    assert all(100 <= r.at_s < 200 for r in plan.requests if r.step == 1)
    assert [r.prompt_tokens for r in plan.requests[:12]] == [10 + i % 10 for i in range(12)]
    assert plan.steps == steps
    short = step_plan(
        ROWS, [Zone("z", 0)], steps=steps, max_requests=50, max_duration_s=1000, seed=5
    )
    assert len(short.requests) == 50


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.95) == 95
    assert percentile(values, 0.5) == 50
    assert percentile([3.0], 0.95) == 3
    assert percentile([], 0.95) is None


def test_the_rtt_is_the_one_to_the_region_that_serves_the_request(tmp_path: Path) -> None:
    regions = tmp_path / "regions.yaml"
    regions.write_text(
        """
apiVersion: gridplace.dev/v1alpha1
kind: Region
metadata: {name: us-east-1}
spec:
  rtt: [{zone: us-east, ms: 5.3}, {zone: eu-central, ms: 92.6}]
---
apiVersion: v1
kind: Secret
metadata: {name: not-a-region}
---
apiVersion: gridplace.dev/v1alpha1
kind: Region
metadata: {name: eu-central-1}
spec:
  rtt: [{zone: eu-central, ms: 4}]
"""
    )
    matrix = load_rtt_matrix(regions)
    assert matrix == {
        "us-east": {"us-east-1": 5.3},
        "eu-central": {"us-east-1": 92.6, "eu-central-1": 4.0},
    }
    eu = Zone("eu-central", 50.0)
    assert rtt_ms(eu, "eu-central-1", matrix) == 4.0
    assert rtt_ms(eu, "us-east-1", matrix) == 92.6
    assert rtt_ms(eu, None, matrix) == 50.0  # the router does not say: the zone's own RTT
    assert rtt_ms(Zone("ap", 70.0), "us-east-1", matrix) == 70.0  # no row for the zone
    with pytest.raises(ValueError, match=r"no RTT from zone 'us-east' to region 'eu-central-1'"):
        rtt_ms(Zone("us-east", 1.0), "eu-central-1", matrix)


def test_a_region_with_a_bad_rtt_is_named() -> None:
    region = {
        "kind": "Region",
        "metadata": {"name": "r"},
        "spec": {"rtt": [{"zone": "z", "ms": -1}]},
    }
    with pytest.raises(ValueError, match="Region r: rtt of zone 'z' is -1"):
        rtt_matrix([region])
