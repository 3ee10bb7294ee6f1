"""`Region` (cluster-scoped): where GPUs are, what their electricity emits and costs, how far
the users are."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from gridplace_operator.api.common import (
    ApiModel,
    CelRule,
    Condition,
    ConfigMapKeyRef,
    GpuType,
    Name,
    ObjectMeta,
    SecretKeyRef,
    SecretRef,
    ShortText,
    list_map,
    object_name_rule,
)

KIND = "Region"
PLURAL = "regions"
SINGULAR = "region"
SHORT_NAMES = ("gpr",)
# Carbon intensity is gCO2eq per kWh, electricity price USD per MWh: the units grid operators and
# Electricity Maps publish, so static values can be copied from their data unchanged.
CARBON_UNIT = "gCO2eq/kWh"
PRICE_UNIT = "USD/MWh"

NonNegative = Annotated[float, Field(ge=0)]


def _set_count(*values: object) -> int:
    return sum(value is not None for value in values)


class CarbonIntensityValue(ApiModel):
    """A fixed carbon intensity."""

    g_co2_per_kwh: NonNegative = Field(
        alias="gCO2PerKWh", description=f"Grid carbon intensity in {CARBON_UNIT}."
    )


class PowerPriceValue(ApiModel):
    """A fixed electricity price."""

    usd_per_mwh: float = Field(
        alias="usdPerMWh",
        ge=-1000,
        le=100_000,
        description=f"Electricity price in {PRICE_UNIT} (day-ahead prices can be negative).",
    )


class FileSource(ApiModel):
    """An hourly (or any-interval) CSV series; the value in force is the last row at or before now,
    so a forecast file works the same way as history."""

    cel_rules = (
        CelRule(
            rule="has(self.configMapRef) != has(self.url)",
            message="set exactly one of configMapRef or url",
            check=lambda s: _set_count(s.config_map_ref, s.url) == 1,
        ),
        CelRule(
            rule="has(self.zoneColumn) == has(self.zone)",
            message="zoneColumn and zone go together: set both or neither",
            check=lambda s: (s.zone_column is None) == (s.zone is None),
        ),
    )

    config_map_ref: ConfigMapKeyRef | None = Field(
        default=None, description="A ConfigMap key holding the CSV (gzip not supported there)."
    )
    url: Annotated[str, Field(max_length=2048, pattern=r"^https?://")] | None = Field(
        default=None, description="An http(s) URL serving the CSV (gzip by .gz suffix)."
    )
    time_column: Annotated[str, Field(min_length=1, max_length=253)] = Field(
        default="datetime_utc", description="Column with the UTC time of each row (ISO 8601)."
    )
    value_column: Annotated[str, Field(min_length=1, max_length=253)] = Field(
        description="Column with the value, in the unit of the signal."
    )
    zone_column: Annotated[str, Field(min_length=1, max_length=253)] | None = Field(
        default=None, description="Column naming the grid zone, when the file holds several."
    )
    zone: Annotated[str, Field(min_length=1, max_length=253)] | None = Field(
        default=None, description="Rows whose zoneColumn equals this are used."
    )


class PrometheusSource(ApiModel):
    """A PromQL query returning one sample (a scalar or a one-element vector)."""

    query: Annotated[str, Field(min_length=1, max_length=4096)] = Field(
        description="PromQL; the result must already be in the unit of the signal."
    )


class ElectricityMapsSource(ApiModel):
    """Electricity Maps API (latest carbon intensity or day-ahead price of a zone)."""

    zone: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        description="Electricity Maps zone key, e.g. DE or US-MIDA-PJM."
    )
    api_key_secret_ref: SecretKeyRef = Field(description="Secret key holding the API token.")


class WattTimeSource(ApiModel):
    """WattTime API (marginal operating emissions rate of a balancing authority)."""

    region: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        description="WattTime region (balancing authority) abbreviation, e.g. CAISO_NORTH."
    )
    credentials_secret_ref: SecretRef = Field(
        description="Secret with keys `username` and `password` for WattTime's login."
    )


_ONE_SOURCE = "set exactly one source: static, file, prometheus, electricityMaps"


class CarbonIntensitySource(ApiModel):
    """Where the region's grid carbon intensity comes from: exactly one source, plus how old a
    value may get and what to use when it is older (or the source fails)."""

    cel_rules = (
        CelRule(
            rule=(
                "[has(self.static), has(self.file), has(self.prometheus),"
                " has(self.electricityMaps), has(self.wattTime)].filter(x, x).size() == 1"
            ),
            message=f"{_ONE_SOURCE} or wattTime",
            check=lambda s: (
                _set_count(s.static, s.file, s.prometheus, s.electricity_maps, s.watt_time) == 1
            ),
        ),
    )

    static: CarbonIntensityValue | None = Field(default=None, description="A fixed value.")
    file: FileSource | None = Field(default=None, description=f"A CSV series in {CARBON_UNIT}.")
    prometheus: PrometheusSource | None = Field(
        default=None, description=f"A Prometheus query in {CARBON_UNIT}."
    )
    electricity_maps: ElectricityMapsSource | None = Field(
        default=None,
        description="Electricity Maps' latest carbon intensity (life-cycle), then its forecast.",
    )
    watt_time: WattTimeSource | None = Field(
        default=None,
        description=(
            "WattTime's marginal emissions rate (latest, then forecast), converted from lbs/MWh"
            " to gCO2eq/kWh."
        ),
    )
    max_age_seconds: Annotated[int, Field(ge=60, le=7 * 86_400)] = Field(
        default=7_200,
        description="A value older than this is stale: the fallback is used instead.",
    )
    fallback: CarbonIntensityValue | None = Field(
        default=None,
        description=(
            "Used while the value is stale or missing. Without a fallback the last known value"
            " stays in use and SignalsHealthy turns False."
        ),
    )


class PowerPriceSource(ApiModel):
    """Where the region's electricity price comes from: exactly one source, plus how old a value
    may get and what to use when it is older (or the source fails)."""

    cel_rules = (
        CelRule(
            rule=(
                "[has(self.static), has(self.file), has(self.prometheus),"
                " has(self.electricityMaps)].filter(x, x).size() == 1"
            ),
            message=_ONE_SOURCE,
            check=lambda s: _set_count(s.static, s.file, s.prometheus, s.electricity_maps) == 1,
        ),
        CelRule(
            rule="!has(self.currency) || has(self.file) || has(self.prometheus)",
            message=(
                "currency applies to file and prometheus sources (static is in USD/MWh,"
                " Electricity Maps names the currency of its prices)"
            ),
            check=lambda s: s.currency is None or s.file is not None or s.prometheus is not None,
        ),
    )

    static: PowerPriceValue | None = Field(default=None, description="A fixed value.")
    file: FileSource | None = Field(
        default=None, description=f"A CSV series in {PRICE_UNIT} (or `currency` per MWh)."
    )
    prometheus: PrometheusSource | None = Field(
        default=None, description=f"A Prometheus query in {PRICE_UNIT} (or `currency` per MWh)."
    )
    electricity_maps: ElectricityMapsSource | None = Field(
        default=None,
        description="Electricity Maps' day-ahead price of the zone, then its forecast.",
    )
    currency: Annotated[str, Field(max_length=3, pattern=r"^[A-Z]{3}$")] | None = Field(
        default=None,
        description=(
            "ISO 4217 currency of a file or prometheus source's values (per MWh), e.g. EUR;"
            " default USD. They are converted with the operator's rate table"
            " (GRIDPLACE_USD_PER_CURRENCY); a currency without a rate fails the read."
        ),
    )
    max_age_seconds: Annotated[int, Field(ge=60, le=7 * 86_400)] = Field(
        default=7_200,
        description="A value older than this is stale: the fallback is used instead.",
    )
    fallback: PowerPriceValue | None = Field(
        default=None,
        description=(
            "Used while the value is stale or missing. Without a fallback the last known value"
            " stays in use and SignalsHealthy turns False."
        ),
    )


class UserZoneRtt(ApiModel):
    """Round-trip time from a user zone to this region."""

    zone: Name = Field(description="User zone, as named in InferenceDeployment demand.")
    ms: Annotated[float, Field(ge=0, le=10_000)] = Field(
        description="Median network round-trip time in milliseconds."
    )


class GpuHourPrice(ApiModel):
    """What one GPU of a type costs per hour in this region, beyond its electricity."""

    gpu_type: GpuType = Field(description="Value of the node label nvidia.com/gpu.product.")
    usd_per_hour: NonNegative = Field(alias="usdPerHour", description="USD per GPU-hour.")


class RegionSpec(ApiModel):
    """Desired state of a Region."""

    cluster: Name | None = Field(
        default=None,
        description=(
            "The member cluster whose nodes are this region's, by its Karmada Cluster name"
            " (fleet mode: gridplace runs against the Karmada API server and propagates each"
            " region's children to its member). Omitted: the cluster gridplace runs against."
        ),
    )
    node_selector: dict[str, Annotated[str, Field(max_length=63)]] | None = Field(
        default=None,
        max_length=16,
        description=(
            "Labels selecting this region's nodes. Defaults to"
            " topology.kubernetes.io/region set to the Region's name."
        ),
    )
    pue: Annotated[float, Field(ge=1.0, le=3.0)] = Field(
        default=1.2,
        description=("Power usage effectiveness of the data centre: facility power over IT power."),
    )
    carbon_intensity: CarbonIntensitySource
    power_price: PowerPriceSource
    gpu_hour_prices: list[GpuHourPrice] = Field(
        default_factory=list,
        max_length=32,
        description=(
            "Price per GPU-hour by GPU type (rent or amortised cost). GPU types not listed cost"
            " only their electricity."
        ),
        json_schema_extra=list_map("gpuType"),
    )
    rtt: list[UserZoneRtt] = Field(
        default_factory=list,
        max_length=256,
        description=(
            "Round-trip time from each user zone to this region. Zones not listed cannot be"
            " served from here."
        ),
        json_schema_extra=list_map("zone"),
    )


SignalSourceKind = Literal[
    "Static", "File", "Prometheus", "ElectricityMaps", "WattTime", "Forecast", "Fallback"
]


class SignalStatus(ApiModel):
    """The value of one signal gridplace is using now, and where it came from."""

    value: float = Field(description="The value in use, in `unit`.")
    unit: Annotated[str, Field(max_length=32)] = Field(description="gCO2eq/kWh or USD/MWh.")
    source: SignalSourceKind = Field(
        description=(
            "Which source produced the value in use; Forecast is the source's forecast for now,"
            " used while its latest value is missing or older than maxAgeSeconds."
        )
    )
    observed_at: datetime = Field(description="Time the value refers to (as the source says).")
    age_seconds: Annotated[int, Field(ge=0)] = Field(
        description="Age of the value when status was written."
    )
    stale: bool = Field(description="True when the value is older than maxAgeSeconds.")
    message: ShortText = Field(default="", description="The last error from the source, if any.")


class RegionSignals(ApiModel):
    """Current signal values."""

    carbon_intensity: SignalStatus | None = Field(
        default=None, description=f"Carbon intensity in use ({CARBON_UNIT})."
    )
    power_price: SignalStatus | None = Field(
        default=None, description=f"Electricity price in use ({PRICE_UNIT})."
    )


class GpuInventory(ApiModel):
    """GPUs of one type found on this region's nodes."""

    gpu_type: GpuType = Field(description="Value of the node label nvidia.com/gpu.product.")
    nodes: Annotated[int, Field(ge=0)] = Field(description="Ready nodes with this GPU type.")
    allocatable: Annotated[int, Field(ge=0)] = Field(
        description="Sum of allocatable nvidia.com/gpu on those nodes."
    )
    available: Annotated[int, Field(ge=0)] = Field(
        description="Allocatable minus what pods not managed by gridplace request."
    )


