"""`prometheus` sources against the real Prometheus of the local cluster (and a local server for
answers a healthy Prometheus never gives)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from scripted_server import Answer, ScriptedServer, json_answer
from signal_kit import Providers

from gridplace_e2e.cluster.handle import ClusterHandle
from gridplace_operator.api.region import CarbonIntensitySource
from gridplace_operator.signals.sources import SignalError


def query(promql: str) -> CarbonIntensitySource:
    return CarbonIntensitySource.model_validate({"prometheus": {"query": promql}})


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def real(cluster: ClusterHandle, make_providers: Callable[..., Providers]) -> Providers:
    return make_providers(prometheus_url=cluster.prometheus_url)


@pytest.mark.cluster
@pytest.mark.parametrize(
    ("promql", "expected"),
    [("vector(123)", 123.0), ("scalar(vector(41.5))", 41.5), ("sum(vector(2) * 3)", 6.0)],
)
def test_one_number_is_the_reading(real: Providers, promql: str, expected: float) -> None:
    before = now()
    reading = real.read(query(promql), before)
    assert (reading.value, reading.source) == (expected, "Prometheus")
    # Prometheus stamps an instant query with its evaluation time.
    assert abs(reading.observed_at - before) < timedelta(minutes=1)


@pytest.mark.cluster
@pytest.mark.parametrize(
    ("promql", "message"),
    [
        ('up{job="no-such-job"}', "no data"),
        ('vector(1) or label_replace(vector(2), "x", "y", "", "")', "returned 2 series"),
        ("vector(0) / 0", "returned NaN"),
        ("vector(1", "HTTP 400"),
    ],
)
def test_answers_that_are_not_one_number_are_clear_errors(
    real: Providers, promql: str, message: str
) -> None:
    with pytest.raises(SignalError, match=message) as raised:
        real.read(query(promql), now())
    assert promql in str(raised.value)


@pytest.mark.cluster
def test_results_are_cached_for_the_refresh_interval(
    cluster: ClusterHandle, make_providers: Callable[..., Providers]
) -> None:
    providers = make_providers(prometheus_url=cluster.prometheus_url)
    source = query("time()")  # a scalar that changes every second
    start = now()
    first = providers.read(source, start).value
    assert providers.read(source, start + timedelta(seconds=10)).value == first
    # Refreshed after min(300 s, maxAgeSeconds 7200 s / 4).
    assert providers.read(source, start + timedelta(seconds=300)).value > first


def test_malformed_answers(
    server: ScriptedServer, make_providers: Callable[..., Providers]
) -> None:
    providers = make_providers(attempts=1, retry_after_failure_seconds=0.001)
    cases = [
        (Answer(200, b"<html/>"), "not JSON"),
        (
            json_answer({"status": "success", "data": {"resultType": "matrix", "result": []}}),
            "a matrix result",
        ),
        (
            json_answer({"status": "success", "data": {"resultType": "scalar", "result": [1]}}),
            "malformed sample",
        ),
        (json_answer({"status": "error", "error": "overloaded"}), "status is not success"),
    ]
    for seconds, (answer, message) in enumerate(cases):
        server.script("/api/v1/query", answer)
        with pytest.raises(SignalError, match=message):
            providers.read(query("x"), now() + timedelta(seconds=seconds))


def test_without_a_prometheus_url_the_error_says_what_to_set(
    make_providers: Callable[..., Providers],
) -> None:
    providers = make_providers(prometheus_url=None)
    with pytest.raises(SignalError, match="--prometheus-url, or set GRIDPLACE_PROMETHEUS_URL"):
        providers.read(query("vector(1)"), now())
