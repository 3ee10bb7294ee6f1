"""Seeded random-but-realistic placement problems for benchmarks and tests.

Regions sit in three continental clusters on a world map; user zones sit next to a random
region; RTT grows with great-circle distance (fibre at ~100 km per ms of round trip, x1.5 path
inflation, +2 ms). Models come from the shipped catalogue with their measured profiles, accept
an H100 or an A100 and up to two more GPU types, serve 2-8 zones with log-normal demand, and a
fifth of them ask for two regions.
GPUs are provisioned at about three times the fleet's need, unevenly. Carbon intensity (20-800
gCO2/kWh), prices (20-200 USD/MWh) and PUE (1.1-1.5) span the ranges of real grids.
The fourth GPU type, when asked for, is synthetic ("SYNTH-GPU") with the A100 profile slowed by
30%; the other types use catalogue profiles (L40S itself is scaled from A100, see data/NOTICE).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gridplace_placement.problem import Assignment, Problem
from gridplace_placement.profiles import catalogue

GPU_TYPES = ("NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-40GB", "NVIDIA-L40S", "SYNTH-GPU")
CONTINENTS = ((40.0, -95.0), (50.0, 10.0), (15.0, 115.0))  # North America, Europe, Asia


def random_problem(
    models: int,
    regions: int,
    *,
    gpu_types: int = 4,
    zones: int = 50,
    seed: int = 0,
    churn: bool = True,
) -> Problem:
    """A feasible-looking problem of the given size; same arguments, same problem."""
    rng = np.random.default_rng(seed)
    types = GPU_TYPES[: max(1, min(gpu_types, len(GPU_TYPES)))]
    region_xy = _places(rng, regions)
    region_names = [f"region-{i:03d}" for i in range(regions)]
    near = rng.integers(0, regions, size=zones)
    zone_xy = region_xy[near] + rng.normal(0.0, 2.0, size=(zones, 2))
    zone_names = [f"zone-{i:02d}" for i in range(zones)]
    rtt = 2.0 + 1.5 * _distance_km(zone_xy, region_xy) / 100.0

    base = [
        (name, ps)
        for name, ps in sorted(catalogue().items())
        if {p["gpuType"] for p in ps if p["gpusPerReplica"] == 1} >= set(GPU_TYPES[:3])
    ]
    model_specs: list[dict[str, Any]] = []
    need = np.zeros(len(types))
    for i in range(models):
        _, shipped = base[int(rng.integers(len(base)))]
        # Every model runs on an H100 or an A100 and maybe on slower types too.
        extra = rng.choice(
            len(types), size=int(rng.integers(0, min(2, len(types) - 1) + 1)), replace=False
        ).tolist()
        accepted = sorted({int(rng.integers(0, min(2, len(types)))), *extra})
        profiles = _profiles(shipped, [types[a] for a in accepted])
        served = rng.choice(zones, size=int(rng.integers(2, min(8, zones) + 1)), replace=False)
        total = float(rng.lognormal(math.log(15.0), 0.8))
        split = rng.dirichlet(np.ones(served.size))
        spec: dict[str, Any] = {
            "name": f"model-{i:04d}",
            "gpuTypes": [types[a] for a in accepted],
            "profiles": profiles,
            "sloP95TtftSeconds": float(rng.choice([1.0, 1.5, 2.0])),
            "tpotTargetSeconds": 0.1,
            "promptTokens": float(rng.integers(200, 1500)),
            "outputTokens": float(rng.integers(100, 400)),
            "weights": {
                "latency": float(rng.uniform(0.2, 1.0)),
                "carbon": float(rng.uniform(0.5, 2.0)),
                "cost": float(rng.uniform(0.5, 2.0)),
            },
            "demand": {
                zone_names[z]: round(total * s, 3) for z, s in zip(served, split, strict=True)
            },
        }
        if rng.random() < 0.2:
            spec["availability"] = {"minRegions": 2}
        model_specs.append(spec)
        for a in accepted:
            need[a] += total / 3.0 / len(accepted)  # ~3 req/s per GPU, shared by its types

    weights = rng.uniform(0.3, 1.7, size=(regions, len(types)))
    gpu_counts = np.ceil(3.0 * need[None, :] * weights / weights.sum(axis=0)[None, :]) + 2
    region_specs = [
        {
            "name": region_names[r],
            "pue": round(float(rng.uniform(1.1, 1.5)), 2),
            "carbonIntensity": round(float(rng.uniform(20, 800)), 1),
            "powerPriceUsdPerMwh": round(float(rng.uniform(20, 200)), 1),
            "gpus": {types[g]: int(gpu_counts[r, g]) for g in range(len(types))},
            "gpuHourPriceUsd": {
                types[g]: round(float(rng.uniform(0.5, 3.0)), 2) for g in range(len(types))
            },
        }
        for r in range(regions)
    ]
    data: dict[str, Any] = {
        "models": model_specs,
        "regions": region_specs,
        "rttMs": {
            zone_names[u]: {region_names[r]: round(float(rtt[u, r]), 1) for r in range(regions)}
            for u in range(zones)
        },
    }
    if churn:
        current = []
        for spec in model_specs[: max(1, models // 3)]:
            current.append(
                {
                    "model": spec["name"],
                    "region": region_names[int(rng.integers(regions))],
                    "gpuType": spec["gpuTypes"][0],
                    "replicas": int(rng.integers(1, 4)),
                }
            )
        data["current"] = current
        data["churnBudget"] = max(1, sum(c["replicas"] for c in current) // 10)
    return Problem.model_validate(data)


def with_running(problem: Problem, running: int) -> Problem:
    """`problem` with its first `running` models running where a solve of it, with nothing
    running, places them; the others are new. A re-plan's starting point."""
    from gridplace_placement.solver import solve  # noqa: PLC0415 - the solver builds on problems

    fresh = problem.model_copy(update={"current": ()})
    names = {m.name for m in fresh.models[:running]}
    current = tuple(
        Assignment(model=m, region=r, gpu_type=g, replicas=n)
        for (m, r, g), n in solve(fresh).replicas().items()
        if m in names
    )
    return fresh.model_copy(update={"current": current})


