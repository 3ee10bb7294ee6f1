"""Autoscaling benchmark: a day of a real load shape through gridplace's autoscaler, an HPA-like
baseline and a hindsight oracle, with a discrete-event queueing simulator.

The load: the ServeGen aggregate request rate (10-minute points, linearly interpolated, scaled to
`--peak-rps`), Poisson arrivals, request sizes drawn from an Azure LLM trace (prompt and output
tokens). Any CSV with `t_offset_s,total_rate_req_s` (and an optional category column) and any
trace with TIMESTAMP, ContextTokens, GeneratedTokens works. `--replay TRACE` runs a second
comparison on a trace's own arrivals, request by request, with their own sizes: bursty real
traffic rather than Poisson. Two layouts are read: Azure's CSV (TIMESTAMP, ContextTokens,
GeneratedTokens) and Mooncake's JSON lines (`timestamp` in ms, `input_length`, `output_length`);
`--replay-speed` compresses time (2 replays an hour in 30 minutes at twice the rate) and
`--replay-copies` overlays that many copies of the trace, each shifted by a random offset, to
reach rates where the count matters while keeping each copy's bursts.

The server: each replica has `slots` batch slots (from the performance profile at the
time-per-output-token target); the slots of all ready replicas serve one FIFO queue (M/G/c,
simulated request by request). A request holds a slot for its prefill (prompt x prefill time per
token) and its decode (output tokens x the decode step at a full batch). Its time to first token
is its wait plus its prefill. New replicas serve after `--startup-s`; removed ones finish what
they hold.

The controllers decide every `--control-s` seconds from what Prometheus would show over the last
`--window-s`: the p95 (gridplace) or the mean (HPA-like) TTFT of requests whose first token came
in the window, and the served request rate.
- gridplace: `gridplace_operator.autoscale.decide.decide` with the measured rate, exactly as the
  operator calls it; the decision's rate and bounds then go to a one-GPU-type stand-in for the
  joint solve (the fewest replicas whose capacity covers the rate, within the bounds).
- HPA-like: desired = ceil(current x mean/target) outside a 10% tolerance, scale-up at once,
  scale-down to the highest recommendation of the last 300 s (Kubernetes' defaults); its target
  for the mean TTFT is `--hpa-target-fraction` x the p95 SLO.
- oracle (hindsight): for every minute, the capacity model's size for that minute's actual
  arrival rate, ready at once.

Reported per policy: minutes whose p95 TTFT (requests arriving in that minute) misses the SLO,
replica-hours and their excess over the oracle's, direction changes per hour, and the reaction
to a load step (separate run): seconds until the count reaches the oracle size for the new rate,
and until the per-minute p95 is back within the SLO. Run from the repository root:

    uv run python bench/autoscale.py                   # one day, JSON on stdout, PNG in docs/img
    uv run python bench/autoscale.py --hours 4         # a quicker look
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gridplace_e2e.public_data import CONV_TRACE, LOAD_SHAPE
from gridplace_operator.autoscale.decide import (
    History,
    Inputs,
    ScalingPolicy,
    capacity_size,
    decide,
    direction_changes,
)
from gridplace_placement.problem import Model as PlacementModel
from gridplace_placement.profiles import catalogue

ROOT = Path(__file__).resolve().parent.parent
PROFILE_MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct"
GPU = "NVIDIA-H100-80GB-HBM3"
TARGETS = {
    "violating_minutes_fraction_max": 0.01,
    "overprovisioning_vs_oracle_max": 0.15,
    "direction_changes_per_hour_max": 2.0,
}
Floats = NDArray[np.float64]


@dataclass(frozen=True)
class Setup:
    slo_s: float
    tpot_s: float
    min_replicas: int
    max_replicas: int
    startup_s: float
    control_s: float
    window_s: float
    up_window_s: float
    down_window_s: float
    max_step: int
    tolerance: float
    hpa_target_fraction: float
    queue_budget_fraction: float
    seed: int


def read_shape(path: Path, category: str | None) -> tuple[Floats, Floats]:
    """(t_offset_s, rate) points of a load shape; rates of several categories are summed."""
    rates: dict[float, float] = {}
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            if category and row.get("category_model") != category:
                continue
            try:
                at, rate = float(row["t_offset_s"]), float(row["total_rate_req_s"])
            except (KeyError, ValueError) as err:
                raise ValueError(
                    f"{path}:{line}: bad t_offset_s/total_rate_req_s ({err})"
                ) from None
            rates[at] = rates.get(at, 0.0) + rate
    if len(rates) < 2:
        raise ValueError(f"{path}: fewer than two rate points for category {category!r}")
    times = np.array(sorted(rates))
    return times, np.array([rates[t] for t in times])


def read_sizes(path: Path) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    prompts, outputs = [], []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            prompts.append(int(row["ContextTokens"]))
            outputs.append(int(row["GeneratedTokens"]))
    return np.array(prompts), np.array(outputs)


@dataclass(frozen=True)
class Arrivals:
    """Requests in time order: arrival (s from the first), prompt and output tokens."""

    at: Floats
    prompts: NDArray[np.int64]
    outputs: NDArray[np.int64]

    def between(self, start: float, end: float) -> Arrivals:
        lo, hi = np.searchsorted(self.at, [start, end])
        return Arrivals(self.at[lo:hi], self.prompts[lo:hi], self.outputs[lo:hi])

    def rate_at(self, t: float, width_s: float = 60.0) -> float:
        """Mean arrival rate over the `width_s` around `t` (for the figure and the oracle)."""
        lo, hi = np.searchsorted(self.at, [t - width_s / 2, t + width_s / 2])
        return float(hi - lo) / width_s


def read_arrivals(path: Path) -> Arrivals:
    """A trace's own arrivals: Azure's CSV (TIMESTAMP, ContextTokens, GeneratedTokens) or
    Mooncake's JSON lines (`timestamp` in milliseconds, `input_length`, `output_length`)."""
    times: list[float] = []
    prompts: list[int] = []
    outputs: list[int] = []
    with path.open(newline="") as handle:
        first = handle.readline()
        handle.seek(0)
        if first.lstrip().startswith("{"):
            for line, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                    times.append(float(row["timestamp"]) / 1000.0)
                    prompts.append(int(row["input_length"]))
                    outputs.append(int(row["output_length"]))
                except (ValueError, KeyError, TypeError) as err:
                    raise ValueError(f"{path}:{line}: not a Mooncake request ({err})") from None
        else:
            for line, row in enumerate(csv.DictReader(handle), start=2):
                try:
                    stamp = datetime.fromisoformat(row["TIMESTAMP"][:26])
                    times.append(stamp.timestamp())
                    prompts.append(int(row["ContextTokens"]))
                    outputs.append(int(row["GeneratedTokens"]))
                except (ValueError, KeyError, TypeError) as err:
                    raise ValueError(f"{path}:{line}: not an Azure trace row ({err})") from None
    if len(times) < 2:
        raise ValueError(f"{path}: fewer than two requests")
    order = np.argsort(times, kind="stable")
    at = np.array(times)[order]
    return Arrivals(at - at[0], np.array(prompts)[order], np.array(outputs)[order])


