"""`InferenceDeployment` (namespaced): a vLLM-served model with an SLO, placed by gridplace."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

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
# The vLLM release gridplace renders its pods for (docs/operator.md says why this one); the
# flags it passes are checked against this release's `vllm serve` reference (data/vllm_flags.json).
VLLM_VERSION = "v0.30.0"
DEFAULT_IMAGE = f"vllm/vllm-openai:{VLLM_VERSION}"
# vLLM flags gridplace derives from the spec and the plan's profile; setting them in args would
# contradict them (the plan sizes replicas for the batch limits it passes).
MANAGED_VLLM_FLAGS = (
    "--model",
    "--host",
    "--port",
    "--served-model-name",
    "--tensor-parallel-size",
    "--quantization",
    "--max-num-seqs",
    "--max-num-batched-tokens",
    "--max-model-len",
)
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
        description="Extra vLLM server arguments, e.g. --enable-prefix-caching.",
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
    served_model_name: Annotated[str, Field(min_length=1, max_length=253)] | None = Field(
        default=None,
        description="The model name clients send in requests (vLLM --served-model-name)."
        " Defaults to name.",
    )
    max_model_len: Annotated[int, Field(ge=1, le=16_777_216)] | None = Field(
        default=None,
        description="Longest sequence, prompt and output together, in tokens (vLLM"
        " --max-model-len). Unset: the model's own context length.",
    )
    weights_gib: Annotated[float, Field(gt=0, le=65_536)] | None = Field(
        default=None,
        description="Size of the model's weights, GiB: sizes the pod's memory request and"
        " startup probe (docs/operator.md). Unset: estimated from the parameter count in"
        " name (e.g. 8B) and the quantization, else 16 GiB per GPU.",
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

    def effective_served_model_name(self) -> str:
        return self.served_model_name or self.name


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


# What of the pod gridplace owns, so the overlay (spec.pod) cannot set it: the labels its
# selectors and Services match and the annotations it reads back or that Prometheus scrapes by;
# the node labels that place a replica in its region and on its GPU type; its /dev/shm volume.
OWNED_LABEL_PREFIX = "gridplace.dev/"
OWNED_POD_LABELS = (
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/name",
)
OWNED_POD_ANNOTATIONS = ("prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path")
OWNED_NODE_LABELS = ("topology.kubernetes.io/region", "nvidia.com/gpu.product")
SHM_VOLUME = "dshm"
SHM_PATH = "/dev/shm"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
LabelMap = dict[str, Annotated[str, Field(max_length=253)]]


def _cel_list(values: tuple[str, ...]) -> str:
    return "[{}]".format(", ".join(f"'{v}'" for v in values))


def _owned_keys(keys: object, exact: tuple[str, ...], prefix: str | None = None) -> list[str]:
    """The keys of a user's map that gridplace sets itself."""
    return sorted(
        str(k)
        for k in keys  # type: ignore[attr-defined]
        if k in exact or (prefix is not None and str(k).startswith(prefix))
    )


class Toleration(ApiModel):
    """A toleration added to gridplace's own (which tolerates the nvidia.com/gpu taint)."""

    cel_rules = (
        CelRule(
            rule="self.operator != 'Exists' || !has(self.value)",
            message="a toleration with operator Exists takes no value",
            check=lambda t: t.operator != "Exists" or t.value is None,
        ),
        CelRule(
            rule="has(self.key) || self.operator == 'Exists'",
            message="a toleration without a key must use operator Exists",
            check=lambda t: t.key is not None or t.operator == "Exists",
        ),
    )

    key: Annotated[str, Field(min_length=1, max_length=316)] | None = Field(
        default=None, description="Taint key; unset with operator Exists: every taint."
    )
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Exists or Equal.")
    value: Annotated[str, Field(max_length=63)] | None = Field(
        default=None, description="Taint value (operator Equal)."
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect; unset: every effect."
    )
    toleration_seconds: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="How long a NoExecute taint is tolerated; unset: forever."
    )


