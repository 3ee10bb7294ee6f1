"""The scenario file format (YAML), validated with pydantic."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gridplace_placement.profiles import catalogue
from gridplace_placement.scenario.names import shipped_gpu_products, unknown_name

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class HourlySeriesSource(_Strict):
    """A CSV (optionally gzipped) with one row per hour and grid zone."""

    file: str = Field(description="Path, relative to the scenario file's data directory.")
    column: str = Field(description="Column holding the value.")
    time_column: str = Field(default="datetime_utc", alias="timeColumn")
    zone_column: str = Field(default="zone", alias="zoneColumn")


class RttSource(_Strict):
    """A square CSV matrix of round-trip times in ms; first column names the source region."""

    file: str


class DemandShapeSource(_Strict):
    """A load shape: request rate over time for one category, repeated over the period."""

    file: str
    category: str = Field(description="Value of the category column to use.")
    category_column: str = Field(default="category_model", alias="categoryColumn")
    offset_column: str = Field(default="t_offset_s", alias="offsetColumn")
    rate_column: str = Field(default="total_rate_req_s", alias="rateColumn")


class RequestMixSource(_Strict):
    """A request trace (arrival time, prompt tokens, generated tokens) giving the token mix."""

    file: str
    prompt_column: str = Field(default="ContextTokens", alias="promptColumn")
    output_column: str = Field(default="GeneratedTokens", alias="outputColumn")


class ScenarioRegion(_Strict):
    name: str
    grid_zone: str = Field(alias="gridZone")
    pue: Annotated[float, Field(ge=1.0, le=3.0)] = 1.2
    gpus: dict[str, NonNegativeInt] = Field(description="GPU count by GPU product.")
    gpu_hour_price_usd: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict, alias="gpuHourPriceUSD"
    )


class UserZone(_Strict):
    """Users near a region: their RTTs are that region's, their day follows their UTC offset."""

    name: str
    near_region: str = Field(alias="nearRegion")
    share: PositiveFloat = Field(description="Relative share of each model's demand.")
    utc_offset_hours: Annotated[float, Field(ge=-12, le=14)] = Field(alias="utcOffsetHours")


class ObjectiveWeights(_Strict):
    latency: Annotated[float, Field(ge=0)] = 1.0
    carbon: Annotated[float, Field(ge=0)] = 1.0
    cost: Annotated[float, Field(ge=0)] = 1.0


class ScenarioModel(_Strict):
    name: str
    profile: str = Field(description="Performance profile name shipped with gridplace_placement.")
    gpu_types: list[str] = Field(alias="gpuTypes", min_length=1)
    gpus_per_replica: Annotated[int, Field(ge=1)] = Field(default=1, alias="gpusPerReplica")
    p95_ttft_seconds: PositiveFloat = Field(alias="p95TimeToFirstTokenSeconds")
    peak_requests_per_second: PositiveFloat = Field(
        alias="peakRequestsPerSecond",
        description="Total demand across zones at the busiest hour of the shape.",
    )
    min_replicas: NonNegativeInt = Field(default=0, alias="minReplicas")
    max_replicas: Annotated[int, Field(ge=1)] = Field(default=10_000, alias="maxReplicas")
    min_regions: NonNegativeInt = Field(default=1, alias="minRegions")
    tpot_target_seconds: PositiveFloat = Field(default=0.1, alias="tpotTargetSeconds")
    weights: ObjectiveWeights = Field(
        default_factory=ObjectiveWeights,
        description="Relative weights of latency, carbon and cost in the placement objective.",
    )


class Period(_Strict):
    start: datetime
    hours: Annotated[int, Field(ge=1, le=24 * 366)]

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        """UTC, and on a whole hour: the series are hourly and hour h of the period is
        `start + h hours`, so a start between two hours would match no row."""
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if (utc.minute, utc.second, utc.microsecond) != (0, 0, 0):
            raise ValueError(f"{utc.isoformat()} is not on a whole hour (UTC)")
        return utc


class ScenarioSources(_Strict):
    carbon_intensity: HourlySeriesSource = Field(alias="carbonIntensity")
    power_price: HourlySeriesSource = Field(alias="powerPrice")
    rtt: RttSource
    demand_shape: DemandShapeSource = Field(alias="demandShape")
    request_mix: RequestMixSource = Field(alias="requestMix")


class ScenarioSpec(_Strict):
    name: str
    data_dir: str = Field(
        default=".",
        alias="dataDir",
        description="Directory of the data files, relative to the scenario file.",
    )
    period: Period
    sources: ScenarioSources
    regions: list[ScenarioRegion] = Field(min_length=1)
    user_zones: list[UserZone] = Field(alias="userZones", min_length=1)
    models: list[ScenarioModel] = Field(min_length=1)
    churn_budget: NonNegativeInt | None = Field(
        default=None, alias="churnBudget", description="Replica moves allowed per hourly re-plan."
    )
    churn_penalty: Annotated[float, Field(ge=0)] | None = Field(
        default=None,
        alias="churnPenalty",
        description="Objective cost per stopped replica (default: the placement problem's).",
    )

    @model_validator(mode="after")
    def _references_resolve(self) -> ScenarioSpec:
        names = [r.name for r in self.regions]
        if len(set(names)) != len(names):
            raise ValueError(f"regions: duplicate region name in {names}")
        for zone in self.user_zones:
            if zone.near_region not in names:
                raise ValueError(
                    f"userZones[{zone.name}].nearRegion: {zone.near_region!r} is not one of the"
                    f" scenario's regions {names}"
                )
        errors = [*self._unknown_gpu_products(), *self._unknown_profiles()]
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def _unknown_gpu_products(self) -> list[str]:
        """GPU products the shipped profiles do not know: a misspelled one would leave its GPUs
        matching no model (capacity silently lost) or a model with no GPU to run on."""
        known = shipped_gpu_products()
        named = [
            (f"regions[{r.name}].{field}", gpu)
            for r in self.regions
            for field, gpus in (("gpus", r.gpus), ("gpuHourPriceUSD", r.gpu_hour_price_usd))
            for gpu in gpus
        ]
        named += [(f"models[{m.name}].gpuTypes", gpu) for m in self.models for gpu in m.gpu_types]
        found = (unknown_name(where, "GPU product", gpu, known) for where, gpu in named)
        return [message for message in found if message]

    def _unknown_profiles(self) -> list[str]:
        known = catalogue().keys()
        found = (
            unknown_name(f"models[{m.name}].profile", "performance profile", m.profile, known)
            for m in self.models
        )
        return [message for message in found if message]

    @classmethod
    def from_file(cls, path: Path) -> ScenarioSpec:
        raw: Any = yaml.safe_load(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: a scenario file must be a YAML mapping")
        return cls.model_validate(raw)
