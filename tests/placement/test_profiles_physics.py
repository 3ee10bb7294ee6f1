"""The shipped profiles against measurements and physics, not against a model built from them.

- Decode: each profile's step time a + b x batch reproduces ml-energy's measured time per output
  token (so decode throughput batch / step) by batch size: median error within 5%, nine rows in
  ten within 15% (the straight line misses small batches of a few models most).
- Prefill: compute-bound, so a replica's prompt tokens per second can never exceed what its GPUs'
  dense BF16 peak allows at 2 x parameters FLOPs per token; the shipped figure assumes half of
  that peak (derive_profiles.PREFILL_MFU).
"""

from __future__ import annotations

import csv
import importlib.util
import math
import statistics
from pathlib import Path
from types import ModuleType

import pytest

from gridplace_e2e.public_data import PUBLIC_DATA
from gridplace_placement.options import SolveOptions
from gridplace_placement.problem import Problem
from gridplace_placement.profiles import catalogue
from gridplace_placement.solver import solve

ROOT = Path(__file__).resolve().parents[2]
MEASURED = PUBLIC_DATA / "mlenergy_v2_llm_2024-09.csv"
GPU = {
    "NVIDIA A100-SXM4-40GB": "NVIDIA-A100-SXM4-40GB",
    "NVIDIA H100 80GB HBM3": "NVIDIA-H100-80GB-HBM3",
}


def derivation() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "derive_profiles", ROOT / "placement" / "tools" / "derive_profiles.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shipped() -> dict[tuple[str, str, int], dict[str, float]]:
    return {
        (model, p["gpuType"], p["gpusPerReplica"]): p
        for model, profiles in catalogue().items()
        for p in profiles
    }


def test_decode_throughput_by_batch_size_reproduces_the_measurements() -> None:
    profiles = shipped()
    errors = []
    with MEASURED.open() as f:
        for row in csv.DictReader(f):
            p = profiles.get((row["model"], GPU[row["gpu"]], int(row["tp"])))
            if p is None:  # a configuration with one batch size has no profile
                continue
            batch = float(row["avg_batch"])
            predicted = batch / (p["decodeBaseSeconds"] + p["decodePerSequenceSeconds"] * batch)
            measured = batch / float(row["avg_tpot_s"])
            errors.append(abs(predicted - measured) / measured)
    assert len(errors) > 300
    assert statistics.median(errors) <= 0.05
    assert sorted(errors)[int(0.9 * len(errors))] <= 0.15


def test_no_profile_prefills_faster_than_its_gpus_compute() -> None:
    derive = derivation()
    for (model, gpu, gpus), p in shipped().items():
        flops_per_token = 2.0 * derive.ACTIVE_PARAMETERS_B[model] * 1e9
        peak = derive.PEAK_BF16_TFLOPS[gpu] * 1e12 * gpus
        tokens_per_second = 1.0 / p["prefillSecondsPerToken"]
        assert tokens_per_second * flops_per_token <= peak, (model, gpu)
        assert tokens_per_second * flops_per_token == pytest.approx(
            derive.PREFILL_MFU * peak, rel=1e-3
        )


def test_the_profiles_file_is_what_the_derivation_writes() -> None:
    derive = derivation()
    fresh = derive.derive(PUBLIC_DATA)
    assert {(p["model"], p["gpuType"], p["gpusPerReplica"]) for p in fresh["profiles"]} == set(
        shipped()
    )
    by_key = shipped()
    for p in fresh["profiles"]:
        assert (
            by_key[(p["model"], p["gpuType"], p["gpusPerReplica"])]["prefillSecondsPerToken"]
            == (p["prefillSecondsPerToken"])
        )


def test_a_long_prompt_workload_gets_the_replicas_its_prefill_implies() -> None:
    # 45 req/s of 1,500-token prompts for starcoder2-15b on H100s: 67,500 prompt tokens a second.
    problem = Problem.model_validate(
        {
            "models": [
                {
                    "name": "completion",
                    "profile": "bigcode/starcoder2-15b",
                    "gpuTypes": ["NVIDIA-H100-80GB-HBM3"],
                    "sloP95TtftSeconds": 2.0,
                    "promptTokens": 1500,
                    "outputTokens": 100,
                    "demand": {"users": 45.0},
                }
            ],
            "regions": [
                {
                    "name": "r",
                    "gpus": {"NVIDIA-H100-80GB-HBM3": 64},
                    "carbonIntensity": 300,
                    "powerPriceUsdPerMwh": 60,
                }
            ],
            "rttMs": {"users": {"r": 10}},
        }
    )
    plan = solve(problem, SolveOptions())
    assert plan.unserved_rps == pytest.approx(0.0, abs=1e-6)
    prefill = problem.models[0].profiles["NVIDIA-H100-80GB-HBM3"].prefill_seconds_per_token
    compute_bound = math.ceil(45.0 * 1500 * prefill)  # replicas busy with prefill alone
    replicas = sum(p.replicas for p in plan.pools)
    assert replicas >= compute_bound
    # ... and no replica is planned to carry more prompt tokens than its compute allows.
    for pool in plan.pools:
        assert pool.load_rps / pool.replicas * 1500 * prefill < 1.0
