"""Problem data for the placement engine: typed, frozen, validated.

The YAML file read by `gridplace plan FILE.yaml` is exactly this model (camelCase keys):
`Problem.model_validate(yaml.safe_load(text))`, or `load_problem(path)`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from gridplace_placement.capacity import ReplicaModel, StepModel
from gridplace_placement.profiles import catalogue

NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=0)]


class _Data(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, alias_generator=to_camel
    )


class PerformanceProfile(_Data):
    """How one replica of a model behaves on one GPU type."""

    gpu_type: str
    gpus_per_replica: Annotated[int, Field(ge=1)]
    decode_base_seconds: Positive = Field(description="a in decode step time a + b*batch")
    decode_per_sequence_seconds: NonNegative = Field(description="b in a + b*batch")
    max_batch: Annotated[int, Field(ge=1)] = Field(description="vLLM's --max-num-seqs")
    prefill_seconds_per_token: NonNegative = Field(
        description="compute time of one prompt token within a step (prefill is compute-bound)"
    )
    max_batched_tokens: Annotated[int, Field(ge=1)] = Field(
        default=8192,
        description="vLLM's --max-num-batched-tokens: tokens one scheduler step may hold",
    )
    active_power_watts: Positive = Field(description="replica power when its batch is full")
    idle_power_watts: NonNegative = Field(description="replica power when loaded but idle")
    derivation: str = ""

    @model_validator(mode="after")
    def _idle_below_active(self) -> PerformanceProfile:
        if self.idle_power_watts > self.active_power_watts:
            raise ValueError(
                f"idlePowerWatts={self.idle_power_watts} exceeds "
                f"activePowerWatts={self.active_power_watts}"
            )
        return self


class Availability(_Data):
    """Availability floor: run in at least `min_regions` regions with `per_region_min` each."""

    min_regions: Count = 0
    per_region_min: Annotated[int, Field(ge=1)] = 1
    survive_region_loss: bool = Field(
        default=False,
        description="the other regions' replicas can carry the served demand if any one is lost",
    )


class Weights(_Data):
    latency: NonNegative = 1.0
    carbon: NonNegative = 1.0
    cost: NonNegative = 1.0


class Model(_Data):
    """One served model (an InferenceDeployment)."""

    name: str = Field(min_length=1)
    gpu_types: tuple[str, ...] = Field(min_length=1, description="acceptable GPU products")
    gpus_per_replica: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="selects the tensor-parallel size of catalogue profiles"
    )
    profile: str | None = Field(default=None, description="model name in the shipped catalogue")
    profiles: dict[str, PerformanceProfile] = Field(
        default_factory=dict, description="per GPU type; overrides the catalogue"
    )
    slo_p95_ttft_seconds: Positive
    tpot_target_seconds: Positive = 0.1
    queue_budget_fraction: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=0.5,
        description="share of (SLO - prefill) given to the queue wait; the rest is network RTT",
    )
    service_time_scv: NonNegative = Field(
        default=1.0, description="squared CV of service time (1 = exponential, M/M/c)"
    )
    min_replicas: Count = 0
    max_replicas: Count | None = None
    availability: Availability = Availability()
    allowed_regions: tuple[str, ...] | None = None
    forbidden_regions: tuple[str, ...] = ()
    weights: Weights = Weights()
    churn_budget: Count | None = Field(
        default=None,
        description="most moves a re-plan may make of this model's replicas (stops beyond what "
        "falling demand frees, starts beyond what rising demand needs); scaling is free",
    )
    demand: dict[str, NonNegative] = Field(default_factory=dict, description="req/s by user zone")
    prompt_tokens: Positive = 1000.0
    output_tokens: Positive = 250.0

    @model_validator(mode="before")
    @classmethod
    def _fill_from_catalogue(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("profile") is None:
            return data
        name = data["profile"]
        shipped = catalogue().get(name)
        if shipped is None:
            raise ValueError(
                f"profile={name!r} is not in the shipped catalogue (its models and GPU types are"
                " listed in docs/placement.md): give the model's `profiles` per GPU type instead"
            )
        tp = data.get("gpusPerReplica", data.get("gpus_per_replica"))
        explicit = dict(data.get("profiles") or {})
        for gpu in data.get("gpuTypes", data.get("gpu_types")) or ():
            if gpu in explicit:
                continue
            fits = sorted(
                (p for p in shipped if p["gpuType"] == gpu and tp in (None, p["gpusPerReplica"])),
                key=lambda p: int(p["gpusPerReplica"]),
            )
            if fits:
                explicit[gpu] = fits[0]
        return {**data, "profiles": explicit}

    @model_validator(mode="after")
    def _check(self) -> Model:
        for gpu in self.gpu_types:
            if gpu not in self.profiles:
                raise ValueError(
                    f"gpuTypes: no performance profile for {gpu!r} "
                    f"(profile={self.profile!r}, gpusPerReplica={self.gpus_per_replica})"
                )
        for gpu, prof in self.profiles.items():
            if prof.gpu_type != gpu:
                raise ValueError(f"profiles[{gpu!r}].gpuType={prof.gpu_type!r} differs from key")
            if self.gpus_per_replica is not None and prof.gpus_per_replica != self.gpus_per_replica:
                raise ValueError(
                    f"profiles[{gpu!r}].gpusPerReplica={prof.gpus_per_replica} differs from "
                    f"gpusPerReplica={self.gpus_per_replica}"
                )
        if self.max_replicas is not None and self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas={self.min_replicas} exceeds maxReplicas={self.max_replicas}"
            )
        if (
            self.max_replicas is not None
            and self.availability.min_regions * (self.availability.per_region_min)
            > self.max_replicas
        ):
            raise ValueError(
                f"availability needs {self.availability.min_regions} regions x "
                f"{self.availability.per_region_min} replicas > maxReplicas={self.max_replicas}"
            )
        for gpu, prof in self.profiles.items():
            if gpu in self.gpu_types and prof.decode_base_seconds >= self.tpot_target_seconds:
                raise ValueError(
                    f"tpotTargetSeconds={self.tpot_target_seconds} is below the decode time "
                    f"{prof.decode_base_seconds}s of one sequence on {gpu!r}"
                )
        return self

    @property
    def total_demand(self) -> float:
        return sum(self.demand.values())

    def step_model(self, gpu: str) -> StepModel:
        """One replica of this model on `gpu` as vLLM's scheduler runs it."""
        p = self.profiles[gpu]
        return StepModel(
            decode_base_s=p.decode_base_seconds,
            decode_per_seq_s=p.decode_per_sequence_seconds,
            prefill_per_token_s=p.prefill_seconds_per_token,
            max_num_seqs=p.max_batch,
            max_batched_tokens=p.max_batched_tokens,
        )

    def replica_rate(self, gpu: str) -> float:
        """Most req/s one replica sustains at the time-per-output-token target, prefill and
        decode sharing its steps (`StepModel.max_rate`)."""
        return self.step_model(gpu).max_rate(
            self.prompt_tokens, self.output_tokens, self.tpot_target_seconds
        )

    def replica_model(self, gpu: str) -> ReplicaModel:
        """The queueing model of one replica of this model on `gpu`: slots that each hold a
        request for its prefill and its decode at the replica's full rate, as many as make its
        throughput the step model's `replica_rate` (Little's law, at most `maxBatch`), so the
        queue saturates where the GPU's compute and memory do."""
        rate = self.replica_rate(gpu)
        held = self.prefill_seconds(gpu) + self.output_tokens * self._full_step(gpu)
        slots = min(max(1, math.floor(rate * held)), self.profiles[gpu].max_batch)
        return ReplicaModel(
            slots=slots,
            service_time_s=slots / rate,
            prefill_s=self.prefill_seconds(gpu),
            wait_budget_s=self.queue_wait_budget(gpu),
            scv=self.service_time_scv,
        )

    def _full_step(self, gpu: str) -> float:
        """The step time at `replica_rate`: the time-per-output-token target, or less when the
        batch or the token budget binds first."""
        return self.step_model(gpu).steady_state(
            self.replica_rate(gpu), self.prompt_tokens, self.output_tokens
        )

    def prefill_seconds(self, gpu: str) -> float:
        """Time to the first token once scheduled, at the batch of a replica at its full rate:
        the prompt in chunks beside that many decodes (`StepModel.prefill_seconds`)."""
        decoding = self.replica_rate(gpu) * self.output_tokens * self._full_step(gpu)
        return self.step_model(gpu).prefill_seconds(self.prompt_tokens, decoding)

    def queue_wait_budget(self, gpu: str) -> float:
        """p95 wait the pool may add; routes are eligible if RTT fits in what is left."""
        return self.queue_budget_fraction * (self.slo_p95_ttft_seconds - self.prefill_seconds(gpu))

    def region_allowed(self, region: str) -> bool:
        if region in self.forbidden_regions:
            return False
        return self.allowed_regions is None or region in self.allowed_regions


