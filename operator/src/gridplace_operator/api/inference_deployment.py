"""`InferenceDeployment` (namespaced): a vLLM-served model with an SLO, placed by gridplace."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from gridplace_operator.api.common import (
    LIST_ATOMIC,
    LIST_SET,
    ApiModel,
    CelRule,
    Condition,
    GpuType,
    Name,
    ObjectMeta,
    ShortText,
    default_instance,
    list_map,
    object_name_rule,
)

KIND = "InferenceDeployment"
PLURAL = "inferencedeployments"
SINGULAR = "inferencedeployment"
SHORT_NAMES = ("idep",)
DEFAULT_IMAGE = "vllm/vllm-openai:v0.12.0"
# vLLM flags gridplace derives from the spec; setting them in args would contradict the spec.
MANAGED_VLLM_FLAGS = ("--model", "--host", "--port", "--tensor-parallel-size", "--quantization")
_CEL_MANAGED_FLAGS = "[{}]".format(", ".join(f"'{f}'" for f in MANAGED_VLLM_FLAGS))
MAX_DEPLOYMENT_NAME = 40

Seconds = Annotated[float, Field(gt=0, le=3600)]
Weight = Annotated[float, Field(ge=0, le=100)]


def _set_count(*values: object) -> int:
    return sum(value is not None for value in values)


def _managed_flag(arg: str) -> bool:
    return any(arg == f or arg.startswith(f + "=") for f in MANAGED_VLLM_FLAGS)


class LocalSecretKeyRef(ApiModel):
    """A key of a Secret in the InferenceDeployment's namespace."""

    name: Name = Field(description="Name of the Secret.")
    key: Annotated[str, Field(min_length=1, max_length=253)] = Field(
        description="Key within the Secret's data."
    )


class EnvVarSource(ApiModel):
    """Where an environment variable's value comes from."""

    secret_key_ref: LocalSecretKeyRef = Field(description="A key of a Secret (e.g. HF_TOKEN).")


class EnvVar(ApiModel):
    """An environment variable of the vLLM container."""

    cel_rules = (
        CelRule(
            rule="has(self.value) != has(self.valueFrom)",
            message="set exactly one of value or valueFrom",
            check=lambda e: _set_count(e.value, e.value_from) == 1,
        ),
    )

    name: Annotated[
        str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    ] = Field(description="Variable name.")
    value: Annotated[str, Field(max_length=32768)] | None = Field(
        default=None, description="Literal value."
    )
    value_from: EnvVarSource | None = Field(default=None, description="Value from a Secret.")


class GpuPerformance(ApiModel):
    """How one replica performs on one GPU type: the inputs of gridplace's capacity model
    (the same fields as the shipped profiles). A decode step with b sequences in the batch takes
    decodeBaseSeconds + decodePerSequenceSeconds x b."""

    cel_rules = (
        CelRule(
            rule="self.idlePowerWatts <= self.activePowerWatts",
            message="idlePowerWatts must not exceed activePowerWatts",
            values=lambda p: (
                f"idlePowerWatts={p.idle_power_watts}, activePowerWatts={p.active_power_watts}"
            ),
            check=lambda p: p.idle_power_watts <= p.active_power_watts,
            field_path=".idlePowerWatts",
        ),
    )

    gpu_type: GpuType = Field(description="Value of the node label nvidia.com/gpu.product.")
    max_batch: Annotated[int, Field(ge=1, le=65_536)] = Field(
        description="Most sequences a replica batches (vLLM --max-num-seqs)."
    )
    decode_base_seconds: Seconds = Field(
        description="Fixed part of a decode step (the step costs this plus"
        " decodePerSequenceSeconds per sequence in the batch), seconds."
    )
    decode_per_sequence_seconds: Annotated[float, Field(ge=0, le=10)] = Field(
        description="Extra decode step time per sequence in the batch, seconds."
    )
    prefill_seconds_per_token: Annotated[float, Field(ge=0, le=10)] = Field(
        description="Compute time of one prompt token within a scheduler step, seconds (prefill"
        " is compute-bound: about 2 x parameters FLOPs per token)."
    )
    max_batched_tokens: Annotated[int, Field(ge=1, le=1_048_576)] = Field(
        default=8192,
        description="Tokens one scheduler step may hold, decodes and prompt chunks together"
        " (vLLM --max-num-batched-tokens).",
    )
    active_power_watts: Annotated[float, Field(gt=0, le=1e5)] = Field(
        description="Power of the whole replica (all its GPUs) with a full batch, watts."
    )
    idle_power_watts: Annotated[float, Field(ge=0, le=1e5)] = Field(
        description="Power of the whole replica when loaded but idle, watts."
    )