class RegionStatus(ApiModel):
    """Observed state of a Region, written by gridplace."""

    observed_generation: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="metadata.generation this status was computed from."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description="Ready and SignalsHealthy; see docs/api-conventions.md for reasons.",
        json_schema_extra=list_map("type"),
    )
    gpus: list[GpuInventory] = Field(
        default_factory=list,
        max_length=32,
        description="GPUs found on the nodes matched by nodeSelector, per GPU type.",
        json_schema_extra=list_map("gpuType"),
    )
    gpu_summary: ShortText = Field(
        default="", description="The GPUs in one line, e.g. NVIDIA-H100-80GB-HBM3=16."
    )
    signals: RegionSignals = Field(
        default_factory=RegionSignals, description="Signal values in use now."
    )
    stale: bool = Field(default=False, description="True when any signal in use is stale.")


MAX_REGION_NAME = 20


class Region(ApiModel):
    """A region gridplace may place replicas in."""

    cel_rules = (object_name_rule(MAX_REGION_NAME),)

    api_version: Literal["gridplace.dev/v1alpha1"] = "gridplace.dev/v1alpha1"
    kind: Literal["Region"] = "Region"
    metadata: ObjectMeta
    spec: RegionSpec
    status: RegionStatus | None = None

    def node_selector(self) -> dict[str, str]:
        """The nodeSelector, with the default filled in."""
        return self.spec.node_selector or {"topology.kubernetes.io/region": self.metadata.name}

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> Region:
        return cls.model_validate(body)