class Volume(ApiModel):
    """A pod volume as core/v1 Volume defines it (name and one source, e.g. persistentVolumeClaim,
    configMap, secret, emptyDir); the API server checks the source when gridplace applies the
    Deployment."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )

    name: Name = Field(description="Volume name, unique in the pod.")


class VolumeMount(ApiModel):
    """Where a volume of spec.pod.volumes appears in the vLLM container."""

    name: Name = Field(description="Name of a volume in spec.pod.volumes.")
    mount_path: Annotated[str, Field(min_length=2, max_length=4096, pattern=r"^/")] = Field(
        description="Absolute path in the container."
    )
    read_only: bool = Field(default=False, description="Mount read-only.")
    sub_path: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        default=None, description="Path within the volume to mount instead of its root."
    )


class PodResources(ApiModel):
    """Overrides of the CPU and memory gridplace derives from the model (docs/operator.md)."""

    cpu: Annotated[str, Field(max_length=32, pattern=QUANTITY_PATTERN)] | None = Field(
        default=None, description="CPU request of the vLLM container, e.g. 8 or 7500m."
    )
    memory: Annotated[str, Field(max_length=32, pattern=QUANTITY_PATTERN)] | None = Field(
        default=None,
        description="Memory request and limit of the vLLM container, e.g. 64Gi (it must hold"
        " the /dev/shm volume too).",
    )


class PodOverlay(ApiModel):
    """What users add to the pods gridplace renders. gridplace keeps what it owns (container,
    image, arguments, probes, GPUs, region and GPU node selection, /dev/shm, security context)
    and merges these in; docs/operator.md lists every field of the pod and who owns it."""

    cel_rules = (
        CelRule(
            rule=(
                "!has(self.labels) || self.labels.all(k, !k.startsWith('"
                + OWNED_LABEL_PREFIX
                + "') && !(k in "
                + _cel_list(OWNED_POD_LABELS)
                + "))"
            ),
            message="labels must not set gridplace's own: "
            + ", ".join((OWNED_LABEL_PREFIX + "*", *OWNED_POD_LABELS)),
            check=lambda p: not _owned_keys(p.labels, OWNED_POD_LABELS, OWNED_LABEL_PREFIX),
            field_path=".labels",
            values=lambda p: (
                "got " + ", ".join(_owned_keys(p.labels, OWNED_POD_LABELS, OWNED_LABEL_PREFIX))
            ),
        ),
        CelRule(
            rule=(
                "!has(self.annotations) || self.annotations.all(k, !k.startsWith('"
                + OWNED_LABEL_PREFIX
                + "') && !(k in "
                + _cel_list(OWNED_POD_ANNOTATIONS)
                + "))"
            ),
            message="annotations must not set gridplace's own: "
            + ", ".join((OWNED_LABEL_PREFIX + "*", *OWNED_POD_ANNOTATIONS)),
            check=lambda p: (
                not _owned_keys(p.annotations, OWNED_POD_ANNOTATIONS, OWNED_LABEL_PREFIX)
            ),
            field_path=".annotations",
            values=lambda p: (
                "got "
                + ", ".join(_owned_keys(p.annotations, OWNED_POD_ANNOTATIONS, OWNED_LABEL_PREFIX))
            ),
        ),
        CelRule(
            rule="!has(self.nodeSelector) || self.nodeSelector.all(k, !(k in "
            + _cel_list(OWNED_NODE_LABELS)
            + "))",
            message="nodeSelector must not set "
            + ", ".join(OWNED_NODE_LABELS)
            + ": gridplace selects the region (the Region's nodeSelector) and the GPU type"
            " the plan chose",
            check=lambda p: not _owned_keys(p.node_selector, OWNED_NODE_LABELS),
            field_path=".nodeSelector",
            values=lambda p: "got " + ", ".join(_owned_keys(p.node_selector, OWNED_NODE_LABELS)),
        ),
        CelRule(
            rule=f"!has(self.volumes) || self.volumes.all(v, v.name != '{SHM_VOLUME}')",
            message=f"volume name {SHM_VOLUME} is gridplace's (its /dev/shm)",
            check=lambda p: all(v.name != SHM_VOLUME for v in p.volumes),
            field_path=".volumes",
        ),
        CelRule(
            rule=(
                f"!has(self.volumeMounts) || self.volumeMounts.all(m, m.mountPath != '{SHM_PATH}')"
            ),
            message=f"{SHM_PATH} is gridplace's (a memory-backed volume sized for tensor"
            " parallelism)",
            check=lambda p: all(m.mount_path.rstrip("/") != SHM_PATH for m in p.volume_mounts),
            field_path=".volumeMounts",
        ),
        CelRule(
            rule=(
                "!has(self.volumeMounts) || self.volumeMounts.all(m,"
                " has(self.volumes) && self.volumes.exists(v, v.name == m.name))"
            ),
            message="every volumeMount must name a volume of spec.pod.volumes",
            check=lambda p: {m.name for m in p.volume_mounts} <= {v.name for v in p.volumes},
            field_path=".volumeMounts",
            values=lambda p: (
                "missing: "
                + ", ".join(sorted({m.name for m in p.volume_mounts} - {v.name for v in p.volumes}))
            ),
        ),
    )

    labels: LabelMap = Field(
        default_factory=dict,
        max_length=64,
        description="Labels added to the pods (not to the Deployment).",
    )
    annotations: LabelMap = Field(
        default_factory=dict, max_length=64, description="Annotations added to the pods."
    )
    node_selector: LabelMap = Field(
        default_factory=dict,
        max_length=32,
        description="Node labels the pods also require, besides the region's and the GPU"
        " type's. Where the Region's nodeSelector names the same key, the Region's value wins.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=32,
        description="Tolerations added to gridplace's (nvidia.com/gpu:NoSchedule).",
        json_schema_extra=LIST_ATOMIC,
    )
    affinity: dict[str, Any] | None = Field(
        default=None,
        description="The pods' affinity, as core/v1 Affinity (nodeAffinity, podAffinity,"
        " podAntiAffinity); the API server checks it when gridplace applies the Deployment.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    volumes: list[Volume] = Field(
        default_factory=list,
        max_length=32,
        description="Volumes added to the pod (gridplace's own is dshm).",
        json_schema_extra=list_map("name"),
    )
    volume_mounts: list[VolumeMount] = Field(
        default_factory=list,
        max_length=32,
        description="Mounts of those volumes in the vLLM container.",
        json_schema_extra=list_map("mountPath"),
    )
    service_account_name: Name | None = Field(
        default=None,
        description="ServiceAccount the pods run as. Its token is still not mounted"
        " (automountServiceAccountToken: false); mount a projected token volume if needed.",
    )
    image_pull_secrets: list[Name] = Field(
        default_factory=list,
        max_length=16,
        description="Secrets in the namespace to pull the image with.",
        json_schema_extra=LIST_SET,
    )
    priority_class_name: Annotated[str, Field(min_length=1, max_length=253)] | None = Field(
        default=None, description="PriorityClass of the pods."
    )
    resources: PodResources = Field(
        default_factory=PodResources,
        description="CPU and memory overrides; unset values are derived from the model.",
    )
    startup_timeout_seconds: Annotated[int, Field(ge=60, le=86_400)] | None = Field(
        default=None,
        description="How long a replica may take to load its weights and become healthy"
        " before the kubelet restarts it. Unset: derived from the weights' size.",
    )


HOSTNAME_PATTERN = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
Hostname = Annotated[str, Field(min_length=1, max_length=253, pattern=HOSTNAME_PATTERN)]


class GatewayRef(ApiModel):
    """A Gateway (gateway.networking.k8s.io/v1) through which a user zone's requests enter."""

    name: Name = Field(description="Name of the Gateway.")
    namespace: Name | None = Field(
        default=None,
        description="Namespace of the Gateway. Unset: the InferenceDeployment's. A Gateway in"
        " another namespace must allow routes from this one (its listeners' allowedRoutes).",
    )
    section_name: Name | None = Field(
        default=None,
        description="Listener of the Gateway the routes attach to. Unset: every listener.",
    )