class PerformanceSpec(ApiModel):
    """The capacity and power model of a replica: a built-in profile, or measured numbers."""

    cel_rules = (
        CelRule(
            rule="has(self.profile) != has(self.gpus)",
            message="set exactly one of profile or gpus",
            check=lambda p: _set_count(p.profile, p.gpus) == 1,
        ),
    )

    profile: Annotated[str, Field(min_length=1, max_length=253)] | None = Field(
        default=None,
        description=(
            "Model name in gridplace's shipped profile catalogue (listed in docs/placement.md),"
            " e.g. meta-llama/Meta-Llama-3.1-8B-Instruct."
        ),
    )
    gpus: list[GpuPerformance] | None = Field(
        default=None,
        min_length=1,
        max_length=16,
        description="Measured performance per GPU type; must cover every entry of gpuTypes.",
        json_schema_extra=list_map("gpuType"),
    )


class ModelSpec(ApiModel):
    """What to serve (vLLM image, model, parallelism) and on which GPU types."""

    cel_rules = (
        CelRule(
            rule="!has(self.gpusPerReplica) || self.gpusPerReplica % self.tensorParallelSize == 0",
            message="gpusPerReplica must be a multiple of tensorParallelSize",
            values=lambda m: (
                f"gpusPerReplica={m.gpus_per_replica}, tensorParallelSize={m.tensor_parallel_size}"
            ),
            check=lambda m: (
                m.gpus_per_replica is None or m.gpus_per_replica % m.tensor_parallel_size == 0
            ),
            field_path=".gpusPerReplica",
        ),
        CelRule(
            rule=(
                "!has(self.args) || self.args.all(a, "
                + _CEL_MANAGED_FLAGS
                + ".all(f, a != f && !a.startsWith(f + '=')))"
            ),
            message="args must not set "
            + ", ".join(MANAGED_VLLM_FLAGS)
            + ": gridplace derives them from the spec",
            check=lambda m: not any(_managed_flag(a) for a in m.args),
            field_path=".args",
            values=lambda m: "got " + ", ".join(a for a in m.args if _managed_flag(a)),
        ),
        CelRule(
            rule=(
                "!has(self.performance) || !has(self.performance.gpus)"
                " || self.gpuTypes.all(t, self.performance.gpus.exists(p, p.gpuType == t))"
            ),
            message="performance.gpus must list every GPU type in gpuTypes",
            values=lambda m: (
                "missing: "
                + ", ".join(
                    t for t in m.gpu_types if t not in {p.gpu_type for p in m.performance.gpus}
                )
            ),
            check=lambda m: (
                m.performance is None
                or m.performance.gpus is None
                or set(m.gpu_types) <= {p.gpu_type for p in m.performance.gpus}
            ),
            field_path=".performance.gpus",
        ),
    )

    name: Annotated[str, Field(min_length=1, max_length=253)] = Field(
        description="Model to serve (Hugging Face id or path), passed to vLLM as --model."
    )
    image: Annotated[str, Field(min_length=1, max_length=1024)] = Field(
        default=DEFAULT_IMAGE, description="vLLM OpenAI-compatible server image."
    )
    args: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list,
        max_length=64,
        description="Extra vLLM server arguments, e.g. --max-model-len=8192.",
        json_schema_extra=LIST_ATOMIC,
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=64,
        description="Environment variables of the vLLM container.",
        json_schema_extra=list_map("name"),
    )
    tensor_parallel_size: Annotated[int, Field(ge=1, le=64)] = Field(
        default=1, description="GPUs a model copy is split over (vLLM --tensor-parallel-size)."
    )
    quantization: (
        Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")] | None
    ) = Field(default=None, description="vLLM --quantization method, e.g. awq or fp8.")
    gpus_per_replica: Annotated[int, Field(ge=1, le=64)] | None = Field(
        default=None,
        description="nvidia.com/gpu per replica. Defaults to tensorParallelSize.",
    )
    gpu_types: list[GpuType] = Field(
        min_length=1,
        max_length=16,
        description=(
            "Acceptable GPU types, matched to the node label nvidia.com/gpu.product"
            " (e.g. NVIDIA-H100-80GB-HBM3)."
        ),
        json_schema_extra=LIST_SET,
    )
    performance: PerformanceSpec | None = Field(
        default=None,
        description=(
            "Capacity and power model of a replica. Unset: the shipped profile named like `name`."
        ),
    )

    def effective_gpus_per_replica(self) -> int:
        return self.gpus_per_replica or self.tensor_parallel_size


