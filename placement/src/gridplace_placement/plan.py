"""The result of a placement: what runs where, who is served from where, and why."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, alias_generator=to_camel)


class PlanStatus(StrEnum):
    OPTIMAL = "OPTIMAL"  # certified within the requested relative gap of the lower bound
    FEASIBLE = "FEASIBLE"  # a valid plan, not certified within the requested gap
    INFEASIBLE_WITH_SLACK = "INFEASIBLE_WITH_SLACK"  # valid plan, but demand unserved or a floor
    #  or the churn budget missed: the constraint could not be met and the plan says which
    NO_SOLUTION = "NO_SOLUTION"  # the solver found no plan within its time limit


class PoolPlan(_Result):
    """Replicas of one model in one region on one GPU type."""

    model: str
    region: str
    gpu_type: str
    replicas: int
    current_replicas: int
    load_rps: float = Field(description="request rate routed to this pool")
    capacity_rps: float = Field(description="exact queueing capacity at the p95 budget")
    p95_wait_seconds: float = Field(description="exact p95 queue wait at this load")


class Route(_Result):
    model: str
    zone: str
    region: str
    gpu_type: str
    rate_rps: float
    share: float = Field(description="fraction of the zone's demand for this model")


class ZoneOutcome(_Result):
    model: str
    zone: str
    demand_rps: float
    unserved_rps: float
    predicted_p95_ttft_seconds: float | None = Field(
        description="worst route: RTT + p95 queue wait + prefill; None when nothing is served"
    )
    slo_met: bool


class ModelOutcome(_Result):
    name: str
    replicas: int
    regions: list[str]
    carbon_g_per_hour: float
    usd_per_hour: float
    unserved_rps: float
    stopped_replicas: int
    moved_replicas: int = Field(
        default=0,
        description="moves the churn budget counts: stops beyond what falling demand frees, or "
        "starts beyond what rising demand needs",
    )
    kept_current: bool = Field(
        default=False,
        description="hysteresis kept this model's current pools (as they are or scaled): the best "
        "other plan found did not lower its objective by more than minImprovement",
    )
    floor_unmet: str | None = Field(
        default=None,
        description="why the plan misses the model's availability floor (minRegions regions "
        "with perRegionMin replicas) or minReplicas; None when both are met",
    )
    reasons: list[str] = Field(description="the binding reasons behind this placement")


class Timing(_Result):
    compile_seconds: float = Field(description="pruning and building the model arrays")
    bound_seconds: float = Field(description="LP relaxation (GLOP) for the certified bound")
    solve_seconds: float = Field(description="the integer solve or the policy")
    extract_seconds: float = Field(description="reading the solution, exact check, reasons")
    total_seconds: float


class Plan(_Result):
    policy: str
    status: PlanStatus
    objective: float = Field(description="normalised objective of this plan (linearised model)")
    lower_bound: float = Field(description="certified lower bound on any plan's objective")
    gap: float = Field(description="(objective - bound) / |objective|")
    carbon_g_per_hour: float
    energy_usd_per_hour: float
    gpu_usd_per_hour: float
    usd_per_hour: float
    unserved_rps: float
    stopped_replicas: int
    moved_replicas: int = Field(default=0, description="moves over all models (churn budget)")
    kept_current: bool = Field(
        default=False,
        description="every model that runs now keeps its current pools (as they are or scaled): "
        "no move found paid by minImprovement",
    )
    time_limit_reached: bool = Field(
        default=False,
        description="the wall-clock safety net cut the search before the plan was certified "
        "within the target gap: a faster or less loaded machine may find another plan",
    )
    work_limit_reached: bool = Field(
        default=False,
        description="the search stopped at its work limit before the plan was certified within "
        "the target gap: the same inputs give this plan on any machine",
    )
    pools: list[PoolPlan]
    routes: list[Route]
    zones: list[ZoneOutcome]
    models: list[ModelOutcome]
    timing: Timing
    size: dict[str, int] = Field(description="model size after pruning")

    def replicas(self) -> dict[tuple[str, str, str], int]:
        """Replicas by (model, region, GPU type), only non-zero entries."""
        return {(p.model, p.region, p.gpu_type): p.replicas for p in self.pools if p.replicas}