def overlay(trace: Arrivals, copies: int, speed: float, seed: int) -> Arrivals:
    """`copies` copies of the trace, time compressed by `speed`, each rotated by a random offset
    within the trace's span (what falls off the end wraps to the start): the rate times
    `copies x speed`, each copy's bursts kept."""
    span = float(trace.at[-1]) + 1e-9
    rng = np.random.default_rng(seed)
    parts = []
    for copy in range(copies):
        shift = 0.0 if copy == 0 else float(rng.uniform(0, span))
        parts.append((trace.at + shift) % span)
    at = np.concatenate(parts) / speed
    order = np.argsort(at, kind="stable")
    return Arrivals(
        at[order], np.tile(trace.prompts, copies)[order], np.tile(trace.outputs, copies)[order]
    )


def poisson(
    rate_at: Callable[[float], float], sizes: tuple[NDArray[np.int64], NDArray[np.int64]]
) -> Callable[[float, float, np.random.Generator], Arrivals]:
    """Arrivals of a rate shape: Poisson, sizes drawn from a trace."""
    prompts, outputs = sizes

    def draw(start: float, end: float, rng: np.random.Generator) -> Arrivals:
        count = rng.poisson(rate_at((start + end) / 2) * (end - start))
        pick = rng.integers(0, len(prompts), count)
        return Arrivals(np.sort(rng.uniform(start, end, count)), prompts[pick], outputs[pick])

    return draw