class SloSpec(ApiModel):
    """The latency objective: a p95 target on time to first token or on the whole request."""

    cel_rules = (
        CelRule(
            rule="has(self.p95TimeToFirstTokenSeconds) != has(self.p95EndToEndSeconds)",
            message="set exactly one of p95TimeToFirstTokenSeconds or p95EndToEndSeconds",
            check=lambda s: (
                _set_count(s.p95_time_to_first_token_seconds, s.p95_end_to_end_seconds) == 1
            ),
        ),
    )

    p95_time_to_first_token_seconds: Seconds | None = Field(
        default=None,
        description="95th percentile of time to first token, seconds, including network RTT.",
    )
    p95_end_to_end_seconds: Seconds | None = Field(
        default=None,
        description="95th percentile of whole-request latency, seconds, including network RTT.",
    )
    p95_time_per_output_token_seconds: Annotated[float, Field(gt=0, le=10)] | None = Field(
        default=None,
        description="Optional 95th percentile of time per output token, seconds; caps batching.",
    )


class ScalingSpec(ApiModel):
    """Bounds and pace of the total replica count (over all regions)."""

    cel_rules = (
        CelRule(
            rule="self.minReplicas <= self.maxReplicas",
            message="minReplicas must not exceed maxReplicas",
            values=lambda s: f"minReplicas={s.min_replicas}, maxReplicas={s.max_replicas}",
            check=lambda s: s.min_replicas <= s.max_replicas,
            field_path=".minReplicas",
        ),
        CelRule(
            rule=(
                "!has(self.replicas)"
                " || (self.minReplicas <= self.replicas && self.replicas <= self.maxReplicas)"
            ),
            message="replicas must lie within minReplicas and maxReplicas",
            values=lambda s: (
                f"replicas={s.replicas}, minReplicas={s.min_replicas}, maxReplicas={s.max_replicas}"
            ),
            check=lambda s: s.replicas is None or s.min_replicas <= s.replicas <= s.max_replicas,
            field_path=".replicas",
        ),
    )

    min_replicas: Annotated[int, Field(ge=0, le=10_000)] = Field(
        default=1, description="Fewest replicas in total."
    )
    max_replicas: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=10, description="Most replicas in total."
    )
    replicas: Annotated[int, Field(ge=0, le=10_000)] | None = Field(
        default=None,
        description=(
            "Pins the total replica count and turns gridplace's autoscaler off; gridplace still"
            " decides where they run. This is the field `kubectl scale` and the scale"
            " subresource write (e.g. for an external autoscaler). gridplace never writes it."
        ),
    )
    scale_up_stabilization_seconds: Annotated[int, Field(ge=0, le=3600)] = Field(
        default=30, description="Scale up only on what held for this long."
    )
    scale_down_stabilization_seconds: Annotated[int, Field(ge=0, le=86_400)] = Field(
        default=300, description="Scale down only on what held for this long."
    )
    max_step: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=4, description="Most replicas added or removed by one scaling decision."
    )
    tolerance_percent: Annotated[int, Field(ge=0, le=100)] = Field(
        default=10, description="Observed p95 within this percentage of the target is on target."
    )


