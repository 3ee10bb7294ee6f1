"""The autoscaling benchmark's trace replay: a trace's own arrivals, in Azure's and Mooncake's
layouts, overlaid and compressed without losing the bursts, and the whole comparison run on a
short bursty replay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bench_kit import autoscale_bench

from gridplace_e2e.public_data import CONV_TRACE

ROOT = Path(__file__).resolve().parents[2]


bench = autoscale_bench()

AZURE = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:47.0000000,300,20
2023-11-16 18:15:46.5000000,100,10
2023-11-16 18:15:49.2500000,200,30
"""


def test_an_azure_trace_is_read_in_time_order_from_its_first_request(tmp_path: Path) -> None:
    path = tmp_path / "azure.csv"
    path.write_text(AZURE)
    trace = bench.read_arrivals(path)
    assert trace.at.tolist() == pytest.approx([0.0, 0.5, 2.75])
    assert (trace.prompts.tolist(), trace.outputs.tolist()) == ([100, 300, 200], [10, 20, 30])


def test_a_mooncake_trace_is_read_with_its_millisecond_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "mooncake.jsonl"
    rows = [
        {"timestamp": 0, "input_length": 6755, "output_length": 500, "hash_ids": [0, 1]},
        {"timestamp": 27482, "input_length": 7319, "output_length": 490, "hash_ids": [2]},
        {"timestamp": 30535, "input_length": 7234, "output_length": 794, "hash_ids": [3]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    trace = bench.read_arrivals(path)
    assert trace.at.tolist() == pytest.approx([0.0, 27.482, 30.535])
    assert trace.prompts.tolist() == [6755, 7319, 7234]


def test_a_bad_row_is_named_by_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(AZURE.replace("200,30", "many,30"))
    with pytest.raises(ValueError, match=r"bad.csv:4: not an Azure trace row"):
        bench.read_arrivals(path)


def test_overlaid_copies_multiply_the_rate_and_keep_each_copys_gaps() -> None:
    trace = bench.read_arrivals(CONV_TRACE)
    span = float(trace.at[-1])
    mixed = bench.overlay(trace, copies=4, speed=2.0, seed=3)
    assert mixed.at.size == 4 * trace.at.size
    assert np.all(np.diff(mixed.at) >= 0)
    assert float(mixed.at[-1]) <= span / 2.0
    # the first copy is the trace itself, compressed: its requests are all there
    first = trace.at / 2.0
    assert np.isin(np.round(first, 9), np.round(mixed.at, 9)).all()

    # the bursts stay: the busiest minute stands out from the mean as in the trace itself
    def peak_to_mean(a: Any, length: float) -> float:
        counts = np.histogram(a.at, bins=int(length // 30))[0]
        return float(counts.max() / counts.mean())

    assert peak_to_mean(trace, span) > 1.2
    assert peak_to_mean(mixed, span / 2) > 1.1


def test_a_replayed_burst_is_served_by_the_autoscaler_within_the_slo() -> None:
    """Ten minutes of the conversation trace, ten copies: every policy sees the same requests;
    gridplace keeps the SLO and stays near the oracle's replica-hours."""
    trace = bench.overlay(bench.read_arrivals(CONV_TRACE), copies=10, speed=1.0, seed=1)
    trace = trace.between(0.0, 900.0)
    args = bench.parse_args([])
    sizes = (trace.prompts, trace.outputs)
    setup = bench.Setup(
        slo_s=args.slo, tpot_s=args.tpot, min_replicas=1, max_replicas=200, startup_s=60,
        control_s=15, window_s=60, up_window_s=30, down_window_s=300, max_step=4, tolerance=0.1,
        hpa_target_fraction=0.5, queue_budget_fraction=0.9, seed=1,
    )  # fmt: skip
    model = bench.bench_model(setup, sizes)  # one GPU type: the stand-in sizes like capacity_size
    planner = bench.mix_planner(model, setup.max_replicas)
    runs, results = bench.compare(bench.replay(trace), trace.rate_at, 900.0, model, setup, planner)
    assert {run.arrivals.size for run in runs.values()} == {trace.at.size}
    ours = results["gridplace"]
    assert ours["violating_minutes"] == 0
    assert ours["overprovisioning_vs_oracle"] <= 0.25
