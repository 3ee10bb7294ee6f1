"""Latency, load and demand from Prometheus: every PromQL query gridplace sends, and the client.

The vLLM series must carry the labels `namespace`, `inference_deployment` and `region` of the pod
that exposes them (a PodMonitor relabels them from the pod labels gridplace sets; see
docs/autoscaling.md). Empty results and NaN samples are never errors: `histogram_quantile` over a
window without requests is NaN, and that means "no requests", which the caller must tell apart
from "Prometheus did not answer" (a `PrometheusError`).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
import urllib3
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

LatencyMetric = Literal["ttft", "e2e"]
HISTOGRAMS: Mapping[LatencyMetric, str] = {
    "ttft": "vllm:time_to_first_token_seconds",
    "e2e": "vllm:e2e_request_latency_seconds",
}
BY = "model_name, region"
_WINDOW = re.compile(r"^[1-9][0-9]*(ms|s|m|h)$")


class PrometheusError(RuntimeError):
    """Prometheus could not be asked or did not answer the query. `summary` names the host and
    the kind of failure only, fit for status: never a credential or a body."""

    def __init__(self, message: str, *, summary: str) -> None:
        super().__init__(message)
        self.summary = summary


@dataclass(frozen=True)
class Target:
    """The series of one InferenceDeployment's pods."""

    namespace: str
    inference_deployment: str

    def matchers(self) -> str:
        return (
            f'namespace="{_escape(self.namespace)}",'
            f'inference_deployment="{_escape(self.inference_deployment)}"'
        )


def check_window(window: str) -> str:
    """A PromQL range such as `2m`; raises ValueError naming the value otherwise."""
    if not _WINDOW.match(window):
        raise ValueError(f"rate window {window!r} must look like 30s, 2m or 1h")
    return window


def window_seconds(window: str) -> float:
    unit = next(u for u in ("ms", "s", "m", "h") if check_window(window).endswith(u))
    return float(window.removesuffix(unit)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def p95_query(target: Target, metric: LatencyMetric, window: str) -> str:
    bucket = f"{HISTOGRAMS[metric]}_bucket{{{target.matchers()}}}"
    return f"histogram_quantile(0.95, sum by (le, {BY}) (rate({bucket}[{check_window(window)}])))"


def request_rate_query(target: Target, window: str) -> str:
    """Finished requests per second (the e2e histogram counts each finished request once)."""
    count = f"{HISTOGRAMS['e2e']}_count{{{target.matchers()}}}"
    return f"sum by ({BY}) (rate({count}[{check_window(window)}]))"


def waiting_query(target: Target) -> str:
    return f"sum by ({BY}) (vllm:num_requests_waiting{{{target.matchers()}}})"


def queue_growth_query(target: Target, window: str) -> str:
    """Requests per second the waiting queue grows by: arrivals the served rate does not show."""
    waiting = f"vllm:num_requests_waiting{{{target.matchers()}}}"
    return f"sum by ({BY}) (deriv({waiting}[{check_window(window)}]))"


def running_query(target: Target) -> str:
    return f"sum by ({BY}) (vllm:num_requests_running{{{target.matchers()}}})"


@dataclass(frozen=True)
class Sample:
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class LoadReading:
    """What the pods of one InferenceDeployment report, per region. A region missing from
    `p95_seconds` had no finished requests in the window."""

    p95_seconds: dict[str, float] = field(default_factory=dict)
    requests_per_second: dict[str, float] = field(default_factory=dict)
    waiting: dict[str, float] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)
    queue_growth_rps: dict[str, float] = field(default_factory=dict)

    @property
    def total_rps(self) -> float:
        return sum(self.requests_per_second.values())

    @property
    def arrival_rps(self) -> float:
        """Arrivals: what was served plus what the queues grew by (minus what they shrank by)."""
        return max(0.0, self.total_rps + sum(self.queue_growth_rps.values()))

    def offered_rps(self, drain_s: float) -> float:
        """What arrives, even when saturated: served requests plus the growth of the queues,
        plus the rate that drains the requests waiting now within `drain_s`."""
        growth = sum(max(0.0, g) for g in self.queue_growth_rps.values())
        backlog = sum(self.waiting.values()) / drain_s if drain_s > 0 else 0.0
        return self.total_rps + growth + backlog