class AvailabilitySpec(ApiModel):
    """A floor on how spread out the replicas are."""

    min_regions: Annotated[int, Field(ge=1, le=64)] = Field(
        default=1, description="Regions that must run replicas."
    )
    min_replicas_per_region: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=1, description="Fewest replicas in each region that runs any."
    )
    survive_region_loss: bool = Field(
        default=False,
        description=(
            "Plan so that losing any one region leaves enough capacity for the demand within"
            " the SLO (implies at least two regions)."
        ),
    )

    def regions_needed(self) -> int:
        return max(self.min_regions, 2 if self.survive_region_loss else 1)


class ObjectiveWeights(ApiModel):
    """Relative weights of the normalised objective terms."""

    cel_rules = (
        CelRule(
            rule="self.latency + self.carbon + self.cost > 0.0",
            message="at least one weight must be positive",
            check=lambda w: w.latency + w.carbon + w.cost > 0,
        ),
    )

    latency: Weight = Field(default=1.0, description="Weight of user latency.")
    carbon: Weight = Field(default=1.0, description="Weight of emissions (gCO2eq).")
    cost: Weight = Field(default=1.0, description="Weight of cost (electricity and GPU-hours).")


class ChurnSpec(ApiModel):
    """How much re-placement is worth: moves disrupt caches and warm replicas."""

    max_moves_per_hour: Annotated[int, Field(ge=0, le=10_000)] = Field(
        default=8,
        description=(
            "Most running replicas re-plans may stop in any hour to move capacity between"
            " regions or GPU types (0 freezes the placement; scaling is not limited by this)."
        ),
    )


# AvailabilitySpec.regions_needed() in CEL.
_CEL_REGIONS_NEEDED = (
    "(self.availability.surviveRegionLoss && self.availability.minRegions < 2"
    " ? 2 : self.availability.minRegions)"
)


class PlacementSpec(ApiModel):
    """Where replicas may go and how the placement is chosen."""

    cel_rules = (
        CelRule(
            rule=(
                "!has(self.allowedRegions) || !has(self.forbiddenRegions)"
                " || self.allowedRegions.all(r, !(r in self.forbiddenRegions))"
            ),
            message="a region cannot be both allowed and forbidden",
            values=lambda p: (
                "both: " + ", ".join(r for r in p.allowed_regions or () if r in p.forbidden_regions)
            ),
            check=lambda p: not set(p.allowed_regions or ()) & set(p.forbidden_regions),
            field_path=".forbiddenRegions",
        ),
        CelRule(
            rule=(
                f"!has(self.allowedRegions) || {_CEL_REGIONS_NEEDED} <= self.allowedRegions.size()"
            ),
            message="availability needs more regions than allowedRegions lists",
            values=lambda p: (
                f"needs {p.availability.regions_needed()}, lists {len(p.allowed_regions)}"
            ),
            check=lambda p: (
                p.allowed_regions is None
                or p.availability.regions_needed() <= len(p.allowed_regions)
            ),
            field_path=".allowedRegions",
        ),
    )

    mode: Literal["Enforce", "Advise"] = Field(
        default="Enforce",
        description=(
            "Enforce: run the planned replicas. Advise: write the plan to status only and touch"
            " no workload."
        ),
    )
    allowed_regions: list[Name] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Region names replicas may run in. Unset: every Region.",
        json_schema_extra=LIST_SET,
    )
    forbidden_regions: list[Name] = Field(
        default_factory=list,
        max_length=64,
        description="Region names replicas must never run in (e.g. for data residency).",
        json_schema_extra=LIST_SET,
    )
    availability: AvailabilitySpec = Field(
        default_factory=AvailabilitySpec,
        json_schema_extra=default_instance(AvailabilitySpec),
    )
    weights: ObjectiveWeights = Field(
        default_factory=ObjectiveWeights,
        json_schema_extra=default_instance(ObjectiveWeights),
    )
    churn: ChurnSpec = Field(
        default_factory=ChurnSpec,
        json_schema_extra=default_instance(ChurnSpec),
    )