class Region(_Data):
    name: str = Field(min_length=1)
    gpus: dict[str, Count] = Field(default_factory=dict, description="GPU count by GPU product")
    node_gpus: dict[str, tuple[Count, ...]] = Field(
        default_factory=dict,
        description="free GPUs on each node, by GPU product: when given, a replica must fit on "
        "one node (its GPUs are one pod's), so the plan packs replicas per node; without it the "
        "product's GPUs count as one pool",
    )
    pue: Annotated[float, Field(ge=1.0, le=3.0)] = 1.2
    carbon_intensity: NonNegative = Field(description="grid carbon intensity, gCO2/kWh")
    power_price_usd_per_mwh: float = Field(
        description="electricity price; negative prices count as free power"
    )
    gpu_hour_price_usd: dict[str, NonNegative] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _nodes_sum_to_gpus(self) -> Region:
        for gpu, free in self.node_gpus.items():
            if sum(free) != self.gpus.get(gpu, 0):
                raise ValueError(
                    f"nodeGpus[{gpu!r}] sums to {sum(free)} GPUs but gpus[{gpu!r}]="
                    f"{self.gpus.get(gpu, 0)}: the pool is the sum of its nodes"
                )
        return self


class Assignment(_Data):
    """Replicas of a model currently running in a region on a GPU type."""

    model: str
    region: str
    gpu_type: str
    replicas: Count


