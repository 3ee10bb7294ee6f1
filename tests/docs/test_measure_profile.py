"""scripts/measure_profile.py against the vLLM simulator (a real process on 127.0.0.1, stopped at
teardown): the profile it measures recovers the step costs the simulator was started with, its
YAML is an entry the CRD accepts, and bad arguments or servers are named."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gridplace_e2e.vllmsim.process import SimProcess, start_simulator
from gridplace_operator.api.inference_deployment import GpuPerformance

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "measure_profile.py"

# The simulator's step: A + B x decoding sequences + C x prompt tokens (milliseconds), after a
# fixed OVERHEAD per request; the profile's decodeBaseSeconds, decodePerSequenceSeconds and
# prefillSecondsPerToken are A, B and C in seconds.
A_MS, B_MS, C_MS, OVERHEAD_MS = 15.0, 1.5, 0.04, 5.0
SLOTS, BUDGET = 8, 4096


@pytest.fixture(scope="module")
def sim() -> Iterator[str]:
    flags = {
        "--model": "m",
        "--max-num-seqs": SLOTS,
        "--max-num-batched-tokens": BUDGET,
        "--time-to-first-token": OVERHEAD_MS,
        "--prefill-time-per-token": C_MS,
        "--inter-token-latency": A_MS,
        "--inter-token-latency-per-seq": B_MS,
    }
    process: SimProcess = start_simulator([str(v) for pair in flags.items() for v in pair])
    try:
        yield process.base_url
    finally:
        process.stop()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def common(url: str) -> list[str]:
    return [
        "--url", url,
        "--model", "m",
        "--gpu-type", "NVIDIA-L40S",
        "--max-num-seqs", str(SLOTS),
        "--max-num-batched-tokens", str(BUDGET),
        "--output-tokens", "40",
        "--repeats", "2",
        "--prompt-lengths", "250,1000,2000,4000",
        "--quiet",
    ]  # fmt: skip


def test_the_measured_profile_recovers_the_simulators_step_costs(sim: str) -> None:
    done = run(*common(sim), "--output", "json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    profile = result["profile"]
    assert profile["gpuType"] == "NVIDIA-L40S"
    assert profile["maxBatch"] == SLOTS
    assert profile["maxBatchedTokens"] == BUDGET
    assert profile["decodeBaseSeconds"] == pytest.approx(A_MS / 1000, rel=0.10)
    assert profile["decodePerSequenceSeconds"] == pytest.approx(B_MS / 1000, rel=0.20)
    assert profile["prefillSecondsPerToken"] == pytest.approx(C_MS / 1000, rel=0.10)
    assert [b for b, _ in result["fits"]["decode"]["points"]] == [1, 1, 2, 2, 4, 4, 8, 8]
    assert result["fits"]["decode"]["rSquared"] > 0.9
    assert result["fits"]["prefill"]["rSquared"] > 0.99
    # What stands before the first token besides the prompt: the overhead and one step's base.
    fixed_ms = result["fits"]["prefill"]["fixedSeconds"] * 1000
    assert OVERHEAD_MS + A_MS - 2 < fixed_ms < OVERHEAD_MS + A_MS + 15


def test_the_yaml_is_a_performance_entry_the_crd_accepts(sim: str) -> None:
    done = run(
        *common(sim),
        "--batch-sizes", "1,8",
        "--prompt-lengths", "500,2000",
        "--repeats", "1",
        "--active-power-watts", "350",
        "--idle-power-watts", "100",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    entries = yaml.safe_load(done.stdout)
    assert isinstance(entries, list) and len(entries) == 1
    entry = entries[0]
    # Every number is a YAML number, not a string (no exponent without a dot).
    assert all(isinstance(v, int | float) for k, v in entry.items() if k != "gpuType")
    performance = GpuPerformance.model_validate(entry)
    assert performance.active_power_watts == 350 and performance.idle_power_watts == 100
    assert performance.prefill_seconds_per_token == pytest.approx(C_MS / 1000, rel=0.15)


def test_without_power_figures_the_yaml_says_what_to_measure(sim: str) -> None:
    done = run(
        *common(sim), "--batch-sizes", "1,2", "--prompt-lengths", "250,500", "--repeats", "1"
    )
    assert done.returncode == 0, done.stderr
    assert "activePowerWatts" not in yaml.safe_load(done.stdout)[0]
    assert "--active-power-watts" in done.stdout and "nvidia-smi" in done.stdout


def test_a_model_the_server_does_not_serve_is_named(sim: str) -> None:
    args = common(sim)
    args[args.index("m")] = "meta-llama/other"
    done = run(*args)
    assert done.returncode == 2
    assert "does not serve 'meta-llama/other'; it serves: m" in done.stderr


def test_bad_arguments_say_why(sim: str) -> None:
    done = run(*common(sim), "--batch-sizes", "1,16")
    assert done.returncode == 2
    assert "--batch-sizes 16 is above --max-num-seqs 8" in done.stderr
    done = run(*common(sim), "--prompt-lengths", "1000,8000")
    assert done.returncode == 2
    assert "--prompt-lengths 8000 is above --max-num-batched-tokens 4096" in done.stderr


def test_an_unreachable_server_is_a_runtime_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = run(*common(f"http://127.0.0.1:{port}"))
    assert done.returncode == 1
    assert f"http://127.0.0.1:{port}/v1/models" in done.stderr
    assert "Traceback" not in done.stderr
