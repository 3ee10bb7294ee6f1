"""The pod simulator bridge's pure parts: model from the pod, file_sd entry, traffic routing."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import astuple
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gridplace_e2e.podsim import (
    GPU_LABEL,
    GPU_LATENCY,
    IDEP_LABEL,
    REGION_LABEL,
    BackedPod,
    ClusterRouter,
    PodKey,
    PodSimulators,
    pod_model,
    split,
    target_group,
    write_target,
)
from gridplace_e2e.vllmsim.cli import build_parser, config_from_args
from gridplace_e2e.vllmsim.process import SimProcess
from gridplace_e2e.vllmsim.steps import SchedulerLimits


class _Done:
    def poll(self) -> int:
        return 0


def backed(region: str, url: str = "http://127.0.0.1:41000") -> BackedPod:
    sim = SimProcess(_Done(), url)  # type: ignore[arg-type]
    return BackedPod(PodKey("ns", f"pod-{region}"), "chat", region, "NVIDIA-L40S", "m", sim)


def test_the_model_comes_from_the_container_args() -> None:
    pod: dict[str, Any] = {
        "spec": {"containers": [{"args": ["--port=8000", "--model=meta/llama", "--x"]}]}
    }
    assert pod_model(pod) == "meta/llama"
    assert pod_model({"spec": {"containers": [{"args": ["--port=8000"]}]}}) is None


def test_simulator_flags_follow_the_gpu_type() -> None:
    flags = GPU_LATENCY["NVIDIA-H100-80GB-HBM3"].flags("m")
    assert flags[0] == "--model=m"
    assert "--max-num-seqs=4" in flags
    assert "--max-num-batched-tokens=8192" in flags
    slow = GPU_LATENCY["NVIDIA-L40S"]
    fast = GPU_LATENCY["NVIDIA-H100-80GB-HBM3"]
    assert fast.inter_token_latency_ms < slow.inter_token_latency_ms
    # decode follows memory bandwidth, prefill compute: the L40S decodes slower than the A100
    # but prefills faster
    a100 = GPU_LATENCY["NVIDIA-A100-SXM4-40GB"]
    assert a100.inter_token_latency_ms < slow.inter_token_latency_ms
    assert slow.prefill_time_per_token_ms < a100.prefill_time_per_token_ms


def test_the_simulator_reads_the_flags_podsim_writes() -> None:
    config = config_from_args(build_parser().parse_args(GPU_LATENCY["NVIDIA-L40S"].flags("m")))
    assert config.served_model_names == ("m",)
    assert config.limits == SchedulerLimits(max_num_seqs=4, max_num_batched_tokens=8192)
    assert astuple(config.costs) == pytest.approx((0.005, 0.00009, 0.023, 0.0004))


def test_the_file_sd_target_carries_the_labels_the_queries_use(tmp_path: Path) -> None:
    pod = backed("us-east-1")
    assert target_group(pod) == [
        {
            "targets": ["127.0.0.1:41000"],
            "labels": {
                "namespace": "ns",
                "inference_deployment": "chat",
                "region": "us-east-1",
                "gpu_type": "NVIDIA-L40S",
                "pod": "pod-us-east-1",
            },
        }
    ]
    path = write_target(tmp_path, pod)
    assert json.loads(path.read_text()) == target_group(pod)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_traffic_split_and_routing_follow_the_plan() -> None:
    traffic = split(
        [
            {"zone": "us", "region": "east", "requestsPerSecond": 3.0, "rttMs": 5},
            {"zone": "us", "region": "west", "requestsPerSecond": 1.0, "rttMs": 60},
            {"zone": "eu", "region": "east", "requestsPerSecond": 0.0, "rttMs": 90},
        ]
    )
    assert traffic == {"us": {"east": 3.0, "west": 1.0}}
    endpoints = {
        "east": ["http://127.0.0.1:1", "http://127.0.0.1:2"],
        "west": ["http://127.0.0.1:3"],
    }
    router = ClusterRouter(traffic=lambda: traffic, endpoints=lambda: endpoints, seed=3)
    routes = [router("us") for _ in range(4000)]
    assert {(r.region, r.url) for r in routes} == {
        ("east", "http://127.0.0.1:1"),
        ("east", "http://127.0.0.1:2"),
        ("west", "http://127.0.0.1:3"),
    }
    picks = [r.url for r in routes]
    west = picks.count("http://127.0.0.1:3") / len(picks)
    assert 0.2 < west < 0.3  # a quarter of the zone's rate goes west
    assert abs(picks.count("http://127.0.0.1:1") - picks.count("http://127.0.0.1:2")) <= 1
    # a zone the plan does not route yet goes to any region with a simulator
    assert router("eu").url in {u for urls in endpoints.values() for u in urls}
    with pytest.raises(ValueError, match="no simulator serves zone 'us'"):
        ClusterRouter(traffic=lambda: traffic, endpoints=dict)("us")


class _Draining:
    """A simulator process that, asked to stop, drains until the test lets it exit."""

    stdout = None

    def __init__(self) -> None:
        self.terminated = threading.Event()
        self.exit = threading.Event()

    def poll(self) -> int | None:
        return 0 if self.exit.is_set() else None

    def terminate(self) -> None:
        self.terminated.set()

    def wait(self, timeout: float | None = None) -> int:
        self.exit.wait(timeout)
        return 0


class _ScriptedPods(PodSimulators):
    def __init__(self, file_sd_dir: Path, start: Callable[[Sequence[str]], SimProcess]) -> None:
        super().__init__(client.ApiClient(), file_sd_dir, start=start)
        self.listed: list[dict[str, Any]] = []

    def _running_pods(self) -> list[dict[str, Any]]:
        return self.listed


def running_pod(name: str) -> dict[str, Any]:
    labels = {IDEP_LABEL: "chat", REGION_LABEL: "east", GPU_LABEL: "NVIDIA-L40S"}
    return {
        "metadata": {"namespace": "ns", "name": name, "labels": labels},
        "spec": {"containers": [{"args": ["--model=m"]}]},
    }


def test_a_draining_simulator_never_blocks_routing(tmp_path: Path) -> None:
    """The load generator asks for endpoints on every request: a simulator that takes its time
    to drain must leave routing at once, and must not hold routing up while it drains."""
    process = _Draining()
    sims = _ScriptedPods(tmp_path, start=lambda _: SimProcess(process, "http://127.0.0.1:41000"))  # type: ignore[arg-type]
    sims.listed = [running_pod("a")]
    sims.sync()
    assert sims.endpoints("ns", "chat") == {"east": ["http://127.0.0.1:41000"]}
    assert len(list(tmp_path.iterdir())) == 1
    sims.listed = []
    syncing = threading.Thread(target=sims.sync)
    syncing.start()
    assert process.terminated.wait(10)
    # still draining, yet routing and scraping no longer see it
    assert sims.endpoints("ns", "chat") == {}
    assert list(tmp_path.iterdir()) == []
    syncing.join(10)
    assert not syncing.is_alive() and not process.exit.is_set()
    process.exit.set()
    sims.close()
