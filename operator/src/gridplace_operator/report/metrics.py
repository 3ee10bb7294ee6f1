"""Operator metrics, served on /metrics from a registry of their own."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_IDEP = ("namespace", "inference_deployment")


@dataclass
class OperatorMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.plan_duration = Histogram(
            "gridplace_plan_duration_seconds",
            "Wall time of one joint placement solve (a re-plan of unchanged inputs reuses the last"
            " certified plan and solves nothing).",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        self.plans = Counter(
            "gridplace_plans_total", "Planning cycles by outcome.", ["outcome"], registry=r
        )
        self.errors = Counter(
            "gridplace_errors_total", "Errors by stage of the cycle.", ["stage"], registry=r
        )
        self.writes = Counter(
            "gridplace_api_writes_total",
            "Write requests sent to the API server, by kind and verb.",
            ["kind", "verb"],
            registry=r,
        )
        self.leader = Gauge(
            "gridplace_leader",
            "1 while this operator holds the leader Lease (or runs without leader election).",
            registry=r,
        )
        self.leader.set(1)
        self.drift_repairs = Counter(
            "gridplace_child_drift_repairs_total",
            "Children restored after their replicas, images or args were changed outside"
            " gridplace, by kind.",
            ["kind"],
            registry=r,
        )
        self.replicas = Gauge(
            "gridplace_replicas",
            "Planned replicas by model, region and GPU type.",
            [*_IDEP, "region", "gpu_type"],
            registry=r,
        )
        self.carbon = Gauge(
            "gridplace_predicted_carbon_grams_per_hour",
            "Predicted emissions of the planned replicas.",
            list(_IDEP),
            registry=r,
        )
        self.cost = Gauge(
            "gridplace_predicted_cost_usd_per_hour",
            "Predicted energy and GPU-hour cost of the planned replicas.",
            list(_IDEP),
            registry=r,
        )
        self.unmet = Gauge(
            "gridplace_unmet_requests_per_second",
            "Demand the plan cannot serve within the SLO.",
            list(_IDEP),
            registry=r,
        )
        self.slo = Gauge(
            "gridplace_slo_seconds",
            "The p95 latency target of each InferenceDeployment (TTFT or end to end).",
            [*_IDEP, "metric"],
            registry=r,
        )
        self.signal_age = Gauge(
            "gridplace_signal_age_seconds",
            "Age of the signal value a region was planned with.",
            ["region", "signal"],
            registry=r,
        )
        self.desired_replicas = Gauge(
            "gridplace_autoscaler_desired_replicas",
            "Total replicas the autoscaler decided.",
            list(_IDEP),
            registry=r,
        )
        self.observed_p95 = Gauge(
            "gridplace_observed_p95_seconds",
            "p95 of the SLO metric measured by Prometheus, by region (RTT not included).",
            [*_IDEP, "region"],
            registry=r,
        )
        self.scale_decisions = Counter(
            "gridplace_autoscaler_decisions_total",
            "Autoscaler decisions by reason.",
            [*_IDEP, "reason"],
            registry=r,
        )

    def serve(self, port: int, address: str) -> None:
        start_http_server(port, addr=address, registry=self.registry)