class Problem(_Data):
    models: tuple[Model, ...]
    regions: tuple[Region, ...] = Field(min_length=1)
    rtt_ms: dict[str, dict[str, NonNegative]] = Field(
        description="round-trip time in ms from each user zone to regions it can reach"
    )
    current: tuple[Assignment, ...] = ()
    churn_budget: Count | None = Field(
        default=None, description="most moves a re-plan may make over all models (scaling is free)"
    )
    churn_penalty: NonNegative = Field(
        default=0.05,
        description="objective cost per moved replica (a stop not explained by falling demand, "
        "or a start not explained by rising demand), in model-normalised units",
    )

    @model_validator(mode="after")
    def _check(self) -> Problem:
        regions = [r.name for r in self.regions]
        _unique("regions", regions)
        _unique("models", [m.name for m in self.models])
        known = set(regions)
        for zone, row in self.rtt_ms.items():
            for region in row:
                if region not in known:
                    raise ValueError(f"rttMs[{zone!r}]: unknown region {region!r}")
        inventory = {g for r in self.regions for g in r.gpus}
        for m in self.models:
            where = f"models[{m.name!r}]"
            for region in (*m.forbidden_regions, *(m.allowed_regions or ())):
                if region not in known:
                    raise ValueError(f"{where}: unknown region {region!r} in allowed/forbidden")
            for zone, rate in m.demand.items():
                if rate > 0 and not self.rtt_ms.get(zone):
                    raise ValueError(
                        f"{where}.demand: zone {zone!r} has demand {rate} but no rttMs"
                    )
            if not inventory.intersection(m.gpu_types):
                raise ValueError(
                    f"{where}.gpuTypes={list(m.gpu_types)}: no region has any of these GPU types"
                )
        names = {m.name for m in self.models}
        for a in self.current:
            if a.model not in names:
                raise ValueError(f"current: unknown model {a.model!r}")
            if a.region not in known:
                raise ValueError(f"current[{a.model!r}]: unknown region {a.region!r}")
        return self

    @property
    def zones(self) -> tuple[str, ...]:
        return tuple(self.rtt_ms)


def _unique(field: str, names: list[str]) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"{field}: duplicate name {n!r}")
        seen.add(n)


def load_problem(path: str | Path) -> Problem:
    """Read a placement problem from a YAML (or JSON) file."""
    return Problem.model_validate(yaml.safe_load(Path(path).read_text()))
