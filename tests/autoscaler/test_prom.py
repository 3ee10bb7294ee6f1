"""gridplace's PromQL against the real Prometheus of the local cluster, scraping real simulators."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from gridplace_e2e.cluster.handle import ClusterHandle
from gridplace_e2e.cluster.local import poll
from gridplace_e2e.loadgen.plan import Step, Zone, read_trace, step_plan
from gridplace_e2e.loadgen.runner import RunOptions, round_robin, run_plan
from gridplace_e2e.podsim import GPU_LATENCY, BackedPod, PodKey, write_target
from gridplace_e2e.public_data import CODE_TRACE as TRACE
from gridplace_e2e.vllmsim.process import start_simulator
from gridplace_operator.autoscale.prometheus import (
    LoadReading,
    Prometheus,
    PrometheusError,
    Target,
    check_window,
    p95_query,
    request_rate_query,
)

MODEL = "test/model"
WINDOW = "30s"


def test_queries_group_by_model_and_region_and_filter_by_the_deployment() -> None:
    target = Target("serving", 'odd"name')
    query = p95_query(target, "ttft", "2m")
    assert query == (
        "histogram_quantile(0.95, sum by (le, model_name, region) (rate("
        'vllm:time_to_first_token_seconds_bucket{namespace="serving",'
        'inference_deployment="odd\\"name"}[2m])))'
    )
    assert "vllm:e2e_request_latency_seconds_bucket" in p95_query(target, "e2e", "30s")
    assert request_rate_query(target, "1m").startswith("sum by (model_name, region) (rate(")


@pytest.mark.parametrize("window", ["", "2", "0s", "5 m", "1d", "-1m"])
def test_bad_windows_are_refused_with_the_value(window: str) -> None:
    with pytest.raises(ValueError, match=f"rate window '{window}'"):
        check_window(window)


def test_offered_rate_adds_queue_growth_and_the_backlog_to_drain() -> None:
    reading = LoadReading(
        requests_per_second={"a": 3.0, "b": 1.0},
        waiting={"a": 20.0, "b": 0.0},
        queue_growth_rps={"a": 0.5, "b": -2.0},  # a shrinking queue is no extra demand
    )
    assert reading.offered_rps(40) == 3.0 + 1.0 + 0.5 + 20 / 40
    assert reading.arrival_rps == 3.0 + 1.0 + 0.5 - 2.0  # a draining queue was served, not new


def test_an_unreachable_prometheus_is_an_explicit_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    with pytest.raises(PrometheusError, match=f"127.0.0.1:{port}"):
        Prometheus(f"http://127.0.0.1:{port}", timeout_s=2).query("up")


@pytest.fixture
def two_regions(cluster: ClusterHandle) -> Iterator[dict[str, str]]:
    """Two simulators scraped as pods of one InferenceDeployment in two regions."""
    sims = {
        region: start_simulator(GPU_LATENCY["NVIDIA-L40S"].flags(MODEL))
        for region in ("r-busy", "r-idle")
    }
    files = [
        write_target(
            cluster.file_sd_dir,
            BackedPod(
                PodKey("prom-ns", f"pod-{region}"), "prom-idep", region, "NVIDIA-L40S", MODEL, sim
            ),
        )
        for region, sim in sims.items()
    ]
    yield {region: sim.base_url for region, sim in sims.items()}
    for path in files:
        path.unlink(missing_ok=True)
    for sim in sims.values():
        sim.stop()


@pytest.mark.cluster
def test_latency_and_load_by_region_from_real_scrapes(
    cluster: ClusterHandle, two_regions: dict[str, str]
) -> None:
    prom = Prometheus(cluster.prometheus_url)
    target = Target("prom-ns", "prom-idep")
    scraped = 'up{job="file_sd",inference_deployment="prom-idep"}'
    assert poll(lambda: len(prom.query(scraped)) == 2, 60), "the simulators were never scraped"

    zones = (Zone("z", 0.0),)
    plan = step_plan(
        read_trace(TRACE, limit=200), zones, steps=[Step(20, 3.0)], max_requests=200,
        max_duration_s=20, seed=1,
    )  # fmt: skip
    outcomes, _ = asyncio.run(
        run_plan(plan, round_robin([two_regions["r-busy"]], zones), RunOptions(MODEL))
    )
    assert sum(o.error is None for o in outcomes) >= 0.9 * len(outcomes)

    def busy_seen() -> bool:
        reading = prom.load(target, "ttft", WINDOW)
        return "r-busy" in reading.p95_seconds and reading.requests_per_second.get("r-busy", 0) > 0

    assert poll(busy_seen, 60), "no p95 for the loaded region"
    reading = prom.load(target, "ttft", WINDOW)
    # TTFT is at least the simulator's base prefill time and stays finite
    assert 0.02 <= reading.p95_seconds["r-busy"] < 30
    e2e = prom.load(target, "e2e", WINDOW).p95_seconds["r-busy"]
    assert e2e >= reading.p95_seconds["r-busy"]
    # the idle region: scraped, zero rate, and no p95 (NaN dropped, not reported as 0)
    assert reading.requests_per_second.get("r-idle") == 0.0
    assert "r-idle" not in reading.p95_seconds
    assert set(reading.waiting) == {"r-busy", "r-idle"}
    assert set(reading.running) == {"r-busy", "r-idle"}
    assert set(reading.queue_growth_rps) == {"r-busy", "r-idle"}
    assert reading.offered_rps(30) >= reading.total_rps
    # another deployment's series are not mixed in
    assert prom.load(Target("prom-ns", "other"), "ttft", WINDOW).requests_per_second == {}


@pytest.mark.cluster
def test_measured_demand_by_zone_and_a_bad_query(
    cluster: ClusterHandle, two_regions: dict[str, str]
) -> None:
    prom = Prometheus(cluster.prometheus_url)
    scraped = 'up{job="file_sd",inference_deployment="prom-idep"}'
    assert poll(lambda: len(prom.query(scraped)) == 2, 60)
    query = (
        # count, not sum: a scrape that fails under load sets `up` to 0 but keeps the series
        'label_replace(count by (region) (up{inference_deployment="prom-idep"}) * 1.5,'
        ' "zone", "users-$1", "region", "r-(.*)")'
    )
    assert prom.demand(query, "zone") == {"users-busy": 1.5, "users-idle": 1.5}
    assert prom.demand('up{inference_deployment="nothing-here"}', "zone") == {}
    with pytest.raises(PrometheusError, match="parse error"):
        prom.demand("sum by (zone) (rate(", "zone")
    with pytest.raises(PrometheusError, match="invalid rates"):
        prom.demand(query.replace("* 1.5", "* -1"), "zone")