class ZoneEntry(ApiModel):
    """Where the requests of one user zone enter the platform."""

    zone: Name = Field(description="User zone, as named in demand and in the Regions' rtt.")
    gateway: GatewayRef = Field(description="The Gateway serving this zone's users.")


class RoutingSpec(ApiModel):
    """How users' requests reach the replicas: for each entry, gridplace writes an HTTPRoute
    `<name>-<zone>` on that zone's Gateway whose weighted backends are the plan's split of that
    zone's demand over the regions' Services (docs/traffic.md)."""

    entries: list[ZoneEntry] = Field(
        min_length=1,
        max_length=256,
        description="One entry per user zone: the Gateway its requests arrive at. Every zone of"
        " demand needs one (condition Routed, reason ZoneWithoutEntry).",
        json_schema_extra=list_map("zone"),
    )
    hostnames: list[Hostname] = Field(
        default_factory=list,
        max_length=16,
        description="Host names that select this model on the Gateways (HTTPRoute hostnames)."
        " Unset: any host the listener accepts. Two InferenceDeployments may not claim the same"
        " host and path on one Gateway (reason HostnameConflict).",
        json_schema_extra=LIST_ATOMIC,
    )
    path_prefix: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^/[^?#]*$")] = Field(
        default="/", description="Path prefix that selects this model (PathPrefix match)."
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
    pod: PodOverlay = Field(
        default_factory=PodOverlay,
        description="What users add to the vLLM pods: placement constraints, volumes, service"
        " account, pull secrets, priority, labels and annotations, resource overrides.",
    )
    routing: RoutingSpec | None = Field(
        default=None,
        description="Where each user zone's requests enter (a Gateway per zone) and the host"
        " names and path that select the model: gridplace writes one HTTPRoute per zone with the"
        " plan's weights. Unset: no routes.",
    )


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
    # Absent without a plan: server-side apply stores an empty object as null, which the
    # schema (an object) then rejects.
    predicted: Prediction | None = Field(
        default=None, description="Predicted p95, emissions and cost (absent without a plan)."
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
