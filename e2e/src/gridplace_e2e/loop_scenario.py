"""The closed-loop scenario shared by the autoscaling test and the demo: one model served by
simulators that queue at a few requests per second, light load, a step up that breaches the SLO,
and a step back down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gridplace_e2e.loadgen.plan import Step, load_rtt_matrix
from gridplace_e2e.podsim import SimLatency
from gridplace_e2e.public_data import CODE_TRACE

ROOT = Path(__file__).resolve().parents[3]
TRACE = CODE_TRACE  # request sizes the load generator replays
REGIONS = ROOT / "examples" / "regions.yaml"  # the Regions the loop runs against
GPU = "NVIDIA-L40S"
MODEL = "sim/code-completion"
SLO_S = 1.0
# Eight batch slots; a 2k-token prompt's prefill (0.02 ms a token) shares each 30 ms decode step,
# so one replica carries about 3.8 req/s within the SLO: the light load (bursts included) fits one
# with room to spare, the heavy one needs four to six.
LATENCY = {GPU: SimLatency(20, 0.02, 30, 0.5, 8)}
LIGHT, HEAVY = 2.0, 14.0
STEPS = (Step(45, LIGHT), Step(150, HEAVY), Step(120, LIGHT))
OPERATOR_ARGS = ("--prometheus-rate-window=20s", "--autoscale-period=3")


def rtt_matrix_ms() -> dict[str, dict[str, float]]:
    """Zone -> region -> RTT (ms) of the Regions: the load generator adds the RTT of the region
    each request is routed to."""
    return load_rtt_matrix(REGIONS)


def inference_deployment(
    name: str, region: str = "us-east-1", zone: str = "us-east"
) -> dict[str, Any]:
    """Its performance profile describes the simulator above, so the capacity model fits it.
    Users in `zone` are served from `region` only."""
    return {
        "apiVersion": "gridplace.dev/v1alpha1",
        "kind": "InferenceDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {
                "name": MODEL,
                "gpuTypes": [GPU],
                "performance": {
                    "gpus": [
                        {
                            "gpuType": GPU,
                            "maxBatch": 8,
                            "decodeBaseSeconds": 0.03,
                            "decodePerSequenceSeconds": 0.0005,
                            "prefillSecondsPerToken": 0.00002,
                            "activePowerWatts": 350,
                            "idlePowerWatts": 100,
                        }
                    ]
                },
            },
            "slo": {"p95TimeToFirstTokenSeconds": SLO_S},
            "scaling": {
                "minReplicas": 1,
                "maxReplicas": 6,
                "scaleUpStabilizationSeconds": 6,
                "scaleDownStabilizationSeconds": 45,
                "maxStep": 2,
            },
            "placement": {"allowedRegions": [region]},
            "demand": {
                "static": [{"zone": zone, "requestsPerSecond": LIGHT}],
                "meanPromptTokens": 2048,
                "meanOutputTokens": 28,
            },
        },
    }