def replay(trace: Arrivals) -> Callable[[float, float, np.random.Generator], Arrivals]:
    def take(start: float, end: float, _: np.random.Generator) -> Arrivals:
        return trace.between(start, end)

    return take


@dataclass
class Observed:
    p95_s: float | None
    mean_s: float | None
    rps: float  # served rate plus the queue's growth, as the operator reads it
    arrival_rps: float = 0.0  # served plus the queue's signed growth


@dataclass
class Cluster:
    """The replicas and the slot heap of the M/G/c queue."""

    slots_per_replica: int
    free_at: list[float] = field(default_factory=list)  # one entry per slot (heap)
    starting: deque[tuple[float, int]] = field(default_factory=deque)  # (ready at, replicas)
    replicas: int = 0

    def ready(self, now: float) -> int:
        while self.starting and self.starting[0][0] <= now:
            self.starting.popleft()
        return self.replicas - sum(n for _, n in self.starting)

    def scale(self, desired: int, now: float, startup_s: float) -> None:
        if desired > self.replicas:
            added = desired - self.replicas
            for _ in range(added * self.slots_per_replica):
                heapq.heappush(self.free_at, now + startup_s)
            if startup_s > 0:
                self.starting.append((now + startup_s, added))
        elif desired < self.replicas:
            # Starting replicas go first, then the busiest slots (they drain, then leave).
            removed = self.replicas - desired
            keep = heapq.nsmallest(
                len(self.free_at) - removed * self.slots_per_replica, self.free_at
            )
            heapq.heapify(keep)
            self.free_at = keep
            while removed and self.starting:
                at, n = self.starting.pop()
                take = min(n, removed)
                removed -= take
                if n > take:
                    self.starting.append((at, n - take))
        self.replicas = desired


Controller = Callable[[float, Observed, Cluster], int]