class ZoneDemand(ApiModel):
    """Request rate from one user zone."""

    zone: Name = Field(description="User zone; Regions list their RTT to it.")
    requests_per_second: Annotated[float, Field(ge=0, le=1e6)] = Field(
        description="Requests per second from this zone."
    )


class MeasuredDemand(ApiModel):
    """Demand measured by Prometheus, per user zone."""

    query: Annotated[str, Field(min_length=1, max_length=4096)] = Field(
        description=(
            "PromQL returning requests per second by user zone, e.g."
            ' sum by (zone) (rate(gateway_requests_total{model="llama"}[5m])).'
        )
    )
    zone_label: Name = Field(default="zone", description="Label of the result naming the zone.")


class DemandSpec(ApiModel):
    """Who sends requests, how many, and what they look like. With both static and prometheus,
    the measured rates are used and the static ones are the fallback while Prometheus fails."""

    cel_rules = (
        CelRule(
            rule="has(self.static) || has(self.prometheus)",
            message="set static, prometheus or both",
            check=lambda d: d.static is not None or d.prometheus is not None,
        ),
    )

    static: list[ZoneDemand] | None = Field(
        default=None,
        max_length=256,
        description="Fixed request rates per user zone.",
        json_schema_extra=list_map("zone"),
    )
    prometheus: MeasuredDemand | None = Field(
        default=None, description="Measured request rates per user zone."
    )
    mean_prompt_tokens: Annotated[int, Field(ge=1, le=10_000_000)] = Field(
        default=1024, description="Mean prompt length, tokens."
    )
    mean_output_tokens: Annotated[int, Field(ge=1, le=10_000_000)] = Field(
        default=256, description="Mean generated length, tokens."
    )


class InferenceDeploymentSpec(ApiModel):
    """Desired state of an InferenceDeployment. gridplace never writes it."""

    cel_rules = (
        CelRule(
            rule=(
                "self.placement.availability.minRegions"
                " * self.placement.availability.minReplicasPerRegion"
                " <= self.scaling.maxReplicas"
            ),
            message=(
                "placement.availability needs more replicas (minRegions x minReplicasPerRegion)"
                " than scaling.maxReplicas allows"
            ),
            check=lambda s: (
                s.placement.availability.min_regions
                * s.placement.availability.min_replicas_per_region
                <= s.scaling.max_replicas
            ),
            field_path=".placement.availability",
            values=lambda s: (
                f"minRegions={s.placement.availability.min_regions},"
                f" minReplicasPerRegion={s.placement.availability.min_replicas_per_region},"
                f" maxReplicas={s.scaling.max_replicas}"
            ),
        ),
    )

    model: ModelSpec
    slo: SloSpec
    scaling: ScalingSpec = Field(
        default_factory=ScalingSpec,
        json_schema_extra=default_instance(ScalingSpec),
    )
    placement: PlacementSpec = Field(
        default_factory=PlacementSpec,
        json_schema_extra=default_instance(PlacementSpec),
    )
    demand: DemandSpec


class RegionPlacement(ApiModel):
    """Replicas planned in one region on one GPU type."""

    region: Name = Field(description="Region name.")
    gpu_type: GpuType = Field(description="GPU type (nvidia.com/gpu.product).")
    desired_replicas: Annotated[int, Field(ge=0)] = Field(description="Replicas planned.")
    ready_replicas: Annotated[int, Field(ge=0)] = Field(
        default=0, description="Replicas ready now (0 in Advise mode)."
    )
    requests_per_second: Annotated[float, Field(ge=0)] = Field(
        default=0.0, description="Demand routed here by the plan."
    )
    reason: ShortText = Field(
        default="", description="Why this region got this many: the binding constraint or cost."
    )


class ZoneRoute(ApiModel):
    """Part of a user zone's demand routed to a region."""

    zone: Name = Field(description="User zone.")
    region: Name = Field(description="Region serving it.")
    requests_per_second: Annotated[float, Field(ge=0)] = Field(description="Routed rate.")
    rtt_ms: Annotated[float, Field(ge=0)] = Field(alias="rttMs", description="RTT, ms.")