class Prometheus:
    """A small client: instant queries with a timeout, NaN dropped, errors made explicit."""

    def __init__(self, url: str, timeout_s: float = 5.0, down_pause_s: float = 5.0) -> None:
        parts = urlsplit(url)
        self.host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        # No retries with backoff inside a query: a failed one is asked again at the next
        # decision, and the waits held up the planning cycle of every InferenceDeployment.
        # (Errors then come unwrapped: a refused connection is urllib3's NewConnectionError.)
        self._api = PrometheusConnect(
            url=url, disable_ssl=True, timeout=timeout_s, retry=Retry(total=False)
        )
        # A Prometheus that could not be reached is not waited on again for `down_pause_s`:
        # the other InferenceDeployments of the cycle get the same error at once.
        self.down_pause_s = down_pause_s
        self._down: tuple[float, str] | None = None  # when, and the failure's class

    def _error(self, promql: str, cause: str, detail: object = None) -> PrometheusError:
        """The whole story for the log (Prometheus' own explanation of a bad query included);
        `summary` for status."""
        more = f": {detail}" if detail is not None else ""
        return PrometheusError(
            f"Prometheus at {self.host} failed on {promql!r}: {cause}{more}",
            summary=f"{cause} from {self.host}",
        )

    def query(self, promql: str) -> list[Sample]:
        """Instant vector; samples whose value is NaN are left out (no data, not zero)."""
        down = self._down
        if down is not None and (age := time.monotonic() - down[0]) < self.down_pause_s:
            raise self._error(promql, down[1], f"not asked, it failed {age:.1f}s ago")
        try:
            result: Any = self._api.custom_query(promql)
        except PrometheusApiClientException as err:
            status = re.search(r"HTTP Status Code (\d+)", str(err))  # the rest is the body
            raise self._error(promql, f"HTTP {status[1] if status else '?'}", err) from err
        except (requests.RequestException, urllib3.exceptions.HTTPError) as err:
            self._down = (time.monotonic(), type(err).__name__)
            raise self._error(promql, type(err).__name__, err) from err
        except (ValueError, KeyError, TypeError) as err:  # 200, but not Prometheus' answer
            raise self._error(promql, "a malformed answer", err) from err
        if not isinstance(result, list):
            raise self._error(promql, "not an instant vector")
        samples = []
        for item in result:
            try:
                labels = {str(k): str(v) for k, v in item["metric"].items()}
                value = float(item["value"][1])
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
                raise self._error(promql, "a malformed sample", err) from err
            if not math.isnan(value):
                samples.append(Sample(labels, value))
        return samples

    def by_label(self, promql: str, label: str) -> dict[str, float]:
        """Values keyed by one label, summed over the other labels; samples without it dropped."""
        out: dict[str, float] = {}
        for sample in self.query(promql):
            key = sample.labels.get(label)
            if key:
                out[key] = out.get(key, 0.0) + sample.value
        return out

    def load(self, target: Target, metric: LatencyMetric, window: str) -> LoadReading:
        p95: dict[str, float] = {}
        for sample in self.query(p95_query(target, metric, window)):
            region = sample.labels.get("region")
            if region:  # several served model names in one region: the worst counts
                p95[region] = max(p95.get(region, 0.0), sample.value)
        return LoadReading(
            p95_seconds=p95,
            requests_per_second=self.by_label(request_rate_query(target, window), "region"),
            waiting=self.by_label(waiting_query(target), "region"),
            running=self.by_label(running_query(target), "region"),
            queue_growth_rps=self.by_label(queue_growth_query(target, window), "region"),
        )

    def demand(self, query: str, zone_label: str) -> dict[str, float]:
        """Requests per second by user zone from a spec.demand.prometheus query."""
        rates = self.by_label(query, zone_label)
        bad = {zone: rps for zone, rps in rates.items() if not rps >= 0 or math.isinf(rps)}
        if bad:
            raise PrometheusError(
                f"demand query {query!r} returned invalid rates {bad}",
                summary=f"invalid demand rates from {self.host}",
            )
        return rates


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