def size_table(model: PlacementModel, limit: int) -> Callable[[float], int]:
    """`capacity_size` for one GPU type, from capacities computed once (it is called a lot)."""
    replica = model.replica_model(GPU)
    caps = np.array([replica.capacity(n) for n in range(1, limit + 1)])

    def size(rps: float) -> int:
        return 0 if rps <= 0 else min(int(np.searchsorted(caps, rps)) + 1, limit)

    for rps in (0.0, 0.5, caps[len(caps) // 2], caps[-1] * 2):  # the table is the same function
        assert size(float(rps)) == capacity_size(model, float(rps), GPU, limit).replicas
    return size


def gridplace_controller(size: Callable[[float], int], setup: Setup) -> Controller:
    policy = ScalingPolicy(
        setup.min_replicas, setup.max_replicas, setup.up_window_s, setup.down_window_s,
        setup.max_step, setup.tolerance, setup.window_s,
    )  # fmt: skip
    state = {"history": History()}

    def control(now: float, seen: Observed, cluster: Cluster) -> int:
        inputs = Inputs(
            now_s=now,
            target_p95_s=setup.slo_s,
            current=cluster.replicas,
            ready=cluster.ready(now),
            metrics_available=True,
            observed_p95_s=seen.p95_s,
            observed_rps=seen.rps,
            arrival_rps=seen.arrival_rps,
            demand_rps=seen.rps,
        )
        decision = decide(inputs, policy, state["history"])
        state["history"] = decision.history
        # The joint solve of one model on one GPU type: the fewest replicas for the rate.
        need = cluster.replicas if decision.rate_rps is None else size(decision.rate_rps)
        return max(decision.min_total, min(decision.max_total, need))

    return control


def hpa_controller(setup: Setup) -> Controller:
    target = setup.hpa_target_fraction * setup.slo_s
    recommendations: deque[tuple[float, int]] = deque()

    def control(now: float, seen: Observed, cluster: Cluster) -> int:
        current = cluster.replicas
        wanted = current
        if seen.mean_s is not None and abs(seen.mean_s / target - 1) > 0.1:
            wanted = math.ceil(current * seen.mean_s / target)
        wanted = max(setup.min_replicas, min(setup.max_replicas, wanted))
        recommendations.append((now, wanted))
        while recommendations[0][0] < now - 300:
            recommendations.popleft()
        if wanted > current:  # HPA: scale up at once, by at most max(100%, 4 pods) per sync
            return min(wanted, current + max(current, 4))
        return max(n for _, n in recommendations) if wanted < current else current

    return control


@dataclass
class Run:
    arrivals: Floats
    ttft: Floats  # inf for requests still waiting when the run ends
    replicas: list[tuple[float, int]]  # (time, desired) at every control step


def simulate(
    arrive: Callable[[float, float, np.random.Generator], Arrivals],
    duration_s: float,
    model: PlacementModel,
    setup: Setup,
    controller: Controller | None,
    oracle: Callable[[float], int] | None = None,
    start_replicas: int = 1,
) -> Run:
    """Request-by-request FIFO M/G/c with a controller every `control_s` (or an oracle). A request
    starts when a slot is free; until then it waits in the one queue, so new replicas take it."""
    rng = np.random.default_rng(setup.seed)
    profile = model.profiles[GPU]
    replica = model.replica_model(GPU)
    step_s = profile.decode_base_seconds + profile.decode_per_sequence_seconds * replica.slots
    cluster = Cluster(replica.slots)
    cluster.scale(start_replicas, 0.0, 0.0)
    waiting_at: deque[float] = deque()
    waiting_prefill: deque[float] = deque()
    waiting_service: deque[float] = deque()
    chunks: deque[tuple[Floats, Floats]] = deque()  # per interval: (first token time, ttft)
    queue: deque[tuple[float, int]] = deque([(0.0, 0)])  # (time, requests waiting)
    arrivals: list[Floats] = []
    ttfts: list[float] = []
    replicas: list[tuple[float, int]] = []
    now = 0.0
    while now < duration_s:
        if oracle is not None:
            cluster.scale(oracle(now), now, 0.0)
        elif now > 0:
            assert controller is not None
            seen = observe(chunks, queue, now, setup.window_s)
            cluster.scale(controller(now, seen, cluster), now, setup.startup_s)
        replicas.append((now, cluster.replicas))
        end = now + setup.control_s
        new = arrive(now, end, rng)
        prefill = new.prompts * profile.prefill_seconds_per_token
        arrivals.append(new.at)
        waiting_at.extend(new.at.tolist())
        waiting_prefill.extend(prefill.tolist())
        waiting_service.extend((prefill + new.outputs * step_s).tolist())
        heap = cluster.free_at
        first: list[float] = []
        started: list[float] = []
        while waiting_at and heap:
            begin = max(waiting_at[0], heap[0])
            if begin >= end:
                break
            a, pf = waiting_at.popleft(), waiting_prefill.popleft()
            heapq.heapreplace(heap, begin + waiting_service.popleft())
            first.append(begin + pf)
            started.append(begin + pf - a)
        ttfts.extend(started)
        queue.append((end, len(waiting_at)))
        while queue[0][0] < end - setup.window_s:
            queue.popleft()
        chunks.append((np.array(first), np.array(started)))
        while len(chunks) * setup.control_s > setup.window_s + 2 * setup.control_s:
            chunks.popleft()
        now = end
    ttft = np.full(sum(a.size for a in arrivals), np.inf)
    ttft[: len(ttfts)] = ttfts
    return Run(np.concatenate(arrivals), ttft, replicas)


def observe(
    chunks: Sequence[tuple[Floats, Floats]],
    queue: Sequence[tuple[float, int]],
    now: float,
    window_s: float,
) -> Observed:
    """What Prometheus shows at `now`: requests whose first token came in the window, and how
    much the waiting queue grew over it (deriv of vllm:num_requests_waiting)."""
    (t0, q0), (t1, q1) = queue[0], queue[-1]
    # the queue's growth, and what it takes to drain the waiting requests within one window
    growth = (max(0.0, (q1 - q0) / (t1 - t0)) if t1 > t0 else 0.0) + q1 / window_s
    if not chunks:
        return Observed(None, None, growth)
    first = np.concatenate([c[0] for c in chunks])
    ttft = np.concatenate([c[1] for c in chunks])
    seen = ttft[(first >= now - window_s) & (first < now)]
    if seen.size == 0:
        return Observed(None, None, growth)
    p95, mean = float(np.percentile(seen, 95)), float(seen.mean())
    served = seen.size / window_s
    arrivals = max(0.0, served + ((q1 - q0) / (t1 - t0) if t1 > t0 else 0.0))
    return Observed(p95, mean, served + growth, arrivals)


def per_minute_p95(run: Run, duration_s: float) -> Floats:
    minutes = int(duration_s // 60)
    edges = np.searchsorted(run.arrivals, np.arange(minutes + 1) * 60.0)
    out = np.full(minutes, np.nan)
    for m in range(minutes):
        part = run.ttft[edges[m] : edges[m + 1]]
        if part.size:
            out[m] = np.percentile(part, 95)
    return out


def summarize(run: Run, duration_s: float, setup: Setup, control_s: float) -> dict[str, Any]:
    p95 = per_minute_p95(run, duration_s)
    measured = p95[~np.isnan(p95)]
    violating = int((measured > setup.slo_s).sum())
    counts = [n for _, n in run.replicas]
    return {
        "minutes": int(measured.size),
        "violating_minutes": violating,
        "violating_minutes_fraction": round(violating / max(1, measured.size), 4),
        "overall_p95_ttft_s": round(float(np.percentile(run.ttft, 95)), 3),
        "replica_hours": round(sum(counts) * control_s / 3600, 2),
        "direction_changes": direction_changes(counts),
        "direction_changes_per_hour": round(direction_changes(counts) / (duration_s / 3600), 3),
        "max_replicas": max(counts),
        "requests": int(run.arrivals.size),
    }


def reaction(
    run: Run, step_at: float, needed: int, slo_s: float, duration_s: float
) -> dict[str, Any]:
    reached = next((t for t, n in run.replicas if t >= step_at and n >= needed), None)
    p95 = per_minute_p95(run, duration_s)
    first_minute = int(step_at // 60)
    breached = [m for m in range(first_minute, p95.size) if p95[m] > slo_s]
    recovered = None
    if not breached:
        recovered = 0.0
    else:
        after = [m for m in range(breached[0], p95.size) if not p95[m] > slo_s]
        recovered = after[0] * 60.0 - step_at if after else None
    return {
        "seconds_to_oracle_size": None if reached is None else round(reached - step_at, 1),
        "seconds_to_p95_within_slo": recovered,
        "minutes_violating_after_step": len(breached),
    }


def plot(
    runs: dict[str, Run],
    rate_at: Callable[[float], float],
    duration_s: float,
    setup: Setup,
    path: Path,
) -> None:
    import matplotlib  # noqa: PLC0415 - only for the figure

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (top, mid, low) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    hours = np.arange(0, duration_s, 60) / 3600
    top.plot(hours, [rate_at(h * 3600) for h in hours], color="black")
    top.set_ylabel("offered load (req/s)")
    for name, run in runs.items():
        t = np.array([x for x, _ in run.replicas]) / 3600
        mid.step(t, [n for _, n in run.replicas], where="post", label=name)
        low.plot(
            hours[: len(per_minute_p95(run, duration_s))],
            per_minute_p95(run, duration_s),
            label=name,
            lw=0.8,
        )
    mid.set_yscale("log")
    mid.set_ylabel("replicas (log)")
    mid.legend()
    low.axhline(setup.slo_s, color="red", ls="--", lw=1, label="SLO")
    low.set_yscale("log")
    low.set_ylabel("p95 TTFT per minute (s)")
    low.set_xlabel("hour")
    low.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def bench_model(setup: Setup, sizes: tuple[NDArray[np.int64], NDArray[np.int64]]) -> PlacementModel:
    """The shipped profile of the benchmark's model, at the setup's SLO and the mean sizes."""
    profile = next(p for p in catalogue()[PROFILE_MODEL] if p["gpuType"] == GPU)
    return PlacementModel.model_validate(
        {
            "name": "bench", "gpuTypes": [GPU], "profiles": {GPU: profile},
            "sloP95TtftSeconds": setup.slo_s, "tpotTargetSeconds": setup.tpot_s,
            "queueBudgetFraction": setup.queue_budget_fraction,
            "promptTokens": float(sizes[0].mean()), "outputTokens": float(sizes[1].mean()),
        }
    )  # fmt: skip


def compare(
    arrive: Callable[[float, float, np.random.Generator], Arrivals],
    rate_at: Callable[[float], float],
    duration_s: float,
    model: PlacementModel,
    setup: Setup,
    size: Callable[[float], int],
) -> tuple[dict[str, Run], dict[str, dict[str, Any]]]:
    """gridplace, the HPA-like baseline and the hindsight oracle on the same arrivals (the same
    seed: a replayed trace is the same requests for all three)."""

    def oracle(t: float) -> int:
        minute = math.floor(t / 60) * 60
        load = float(np.mean([rate_at(minute + s) for s in range(0, 60, 15)]))
        return max(setup.min_replicas, size(load))

    first = oracle(0.0)  # every policy starts warm, at the size for the first minute
    controllers = {
        "gridplace": gridplace_controller(size, setup),
        "hpa-like": hpa_controller(setup),
    }
    runs = {
        name: simulate(arrive, duration_s, model, setup, c, start_replicas=first)
        for name, c in controllers.items()
    }
    runs["oracle"] = simulate(arrive, duration_s, model, setup, None, oracle)
    results = {
        name: summarize(run, duration_s, setup, setup.control_s) for name, run in runs.items()
    }
    base = results["oracle"]["replica_hours"]
    for summary in results.values():
        summary["overprovisioning_vs_oracle"] = round(summary["replica_hours"] / base - 1, 4)
    return runs, results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--load", type=Path, default=LOAD_SHAPE)
    parser.add_argument("--category", default="language/m-large", help="'' sums all categories")
    parser.add_argument("--trace", type=Path, default=CONV_TRACE)
    parser.add_argument("--peak-rps", type=float, default=100.0)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--slo", type=float, default=2.0, help="p95 TTFT target, s")
    parser.add_argument("--tpot", type=float, default=0.05, help="time per output token target, s")
    parser.add_argument("--startup-s", type=float, default=60.0)
    parser.add_argument("--control-s", type=float, default=15.0)
    parser.add_argument("--window-s", type=float, default=60.0, help="Prometheus rate window")
    parser.add_argument("--up-window-s", type=float, default=30.0)
    parser.add_argument("--down-window-s", type=float, default=300.0)
    parser.add_argument("--max-step", type=int, default=4)
    parser.add_argument("--hpa-target-fraction", type=float, default=0.5)
    parser.add_argument(
        "--queue-budget-fraction",
        type=float,
        default=0.9,
        help="share of the SLO left after prefill the queue may use (no network RTT here)",
    )
    parser.add_argument(
        "--replay", type=Path, help="also replay this trace's own arrivals (Azure CSV or Mooncake)"
    )
    parser.add_argument("--replay-speed", type=float, default=1.0, help="time compression")
    parser.add_argument("--replay-copies", type=int, default=1, help="shifted copies overlaid")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "img" / "autoscale.png")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args(argv)


def verdict(ours: dict[str, Any], hpa: dict[str, Any]) -> dict[str, bool]:
    return {
        "violating_minutes_fraction": (
            ours["violating_minutes_fraction"] <= TARGETS["violating_minutes_fraction_max"]
        ),
        "overprovisioning_vs_oracle": (
            ours["overprovisioning_vs_oracle"] <= TARGETS["overprovisioning_vs_oracle_max"]
        ),
        "direction_changes_per_hour": (
            ours["direction_changes_per_hour"] <= TARGETS["direction_changes_per_hour_max"]
        ),
        "fewer_replica_hours_than_hpa_at_equal_or_better_attainment": (
            ours["replica_hours"] < hpa["replica_hours"]
            and ours["violating_minutes"] <= hpa["violating_minutes"]
        ),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup = Setup(
        slo_s=args.slo, tpot_s=args.tpot, min_replicas=1, max_replicas=200,
        startup_s=args.startup_s, control_s=args.control_s, window_s=args.window_s,
        up_window_s=args.up_window_s, down_window_s=args.down_window_s, max_step=args.max_step,
        tolerance=0.1, hpa_target_fraction=args.hpa_target_fraction,
        queue_budget_fraction=args.queue_budget_fraction, seed=args.seed,
    )  # fmt: skip
    sizes = read_sizes(args.trace)
    model = bench_model(setup, sizes)
    times, rates = read_shape(args.load, args.category or None)
    scale = float(args.peak_rps / rates.max())
    duration = min(args.hours * 3600, float(times[-1]) + 600)

    def rate_at(t: float) -> float:
        return float(np.interp(t, times, rates)) * scale

    size = size_table(model, setup.max_replicas)
    started = time.perf_counter()
    runs, results = compare(poisson(rate_at, sizes), rate_at, duration, model, setup, size)
    # A step: 30% of the peak for 20 minutes, then 80%.
    peak: float = args.peak_rps
    low, high, step_at, step_len = 0.3 * peak, 0.8 * peak, 1200.0, 3600.0

    def step_rate(t: float) -> float:
        return low if t < step_at else high

    fresh = {"gridplace": gridplace_controller(size, setup), "hpa-like": hpa_controller(setup)}
    for name, controller in fresh.items():
        run = simulate(
            poisson(step_rate, sizes),
            step_len,
            model,
            setup,
            controller,
            start_replicas=size(low),
        )
        results[name]["step"] = reaction(run, step_at, size(high), setup.slo_s, step_len)
    replayed: dict[str, Any] | None = None
    if args.replay is not None:
        trace = overlay(
            read_arrivals(args.replay), args.replay_copies, args.replay_speed, setup.seed
        )
        span = float(trace.at[-1])
        own = bench_model(setup, (trace.prompts, trace.outputs))  # sized for the trace's requests
        _, replayed = compare(
            replay(trace), trace.rate_at, span, own, setup, size_table(own, setup.max_replicas)
        )
        replayed = {
            "trace": str(args.replay),
            "copies": args.replay_copies,
            "speed": args.replay_speed,
            "hours": round(span / 3600, 3),
            "mean_rps": round(trace.at.size / span, 2),
            "peak_minute_rps": round(max(trace.rate_at(t) for t in np.arange(30, span, 60)), 2),
            "results": replayed,
            "met": verdict(replayed["gridplace"], replayed["hpa-like"]),
        }
    report = {
        "setup": {
            **setup.__dict__,
            "load": str(args.load),
            "category": args.category,
            "trace": str(args.trace),
            "peak_rps": args.peak_rps,
            "hours": duration / 3600,
            "profile": f"{PROFILE_MODEL} on {GPU}",
            "slots_per_replica": model.replica_model(GPU).slots,
            "queue_simulator": "discrete-event FIFO M/G/c over all ready replicas' batch slots",
        },
        "results": results,
        "targets": TARGETS,
        "met": verdict(results["gridplace"], results["hpa-like"]),
        "replay": replayed,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    plot(runs, rate_at, duration, setup, args.png)
    print(f"wrote {args.png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
