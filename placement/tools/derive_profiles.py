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
- prefill time per prompt token: prefill is bound by compute, about 2 x (active) parameters
  FLOPs per token, so `2 N / (MFU x peak x GPUs)` with N from the model card (ACTIVE_PARAMETERS,
  the active parameters of a mixture of experts), peak the GPU's dense BF16 tensor rate from its
  datasheet (PEAK_BF16_TFLOPS) and MFU = PREFILL_MFU, the share of peak a large prefill batch
  reaches (an assumption, stated in docs/autoscaling.md). A replica therefore never prefills
  faster than its GPUs' compute allows. The decode fit above was measured with prompts in the
  batch, so `b` already carries some prefill cost: the two together are conservative.

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
# Dense BF16 tensor-core peak, TFLOP/s, from NVIDIA's datasheets (without sparsity).
PEAK_BF16_TFLOPS = {
    "NVIDIA-A100-SXM4-40GB": 312.0,
    "NVIDIA-H100-80GB-HBM3": 989.4,
    "NVIDIA-L40S": 362.05,
}
# Share of that peak a prefill of hundreds of tokens reaches (model FLOPs utilisation).
PREFILL_MFU = 0.5
# Parameters active per token, billions, from each model card (a mixture of experts runs 2 of 8
# experts per token: Mixtral 8x7B 12.9 of 46.7, 8x22B 39 of 141).
ACTIVE_PARAMETERS_B = {
    "bigcode/starcoder2-15b": 16.0,
    "bigcode/starcoder2-3b": 3.0,
    "bigcode/starcoder2-7b": 7.2,
    "codellama/CodeLlama-13b-hf": 13.0,
    "codellama/CodeLlama-34b-hf": 33.7,
    "codellama/CodeLlama-70b-hf": 69.0,
    "codellama/CodeLlama-7b-hf": 6.7,
    "facebook/chameleon-30b": 34.0,
    "facebook/chameleon-7b": 7.0,
    "google/codegemma-1.1-2b": 2.5,
    "google/codegemma-7b": 8.5,
    "google/gemma-2-27b-it": 27.2,
    "google/gemma-2-2b-it": 2.6,
    "google/gemma-2-9b-it": 9.2,
    "llava-hf/llama3-llava-next-8b-hf": 8.4,
    "llava-hf/llava-1.5-13b-hf": 13.4,
    "llava-hf/llava-1.5-7b-hf": 7.1,
    "meta-llama/Meta-Llama-3.1-405B-Instruct": 405.0,
    "meta-llama/Meta-Llama-3.1-70B-Instruct": 70.6,
    "meta-llama/Meta-Llama-3.1-8B-Instruct": 8.0,
    "microsoft/Phi-3-medium-4k-instruct": 14.0,
    "microsoft/Phi-3-mini-4k-instruct": 3.8,
    "microsoft/Phi-3-small-8k-instruct": 7.4,
    "microsoft/Phi-3-vision-128k-instruct": 4.2,
    "mistralai/Mistral-7B-Instruct-v0.3": 7.2,
    "mistralai/Mistral-Large-Instruct-2407": 123.0,
    "mistralai/Mistral-Nemo-Instruct-2407": 12.2,
    "mistralai/Mixtral-8x22B-Instruct-v0.1": 39.0,
    "mistralai/Mixtral-8x7B-Instruct-v0.1": 12.9,
}
L40S_FROM = "NVIDIA-A100-SXM4-40GB"
L40S_BANDWIDTH_RATIO = 1555.0 / 864.0  # A100-SXM4-40GB / L40S memory bandwidth, GB/s


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - slope * mx, slope


def prefill_seconds_per_token(model: str, gpu: str, gpus: int) -> float:
    """Compute time of one prompt token on a replica of `gpus` GPUs: 2 x active parameters FLOPs
    at PREFILL_MFU of the GPUs' dense BF16 peak."""
    flops = 2.0 * ACTIVE_PARAMETERS_B[model] * 1e9
    return flops / (PREFILL_MFU * PEAK_BF16_TFLOPS[gpu] * 1e12 * gpus)


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
                "prefillSecondsPerToken": round(prefill_seconds_per_token(model, gpu, tp), 10),
                "activePowerWatts": round(max(active, idle), 1),
                "idlePowerWatts": round(idle, 1),
                "derivation": (
                    f"decode fit on {len(rows)} ml-energy measurements; prefill at"
                    f" {PREFILL_MFU:.0%} of {tp} x {PEAK_BF16_TFLOPS[gpu]} TFLOP/s BF16"
                ),
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
                    prefill_seconds_per_token(p["model"], "NVIDIA-L40S", p["gpusPerReplica"]), 10
                ),
                "activePowerWatts": round(float(p["activePowerWatts"]) * power_ratio, 1),
                "idlePowerWatts": round(
                    IDLE_FRACTION_OF_TDP * tdp["NVIDIA-L40S"] * p["gpusPerReplica"], 1
                ),
                "derivation": (
                    f"decode scaled from {L40S_FROM} by memory bandwidth 1555/864 GB/s, power by"
                    f" TDP 350/400 W; prefill at {PREFILL_MFU:.0%} of {p['gpusPerReplica']} x"
                    f" {PEAK_BF16_TFLOPS['NVIDIA-L40S']} TFLOP/s BF16; not measured"
                ),
            }
        )
    return {
        "sources": [
            "ml-energy/benchmark v2 LLM results, 2024-09 (Apache-2.0)",
            "mlco2/impact GPU TDP table (MIT)",
            "NVIDIA A100, H100 and L40S datasheets (dense BF16 tensor TFLOP/s); model cards"
            " (parameters)",
        ],
        "prefillMfu": PREFILL_MFU,
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