class Prediction(ApiModel):
    """What the plan is expected to deliver, from the capacity and power model."""

    p95_seconds: Annotated[float, Field(ge=0)] | None = Field(
        default=None, description="Predicted p95 of the SLO metric, seconds (worst zone)."
    )
    g_co2_per_hour: Annotated[float, Field(ge=0)] | None = Field(
        default=None, alias="gCO2PerHour", description="Predicted emissions, gCO2eq per hour."
    )
    usd_per_hour: Annotated[float, Field(ge=0)] | None = Field(
        default=None, alias="usdPerHour", description="Predicted cost, USD per hour."
    )


class AutoscalerStatus(ApiModel):
    """The autoscaler's last decision and its inputs."""

    desired_replicas: Annotated[int, Field(ge=0)] = Field(
        description="Total replicas of the plan made for this decision (the joint solve chooses"
        " the count and the GPU types together)."
    )
    planned_requests_per_second: Annotated[float, Field(ge=0)] | None = Field(
        default=None,
        description="The request rate the plan is sized for: the measured (else declared)"
        " demand with the tolerance as headroom, stabilized.",
    )
    observed_p95_seconds: Annotated[float, Field(ge=0)] | None = Field(
        default=None, description="p95 of the SLO metric measured by Prometheus, seconds."
    )
    observed_requests_per_second: Annotated[float, Field(ge=0)] | None = Field(
        default=None, description="Request rate measured by Prometheus."
    )
    reason: ShortText = Field(
        default="",
        description="The reason of the decision, as in the Scaled condition: OnTarget, ScalingUp,"
        " ScalingDown, AtMaxReplicas, SLOBreached, SLOUnreachable, MetricsUnavailable or Pinned.",
    )
    last_scale_time: datetime | None = Field(
        default=None, description="When the total last changed."
    )


class InferenceDeploymentStatus(ApiModel):
    """Observed state, written by gridplace."""

    observed_generation: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="metadata.generation this status was computed from."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description="Ready, Placed, Scaled and SignalsHealthy (see docs/api-conventions.md).",
        json_schema_extra=list_map("type"),
    )
    replicas: Annotated[int, Field(ge=0)] = Field(
        default=0, description="Replicas planned in total."
    )
    ready_replicas: Annotated[int, Field(ge=0)] = Field(
        default=0, description="Replicas ready in total."
    )
    selector: ShortText = Field(
        default="", description="Label selector of the model's pods (for the scale subresource)."
    )
    placement_summary: ShortText = Field(
        default="", description="The plan in one line, e.g. us-east-1=3,eu-central-1=2."
    )
    placement: list[RegionPlacement] = Field(
        default_factory=list,
        max_length=256,
        description="The plan per region and GPU type.",
        json_schema_extra=list_map("region", "gpuType"),
    )
    traffic: list[ZoneRoute] = Field(
        default_factory=list,
        max_length=1024,
        description="How each user zone's demand is split over regions.",
        json_schema_extra=LIST_ATOMIC,
    )
    predicted: Prediction = Field(
        default_factory=Prediction, description="Predicted p95, emissions and cost."
    )
    unmet_requests_per_second: Annotated[float, Field(ge=0)] = Field(
        default=0.0, description="Demand the plan cannot serve within the SLO."
    )
    explanation: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list,
        max_length=64,
        description="Why the plan is what it is, one sentence per entry.",
        json_schema_extra=LIST_ATOMIC,
    )
    last_plan_time: datetime | None = Field(default=None, description="When the plan was made.")
    autoscaler: AutoscalerStatus | None = Field(
        default=None, description="The autoscaler's last decision."
    )


class InferenceDeployment(ApiModel):
    """A model served by vLLM, placed across regions by gridplace."""

    cel_rules = (object_name_rule(MAX_DEPLOYMENT_NAME),)

    api_version: Literal["gridplace.dev/v1alpha1"] = "gridplace.dev/v1alpha1"
    kind: Literal["InferenceDeployment"] = "InferenceDeployment"
    metadata: ObjectMeta
    spec: InferenceDeploymentSpec
    status: InferenceDeploymentStatus | None = None

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> InferenceDeployment:
        return cls.model_validate(body)