def _profiles(shipped: list[dict[str, Any]], wanted: list[str]) -> dict[str, dict[str, Any]]:
    single = {p["gpuType"]: p for p in shipped if p["gpusPerReplica"] == 1}
    out: dict[str, dict[str, Any]] = {}
    for gpu in wanted:
        if gpu == "SYNTH-GPU":
            a100 = single["NVIDIA-A100-SXM4-40GB"]
            out[gpu] = {
                **a100,
                "gpuType": gpu,
                "decodeBaseSeconds": a100["decodeBaseSeconds"] * 1.3,
                "decodePerSequenceSeconds": a100["decodePerSequenceSeconds"] * 1.3,
                "prefillSecondsPerToken": a100["prefillSecondsPerToken"] * 1.3,
                "derivation": "synthetic benchmark GPU: A100 profile slowed by 30%",
            }
        else:
            out[gpu] = single[gpu]
    return out


def _places(rng: np.random.Generator, count: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    centres = np.array(CONTINENTS)[rng.integers(0, len(CONTINENTS), size=count)]
    return centres + rng.normal(0.0, [8.0, 15.0], size=(count, 2))


def _distance_km(
    a: np.ndarray[Any, np.dtype[np.float64]], b: np.ndarray[Any, np.dtype[np.float64]]
) -> np.ndarray[Any, np.dtype[np.float64]]:
    lat1, lon1 = np.radians(a[:, 0])[:, None], np.radians(a[:, 1])[:, None]
    lat2, lon2 = np.radians(b[:, 0])[None, :], np.radians(b[:, 1])[None, :]
    h = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return np.asarray(2 * 6371.0 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))), dtype=np.float64)
