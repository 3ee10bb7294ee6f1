"""Derive the shipped performance profiles from public measurements.

Reads ml-energy's vLLM benchmark (time per output token and power by model, GPU, tensor-parallel
size and batch) and the mlco2 GPU TDP table, and writes
`placement/src/gridplace_placement/data/profiles.json`.

    uv run python placement/tools/derive_profiles.py [DATA_DIR]

DATA_DIR defaults to the public data shipped in the repository (examples/scenarios/data).

Per (model, GPU, tensor-parallel size) with at least two batch sizes:
- decode time per token `a + b*batch`: least-squares fit of `avg_tpot_s` on `avg_batch`;
- `max_batch`: the largest batch measured;
- active power of the replica: mean of `implied_avg_power_W` over the measured batches;
- idle power: IDLE_FRACTION_OF_TDP x TDP per GPU x GPUs (an assumption, see below);
- prefill time per prompt token: `b`, the marginal decode cost of one more sequence in a batch.
  Prefill is compute-bound and processes a prompt's tokens together at least this efficiently,
  so this is an upper (conservative) estimate; measured vLLM prefill is often several times faster.

NVIDIA L40S is not in the measurements. Its profile is scaled from A100-SXM4-40GB by the
memory-bandwidth ratio of the spec sheets (1555 GB/s / 864 GB/s; LLM decode is memory bound),
and its power by the TDP ratio (350 W / 400 W). The profile says so in `derivation`.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

OUT = Path(__file__).parents[1] / "src" / "gridplace_placement" / "data" / "profiles.json"
# The repository's public data (gridplace_e2e.public_data.PUBLIC_DATA; the placement package
# does not import the test environment, so the path is spelled here too).
PUBLIC_DATA = Path(__file__).resolve().parents[2] / "examples" / "scenarios" / "data"

# GPU product names as the NVIDIA device plugin labels them (nvidia.com/gpu.product).
GPU_LABEL = {
    "NVIDIA A100-SXM4-40GB": "NVIDIA-A100-SXM4-40GB",
    "NVIDIA H100 80GB HBM3": "NVIDIA-H100-80GB-HBM3",
}
# TDP rows of mlco2_gpus_tdp.csv that describe the measured GPUs.
TDP_ROW = {
    "NVIDIA-A100-SXM4-40GB": "A100 SXM4 80 GB",  # the SXM4 A100s share a 400 W TDP
    "NVIDIA-H100-80GB-HBM3": "H100 SXM",
    "NVIDIA-L40S": "L40S",
}
# Typical idle draw of a data-centre GPU with a model loaded, as a share of TDP (assumption;
# nvidia-smi readings of idle H100 SXM / A100 SXM boards are roughly 60-120 W).
IDLE_FRACTION_OF_TDP = 0.15
L40S_FROM = "NVIDIA-A100-SXM4-40GB"
L40S_BANDWIDTH_RATIO = 1555.0 / 864.0  # A100-SXM4-40GB / L40S memory bandwidth, GB/s


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - slope * mx, slope


def tdp_watts(public: Path) -> dict[str, float]:
    with (public / "mlco2_gpus_tdp.csv").open() as f:
        rows = {r["name"]: float(r["tdp_watts"]) for r in csv.DictReader(f)}
    return {label: rows[name] for label, name in TDP_ROW.items()}


def derive(public: Path) -> dict[str, Any]:
    tdp = tdp_watts(public)
    groups: dict[tuple[str, str, int], list[dict[str, str]]] = defaultdict(list)
    with (public / "mlenergy_v2_llm_2024-09.csv").open() as f:
        for row in csv.DictReader(f):
            groups[(row["model"], GPU_LABEL[row["gpu"]], int(row["tp"]))].append(row)

    profiles: list[dict[str, Any]] = []
    skipped: list[str] = []
    for (model, gpu, tp), rows in sorted(groups.items()):
        batches = [float(r["avg_batch"]) for r in rows]
        if len(set(batches)) < 2:
            skipped.append(f"{model} on {gpu} x{tp}: one batch size, no slope")
            continue
        a, b = fit_line(batches, [float(r["avg_tpot_s"]) for r in rows])
        if a <= 0 or b < 0:
            skipped.append(f"{model} on {gpu} x{tp}: fit a={a:.4f} b={b:.6f} not physical")
            continue
        max_batch = max(int(r["max_batch"]) for r in rows)
        active = sum(float(r["implied_avg_power_W"]) for r in rows) / len(rows)
        idle = IDLE_FRACTION_OF_TDP * tdp[gpu] * tp
        profiles.append(
            {
                "model": model,
                "gpuType": gpu,
                "gpusPerReplica": tp,
                "decodeBaseSeconds": round(a, 6),
                "decodePerSequenceSeconds": round(b, 8),
                "maxBatch": max_batch,
                "prefillSecondsPerToken": round(b, 8),
                "activePowerWatts": round(max(active, idle), 1),
                "idlePowerWatts": round(idle, 1),
                "derivation": f"fit on {len(rows)} ml-energy measurements",
            }
        )
    for p in [p for p in profiles if p["gpuType"] == L40S_FROM]:
        power_ratio = tdp["NVIDIA-L40S"] / tdp[L40S_FROM]
        profiles.append(
            {
                **p,
                "gpuType": "NVIDIA-L40S",
                "decodeBaseSeconds": round(float(p["decodeBaseSeconds"]) * L40S_BANDWIDTH_RATIO, 6),
                "decodePerSequenceSeconds": round(
                    float(p["decodePerSequenceSeconds"]) * L40S_BANDWIDTH_RATIO, 8
                ),
                "prefillSecondsPerToken": round(
                    float(p["prefillSecondsPerToken"]) * L40S_BANDWIDTH_RATIO, 8
                ),
                "activePowerWatts": round(float(p["activePowerWatts"]) * power_ratio, 1),
                "idlePowerWatts": round(
                    IDLE_FRACTION_OF_TDP * tdp["NVIDIA-L40S"] * p["gpusPerReplica"], 1
                ),
                "derivation": (
                    f"scaled from {L40S_FROM} by memory bandwidth 1555/864 GB/s and TDP 350/400 W;"
                    " not measured"
                ),
            }
        )
    return {
        "sources": [
            "ml-energy/benchmark v2 LLM results, 2024-09 (Apache-2.0)",
            "mlco2/impact GPU TDP table (MIT)",
        ],
        "idleFractionOfTdp": IDLE_FRACTION_OF_TDP,
        "skipped": skipped,
        "profiles": profiles,
    }


def main() -> None:
    public = Path(sys.argv[1]) if len(sys.argv) > 1 else PUBLIC_DATA
    OUT.write_text(json.dumps(derive(public), indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
