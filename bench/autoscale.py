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
  operator calls it; the decision's rate and bounds then go to the joint solve of one region
  over the allowed GPU types (`--gpu-types`, default H100 and L40S, each with its shipped
  profile). `--planner solve` (the default) calls the placement solver itself on a one-region
  problem: the bounds as min/max replicas, the rate as the demand, what runs as the current
  assignment (`SolvePlanner`, about 20-50 ms a solve, answers kept by their inputs).
  `--planner enumerate` takes the cheapest mix whose pools carry the rate with a total within
  the bounds by exact enumeration (`MixPlanner`: each type's pool sized by the placement
  package's `ReplicaModel.capacity`, priced by the solver's own per-replica and per-request
  objective coefficients for the region; no churn penalty, no hysteresis); with one type that
  is the fewest replicas whose capacity covers the rate, the stand-in of earlier runs.
- HPA-like: desired = ceil(current x mean/target) outside a 10% tolerance, scale-up at once,
  scale-down to the highest recommendation of the last 300 s (Kubernetes' defaults); its target
  for the mean TTFT is `--hpa-target-fraction` x the p95 SLO. It scales one Deployment, of the
  first of `--gpu-types`.
- oracle (hindsight): for every minute, the cheapest mix that carries that minute's actual
  arrival rate (the same planner, bounded by min and max replicas only), ready at once.

With several types, a replica of each type brings its own slots (its batch at the
time-per-output-token target) to the one FIFO queue, and a request served by a slot takes that
type's prefill and decode times.

Reported per policy: minutes whose p95 TTFT (requests arriving in that minute) misses the SLO,
replica-hours (in total and per type), GPU-hours, the region's carbon and energy cost as the
solver prices them, their excess over the oracle's, direction changes per hour of the total, and
the reaction to a load step (separate run): seconds until the planned capacity reaches the
oracle's for the new rate, and until the per-minute p95 is back within the SLO. Run from the
repository root:

    uv run python bench/autoscale.py                   # one day, JSON on stdout, PNG in docs/img
    uv run python bench/autoscale.py --hours 4         # a quicker look
    uv run python bench/autoscale.py --gpu-types NVIDIA-H100-80GB-HBM3 --planner enumerate
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
from gridplace_placement.candidates import candidates
from gridplace_placement.problem import Model as PlacementModel
from gridplace_placement.problem import Problem
from gridplace_placement.profiles import catalogue
from gridplace_placement.solver import solve

ROOT = Path(__file__).resolve().parent.parent
PROFILE_MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct"
GPU = "NVIDIA-H100-80GB-HBM3"
GPU_TYPES = (GPU, "NVIDIA-L40S")
# The one region the stand-in plans in: us-east-1 of examples/regions.yaml (PJM's median carbon
# intensity and day-ahead price, AWS' PUE); no GPU-hour price, so cost is energy.
REGION = {
    "name": "us-east-1",
    "pue": 1.15,
    "carbonIntensity": 404.0,
    "powerPriceUsdPerMwh": 43.9,
}
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


Mix = tuple[int, ...]  # replicas per GPU type, in the order of `--gpu-types`


@dataclass
class Cluster:
    """The replicas of each GPU type and the slot heap of the M/G/c queue: one entry per slot,
    (free at, GPU type index)."""

    slots_per_replica: tuple[int, ...]
    free_at: list[tuple[float, int]] = field(default_factory=list)
    starting: list[deque[tuple[float, int]]] = field(default_factory=list)  # (ready at, replicas)
    replicas: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        types = len(self.slots_per_replica)
        self.starting = [deque() for _ in range(types)]
        self.replicas = [0] * types

    @property
    def mix(self) -> Mix:
        return tuple(self.replicas)

    @property
    def total(self) -> int:
        return sum(self.replicas)

    def ready(self, now: float) -> int:
        waiting = 0
        for starting in self.starting:
            while starting and starting[0][0] <= now:
                starting.popleft()
            waiting += sum(n for _, n in starting)
        return self.total - waiting

    def scale(self, desired: Mix, now: float, startup_s: float) -> None:
        for kind, want in enumerate(desired):
            self._scale_type(kind, want, now, startup_s)

    def _scale_type(self, kind: int, desired: int, now: float, startup_s: float) -> None:
        slots, have = self.slots_per_replica[kind], self.replicas[kind]
        if desired > have:
            added = desired - have
            for _ in range(added * slots):
                heapq.heappush(self.free_at, (now + startup_s, kind))
            if startup_s > 0:
                self.starting[kind].append((now + startup_s, added))
        elif desired < have:
            # Starting replicas go first, then the busiest slots (they drain, then leave).
            removed = have - desired
            mine = [entry for entry in self.free_at if entry[1] == kind]
            keep = heapq.nsmallest(len(mine) - removed * slots, mine)
            if len(mine) < len(self.free_at):
                keep += [entry for entry in self.free_at if entry[1] != kind]
            heapq.heapify(keep)
            self.free_at = keep
            starting = self.starting[kind]
            while removed and starting:
                at, n = starting.pop()
                take = min(n, removed)
                removed -= take
                if n > take:
                    starting.append((at, n - take))
        self.replicas[kind] = desired


Controller = Callable[[float, Observed, Cluster], Mix]


@dataclass(frozen=True)
class MixPlanner:
    """The joint solve of one model in one region, by exact enumeration: the cheapest counts of
    each allowed GPU type whose pools carry the rate within the SLO, the total within bounds.

    Each type is a pool of its own, as in the solver: `capacity[t][n]` is what n replicas of
    type t carry (the placement package's `ReplicaModel.capacity`), and the rate is split over
    the pools, the cheaper per request first. The price of a mix is the solver's objective for
    the region: `replica_cost` per replica and `request_cost` per req/s of each type
    (`candidates`' normalised carbon and dollars). Ties go to fewer replicas. When no mix within
    the bounds carries the rate, the one that carries the most (the solve leaves as little
    unserved as it can). One or two types."""

    gpu_types: tuple[str, ...]
    capacity: tuple[Floats, ...]  # per type, index n = replicas (0..limit)
    replica_cost: Floats  # per type
    request_cost: Floats  # per type
    gpus_per_replica: tuple[int, ...]
    carbon_per_replica_h: Floats  # gCO2 per replica-hour (idle draw), per type
    carbon_per_request: Floats  # gCO2 per request served (dynamic energy), per type
    usd_per_replica_h: Floats
    usd_per_request: Floats

    @property
    def limit(self) -> int:
        return int(self.capacity[0].size - 1)

    def carries(self, mix: Mix) -> float:
        """Req/s the mix carries within the SLO: the sum of its pools' capacities."""
        return float(sum(self.capacity[t][n] for t, n in enumerate(mix)))

    def cost(self, mix: Mix, rps: float) -> float:
        """The objective of running `mix` and serving up to `rps` on it."""
        return float(self._costs(np.array([mix]), rps)[0])

    def _costs(self, mixes: NDArray[np.int64], rps: float) -> Floats:
        out = mixes @ self.replica_cost
        left = np.full(mixes.shape[0], max(rps, 0.0))
        for t in np.argsort(self.request_cost, kind="stable"):
            routed = np.minimum(left, self.capacity[t][mixes[:, t]])
            out = out + routed * self.request_cost[t]
            left = left - routed
        return out

    def choose(self, rps: float, low: int, high: int, current: Mix | None = None) -> Mix:
        """The cheapest mix carrying `rps` whose total is within [low, high] (high >= low);
        what runs now (`current`) does not matter to the enumeration."""
        high = min(high, self.limit)
        low = min(low, high)
        if len(self.gpu_types) == 1:  # the fewest replicas (`capacity_size`), within the bounds
            need = 0 if rps <= 0 else int(np.searchsorted(self.capacity[0], rps))
            return (max(low, min(high, need)),)
        first, second = self.capacity
        a = np.arange(high + 1)
        # the fewest of the second type that, beside `a` of the first, carry the rate
        gap = np.maximum(rps - first[a], 0.0)
        b = np.where(gap > 0, np.searchsorted(second, gap), 0)
        b = np.maximum(b, low - a)
        fits = (a + b <= high) & (first[a] + second[np.minimum(b, self.limit)] >= rps)
        if not fits.any():  # nothing carries it: the most capacity within `high`
            b = high - a
            carried = first[a] + second[b]
            best = int(np.flatnonzero(carried >= carried.max() - 1e-9)[0])
            return (int(a[best]), int(b[best]))
        mixes = np.stack([a[fits], b[fits]], axis=1)
        cost = self._costs(mixes, rps)
        cheapest = np.flatnonzero(cost <= cost.min() * (1 + 1e-9) + 1e-12)
        best = cheapest[np.argmin(mixes[cheapest].sum(axis=1))]
        return (int(mixes[best, 0]), int(mixes[best, 1]))


@dataclass(frozen=True)
class SolvePlanner(MixPlanner):
    """The placement solver itself (`gridplace_placement.solver.solve`) on a one-region problem:
    the model with the decision's bounds as min/max replicas, the rate as the demand of one
    user zone next to the region, and what runs now as the current assignment, so its churn
    penalty and its hysteresis act as in the operator. Answers are kept by their inputs."""

    model: PlacementModel | None = None
    answers: dict[tuple[float, int, int, Mix | None], Mix] = field(default_factory=dict)

    def choose(self, rps: float, low: int, high: int, current: Mix | None = None) -> Mix:
        key = (round(max(rps, 0.0), 6), low, high, current)
        if key not in self.answers:
            self.answers[key] = self._solve(*key)
        return self.answers[key]

    def _solve(self, rps: float, low: int, high: int, current: Mix | None) -> Mix:
        assert self.model is not None
        high = min(high, self.limit)
        types = self.gpu_types
        model = {
            **self.model.model_dump(by_alias=True),
            "minReplicas": min(low, high),
            "maxReplicas": high,
            "demand": {"local": rps} if rps > 0 else {},
        }
        problem = Problem.model_validate(
            {
                "models": [model],
                "regions": [{**REGION, "gpus": dict.fromkeys(types, 8 * self.limit)}],
                "rttMs": {"local": {REGION["name"]: 0.0}},
                "current": [
                    {"model": model["name"], "region": REGION["name"], "gpuType": g, "replicas": n}
                    for g, n in zip(types, current or (), strict=False)
                    if n > 0
                ],
            }
        )
        plan = solve(problem)
        counts = dict.fromkeys(types, 0)
        for pool in plan.pools:
            counts[pool.gpu_type] += pool.replicas
        return tuple(counts[g] for g in types)


def mix_planner(model: PlacementModel, limit: int, planner: str = "enumerate") -> MixPlanner:
    """The planner for the model's GPU types in `REGION`, capacities computed once:
    `enumerate` (`MixPlanner`) or `solve` (`SolvePlanner`)."""
    types = model.gpu_types
    capacity = []
    for gpu in types:
        replica = model.replica_model(gpu)
        caps = np.array([0.0] + [replica.capacity(n) for n in range(1, limit + 1)])
        for rps in (0.5, caps[len(caps) // 2]):  # the table is the autoscaler's capacity model
            assert int(np.searchsorted(caps, rps)) == capacity_size(model, rps, gpu, limit).replicas
        capacity.append(caps)
    solve_input = candidates(
        Problem.model_validate(
            {
                "models": [{**model.model_dump(by_alias=True), "demand": {"local": 1.0}}],
                "regions": [{**REGION, "gpus": dict.fromkeys(types, 8 * limit)}],
                "rttMs": {"local": {REGION["name"]: 0.0}},
            }
        )
    )
    pools = solve_input.pools
    pool_gpu = [solve_input.gpu_types[g] for g in pools.gpu]
    unusable = [gpu for gpu in types if gpu not in pool_gpu]
    if unusable:
        raise ValueError(f"{unusable}: no replica carries any traffic within the SLO")
    order = [pool_gpu.index(gpu) for gpu in types]
    per_hour = 3600.0  # the coefficients are per req/s for an hour: per request, divide
    kind: type[MixPlanner] = MixPlanner
    extra: dict[str, Any] = {}
    if planner == "solve":
        kind, extra = SolvePlanner, {"model": model}
    return kind(
        **extra,
        gpu_types=types,
        capacity=tuple(capacity),
        replica_cost=pools.cost_per_replica[order],
        request_cost=pools.cost_per_request[order],
        gpus_per_replica=tuple(int(pools.gpus_per_replica[i]) for i in order),
        carbon_per_replica_h=pools.carbon_per_replica[order],
        carbon_per_request=pools.carbon_per_request[order] / per_hour,
        usd_per_replica_h=pools.usd_per_replica[order],
        usd_per_request=pools.usd_per_request[order] / per_hour,
    )


def gridplace_controller(planner: MixPlanner, setup: Setup) -> Controller:
    policy = ScalingPolicy(
        setup.min_replicas, setup.max_replicas, setup.up_window_s, setup.down_window_s,
        setup.max_step, setup.tolerance, setup.window_s,
    )  # fmt: skip
    state = {"history": History()}

    def control(now: float, seen: Observed, cluster: Cluster) -> Mix:
        inputs = Inputs(
            now_s=now,
            target_p95_s=setup.slo_s,
            current=cluster.total,
            ready=cluster.ready(now),
            metrics_available=True,
            observed_p95_s=seen.p95_s,
            observed_rps=seen.rps,
            arrival_rps=seen.arrival_rps,
            demand_rps=seen.rps,
        )
        decision = decide(inputs, policy, state["history"])
        state["history"] = decision.history
        low, high = decision.min_total, decision.max_total
        if decision.rate_rps is None:  # no demand estimate: the running mix, within the bounds
            if low <= cluster.total <= high:
                return cluster.mix
            return planner.choose(planner.carries(cluster.mix), low, high, cluster.mix)
        # The joint solve of one model in one region: the cheapest mix for the rate.
        return planner.choose(decision.rate_rps, low, high, cluster.mix)

    return control


def hpa_controller(setup: Setup, types: int = 1) -> Controller:
    """The HPA-like baseline on one Deployment: replicas of the first GPU type only."""
    target = setup.hpa_target_fraction * setup.slo_s
    recommendations: deque[tuple[float, int]] = deque()

    def control(now: float, seen: Observed, cluster: Cluster) -> Mix:
        return (count(now, seen, cluster.replicas[0]),) + (0,) * (types - 1)

    def count(now: float, seen: Observed, current: int) -> int:
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
    replicas: list[tuple[float, Mix]]  # (time, desired per GPU type) at every control step
    served: list[int] = field(default_factory=list)  # requests started per GPU type

    @property
    def totals(self) -> list[int]:
        return [sum(mix) for _, mix in self.replicas]


def simulate(
    arrive: Callable[[float, float, np.random.Generator], Arrivals],
    duration_s: float,
    model: PlacementModel,
    setup: Setup,
    controller: Controller | None,
    oracle: Callable[[float], Mix] | None = None,
    start: Mix = (1,),
) -> Run:
    """Request-by-request FIFO M/G/c with a controller every `control_s` (or an oracle). A request
    starts when a slot is free; until then it waits in the one queue, so new replicas take it.
    The slot's GPU type sets the request's prefill and decode times."""
    rng = np.random.default_rng(setup.seed)
    types = model.gpu_types
    profiles = [model.profiles[gpu] for gpu in types]
    slots = tuple(model.replica_model(gpu).slots for gpu in types)
    step_s = [
        p.decode_base_seconds + p.decode_per_sequence_seconds * n
        for p, n in zip(profiles, slots, strict=True)
    ]
    prefill_s = [p.prefill_seconds_per_token for p in profiles]
    cluster = Cluster(slots)
    cluster.scale(start, 0.0, 0.0)
    served = [0] * len(types)
    waiting_at: deque[float] = deque()
    waiting_size: deque[tuple[int, int]] = deque()  # (prompt, output tokens)
    chunks: deque[tuple[Floats, Floats]] = deque()  # per interval: (first token time, ttft)
    queue: deque[tuple[float, int]] = deque([(0.0, 0)])  # (time, requests waiting)
    arrivals: list[Floats] = []
    ttfts: list[float] = []
    replicas: list[tuple[float, Mix]] = []
    now = 0.0
    while now < duration_s:
        if oracle is not None:
            cluster.scale(oracle(now), now, 0.0)
        elif now > 0:
            assert controller is not None
            seen = observe(chunks, queue, now, setup.window_s)
            cluster.scale(controller(now, seen, cluster), now, setup.startup_s)
        replicas.append((now, cluster.mix))
        end = now + setup.control_s
        new = arrive(now, end, rng)
        arrivals.append(new.at)
        waiting_at.extend(new.at.tolist())
        waiting_size.extend(zip(new.prompts.tolist(), new.outputs.tolist(), strict=True))
        heap = cluster.free_at
        first: list[float] = []
        started: list[float] = []
        while waiting_at and heap:
            free, kind = heap[0]
            begin = max(waiting_at[0], free)
            if begin >= end:
                break
            a = waiting_at.popleft()
            prompt, output = waiting_size.popleft()
            pf = prompt * prefill_s[kind]
            heapq.heapreplace(heap, (begin + (pf + output * step_s[kind]), kind))
            served[kind] += 1
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
    return Run(np.concatenate(arrivals), ttft, replicas, served)


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


def summarize(
    run: Run, duration_s: float, setup: Setup, control_s: float, planner: MixPlanner
) -> dict[str, Any]:
    """Per policy: SLO minutes, replica- and GPU-hours (in total and per GPU type), the
    region's carbon and energy cost as the solver prices them, and direction changes of the
    total."""
    p95 = per_minute_p95(run, duration_s)
    measured = p95[~np.isnan(p95)]
    violating = int((measured > setup.slo_s).sum())
    counts = run.totals
    hours = np.array([mix for _, mix in run.replicas], dtype=np.float64).sum(axis=0) * (
        control_s / 3600
    )
    served = np.array(run.served, dtype=np.float64)
    carbon = hours @ planner.carbon_per_replica_h + served @ planner.carbon_per_request
    usd = hours @ planner.usd_per_replica_h + served @ planner.usd_per_request
    return {
        "minutes": int(measured.size),
        "violating_minutes": violating,
        "violating_minutes_fraction": round(violating / max(1, measured.size), 4),
        "overall_p95_ttft_s": round(float(np.percentile(run.ttft, 95)), 3),
        "replica_hours": round(sum(counts) * control_s / 3600, 2),
        "gpu_hours": round(float(hours @ np.array(planner.gpus_per_replica)), 2),
        "carbon_kg": round(float(carbon) / 1000, 3),
        "energy_usd": round(float(usd), 3),
        "by_gpu_type": {
            gpu: {
                "replica_hours": round(float(hours[t]), 2),
                "requests_served": int(served[t]),
                "max_replicas": max(mix[t] for _, mix in run.replicas),
            }
            for t, gpu in enumerate(planner.gpu_types)
        },
        "direction_changes": direction_changes(counts),
        "direction_changes_per_hour": round(direction_changes(counts) / (duration_s / 3600), 3),
        "max_replicas": max(counts),
        "requests": int(run.arrivals.size),
    }


def reaction(
    run: Run, step_at: float, needed: float, slo_s: float, duration_s: float, planner: MixPlanner
) -> dict[str, Any]:
    """`needed`: the capacity (req/s) of the oracle's mix for the new rate."""
    reached = next(
        (t for t, mix in run.replicas if t >= step_at and planner.carries(mix) >= needed), None
    )
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
        mid.step(t, run.totals, where="post", label=name)
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


def bench_model(
    setup: Setup,
    sizes: tuple[NDArray[np.int64], NDArray[np.int64]],
    gpu_types: Sequence[str] = (GPU,),
) -> PlacementModel:
    """The shipped profiles of the benchmark's model on `gpu_types`, at the setup's SLO and the
    mean sizes."""
    shipped = {p["gpuType"]: p for p in catalogue()[PROFILE_MODEL] if p["gpusPerReplica"] == 1}
    missing = [gpu for gpu in gpu_types if gpu not in shipped]
    if missing:
        raise ValueError(f"no shipped profile of {PROFILE_MODEL} on {missing}: {sorted(shipped)}")
    return PlacementModel.model_validate(
        {
            "name": "bench", "gpuTypes": list(gpu_types),
            "profiles": {gpu: shipped[gpu] for gpu in gpu_types},
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
    planner: MixPlanner,
) -> tuple[dict[str, Run], dict[str, dict[str, Any]]]:
    """gridplace, the HPA-like baseline and the hindsight oracle on the same arrivals (the same
    seed: a replayed trace is the same requests for all three)."""
    types = len(planner.gpu_types)

    def oracle(t: float) -> Mix:
        minute = math.floor(t / 60) * 60
        load = float(np.mean([rate_at(minute + s) for s in range(0, 60, 15)]))
        return planner.choose(load, setup.min_replicas, setup.max_replicas)

    first = oracle(0.0)  # every policy starts warm, with the oracle's mix for the first minute
    controllers = {
        "gridplace": gridplace_controller(planner, setup),
        "hpa-like": hpa_controller(setup, types),
    }
    starts = {"gridplace": first, "hpa-like": (sum(first),) + (0,) * (types - 1)}
    runs = {
        name: simulate(arrive, duration_s, model, setup, c, start=starts[name])
        for name, c in controllers.items()
    }
    runs["oracle"] = simulate(arrive, duration_s, model, setup, None, oracle)
    results = {
        name: summarize(run, duration_s, setup, setup.control_s, planner)
        for name, run in runs.items()
    }
    base = results["oracle"]
    for summary in results.values():
        for key, name in (
            ("replica_hours", "overprovisioning_vs_oracle"),
            ("gpu_hours", "gpu_hours_vs_oracle"),
            ("carbon_kg", "carbon_vs_oracle"),
            ("energy_usd", "energy_usd_vs_oracle"),
        ):
            summary[name] = round(summary[key] / base[key] - 1, 4) if base[key] else None
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
    parser.add_argument(
        "--gpu-types",
        type=lambda text: tuple(t.strip() for t in text.split(",") if t.strip()),
        default=GPU_TYPES,
        help="one or two GPU types, comma-separated; the first is the HPA-like baseline's"
        f" (default: {','.join(GPU_TYPES)})",
    )
    parser.add_argument(
        "--planner",
        choices=("solve", "enumerate"),
        default="solve",
        help="the joint solve's stand-in: the placement solver on a one-region problem, or an"
        " exact enumeration of the mixes (one GPU type: the autoscaler's fewest replicas)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "img" / "autoscale.png")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not 1 <= len(args.gpu_types) <= 2 or len(set(args.gpu_types)) != len(args.gpu_types):
        parser.error(f"--gpu-types: one or two distinct types, got {args.gpu_types}")
    return args


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
    model = bench_model(setup, sizes, args.gpu_types)
    times, rates = read_shape(args.load, args.category or None)
    scale = float(args.peak_rps / rates.max())
    duration = min(args.hours * 3600, float(times[-1]) + 600)

    def rate_at(t: float) -> float:
        return float(np.interp(t, times, rates)) * scale

    planner = mix_planner(model, setup.max_replicas, args.planner)
    started = time.perf_counter()
    runs, results = compare(poisson(rate_at, sizes), rate_at, duration, model, setup, planner)
    # A step: 30% of the peak for 20 minutes, then 80%.
    peak: float = args.peak_rps
    low, high, step_at, step_len = 0.3 * peak, 0.8 * peak, 1200.0, 3600.0

    def step_rate(t: float) -> float:
        return low if t < step_at else high

    types = len(args.gpu_types)
    before = planner.choose(low, setup.min_replicas, setup.max_replicas)
    needed = planner.carries(planner.choose(high, setup.min_replicas, setup.max_replicas))
    fresh = {
        "gridplace": (gridplace_controller(planner, setup), before),
        "hpa-like": (hpa_controller(setup, types), (sum(before),) + (0,) * (types - 1)),
    }
    for name, (controller, start) in fresh.items():
        run = simulate(poisson(step_rate, sizes), step_len, model, setup, controller, start=start)
        results[name]["step"] = reaction(run, step_at, needed, setup.slo_s, step_len, planner)
    replayed: dict[str, Any] | None = None
    if args.replay is not None:
        trace = overlay(
            read_arrivals(args.replay), args.replay_copies, args.replay_speed, setup.seed
        )
        span = float(trace.at[-1])
        # sized for the trace's requests
        own = bench_model(setup, (trace.prompts, trace.outputs), args.gpu_types)
        plans = mix_planner(own, setup.max_replicas, args.planner)
        _, replayed = compare(replay(trace), trace.rate_at, span, own, setup, plans)
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
            "profile": PROFILE_MODEL,
            "gpu_types": list(args.gpu_types),
            "planner": args.planner,
            "hpa_like_gpu_type": args.gpu_types[0],
            "slots_per_replica": {g: model.replica_model(g).slots for g in args.gpu_types},
            "replica_capacity_rps": {
                g: round(float(planner.capacity[t][1]), 3) for t, g in enumerate(args.gpu_types)
            },
            "cost_region": REGION,
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
