"""From what the cluster says to a placement problem: InferenceDeployments, Regions with their
current signal values, the GPU inventory and the running replicas -> `gridplace_placement.Problem`.

Each InferenceDeployment is checked on its own first, so one bad object is reported on that
object (with a precise reason) and never stops the others from being planned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from gridplace_operator import labels
from gridplace_operator.api.common import describe_validation_error
from gridplace_operator.api.conditions import Reason
from gridplace_operator.api.inference_deployment import InferenceDeploymentSpec
from gridplace_operator.api.parsed import IdepRef, Rejection
from gridplace_operator.api.region import Region
from gridplace_operator.observe.inventory import Inventory
from gridplace_placement.problem import Assignment, Problem
from gridplace_placement.problem import Model as PlacementModel
from gridplace_placement.problem import Region as PlacementRegion
from gridplace_placement.profiles import catalogue


@dataclass(frozen=True)
class RegionSignalValues:
    carbon_g_per_kwh: float
    price_usd_per_mwh: float


@dataclass
class Translation:
    problem: Problem | None
    models: dict[str, IdepRef] = field(default_factory=dict)  # problem model name -> object
    rejected: dict[IdepRef, Rejection] = field(default_factory=dict)
    missing_regions: dict[IdepRef, list[str]] = field(default_factory=dict)


def _ttft_target(spec: InferenceDeploymentSpec) -> float | Rejection:
    slo = spec.slo
    if slo.p95_time_to_first_token_seconds is not None:
        return slo.p95_time_to_first_token_seconds
    assert slo.p95_end_to_end_seconds is not None  # the schema requires one of the two
    # An end-to-end target leaves for the first token what decoding the output does not take.
    tpot = slo.p95_time_per_output_token_seconds or 0.1
    budget = slo.p95_end_to_end_seconds - spec.demand.mean_output_tokens * tpot
    if budget <= 0:
        return Rejection(
            Reason.INVALID_SPEC,
            f"spec.slo.p95EndToEndSeconds={slo.p95_end_to_end_seconds} is shorter than decoding"
            f" {spec.demand.mean_output_tokens} output tokens at {tpot}s per token",
        )
    return budget


def placement_model(
    ref: IdepRef,
    spec: InferenceDeploymentSpec,
    demand: Mapping[str, float],
    bounds: tuple[int, int] | None = None,
    churn_budget: int | None = None,
) -> PlacementModel | Rejection:
    """The placement engine's view of one InferenceDeployment. `bounds`: the autoscaler's
    (min, max) of the total, within which the plan chooses the count (spec.scaling.replicas
    pins it instead); `churn_budget`: moves this model's re-plan may still make this hour."""
    ttft = _ttft_target(spec)
    if isinstance(ttft, Rejection):
        return ttft
    model = spec.model
    scaling = spec.scaling
    placement = spec.placement
    floor = placement.availability
    low, high = bounds if bounds is not None else (scaling.min_replicas, scaling.max_replicas)
    if scaling.replicas is not None:
        low = high = scaling.replicas
    data: dict[str, Any] = {
        "name": ref.key,
        "gpuTypes": list(model.gpu_types),
        "gpusPerReplica": model.effective_gpus_per_replica(),
        "sloP95TtftSeconds": ttft,
        "minReplicas": low,
        "maxReplicas": high,
        "availability": {
            "minRegions": floor.min_regions,
            "perRegionMin": floor.min_replicas_per_region,
            "surviveRegionLoss": floor.survive_region_loss,
        },
        "forbiddenRegions": list(placement.forbidden_regions),
        "weights": placement.weights.model_dump(),
        "demand": dict(demand),
        "promptTokens": spec.demand.mean_prompt_tokens,
        "outputTokens": spec.demand.mean_output_tokens,
    }
    if churn_budget is not None:
        data["churnBudget"] = churn_budget
    if spec.slo.p95_time_per_output_token_seconds is not None:
        data["tpotTargetSeconds"] = spec.slo.p95_time_per_output_token_seconds
    if placement.allowed_regions is not None:
        data["allowedRegions"] = list(placement.allowed_regions)
    performance = model.performance
    if performance is not None and performance.gpus is not None:
        data["profiles"] = {
            p.gpu_type: {**p.model_dump(), "gpusPerReplica": model.effective_gpus_per_replica()}
            for p in performance.gpus
        }
    else:
        data["profile"] = performance.profile if performance is not None else model.name
        gap = _catalogue_gap(
            "spec.model.performance.profile" if performance is not None else "spec.model.name",
            data["profile"],
            model.gpu_types,
            model.effective_gpus_per_replica(),
        )
        if gap is not None:
            return Rejection(Reason.INVALID_SPEC, gap)
    try:
        return PlacementModel.model_validate(data)
    except ValidationError as err:
        return Rejection(Reason.INVALID_SPEC, describe_validation_error(err, "spec.model"))


def _catalogue_gap(field: str, name: str, gpu_types: Sequence[str], gpus: int) -> str | None:
    """Why the shipped profile catalogue cannot size this model, and what to set instead; None
    when it has the model on every GPU type at `gpus` per replica. A model outside the catalogue
    is the common case (a fine-tune, a new release), and the placement engine's own message names
    its file format's fields, not the InferenceDeployment's."""
    shipped = catalogue().get(name)
    fix = (
        "set spec.model.performance.gpus, a replica's measured performance per GPU type"
        " (docs/api.md; the catalogue's models and GPU types are listed in docs/placement.md)"
    )
    if shipped is None:
        return f"{field}: {name!r} is not in the shipped profile catalogue: {fix}"
    sizes: dict[str, set[int]] = {}
    for p in shipped:
        sizes.setdefault(p["gpuType"], set()).add(int(p["gpusPerReplica"]))
    missing = [g for g in gpu_types if g not in sizes]
    if missing:
        return (
            f"spec.model.gpuTypes: the shipped profile catalogue has {name!r} on"
            f" {', '.join(sorted(sizes))}, not on {', '.join(missing)}: {fix}"
        )
    wrong = [g for g in gpu_types if gpus not in sizes[g]]
    if wrong:
        has = "; ".join(f"{g}: {', '.join(map(str, sorted(sizes[g])))}" for g in wrong)
        return (
            f"spec.model: the shipped profile catalogue has {name!r} with other GPUs per replica"
            f" than {gpus} ({has}): set spec.model.tensorParallelSize or gpusPerReplica to one"
            f" of them, or {fix.removeprefix('set ')}"
        )
    return None


def static_demand(spec: InferenceDeploymentSpec) -> dict[str, float]:
    return {d.zone: d.requests_per_second for d in spec.demand.static or []}


def current_assignments(deployments: Sequence[Mapping[str, Any]]) -> list[Assignment]:
    """Running replicas per (model, region, GPU type), from gridplace's own Deployments."""
    out: list[Assignment] = []
    for dep in deployments:
        meta = dep.get("metadata", {})
        lbl = meta.get("labels") or {}
        name, region = lbl.get(labels.INFERENCE_DEPLOYMENT), lbl.get(labels.REGION)
        gpu_type = lbl.get(labels.GPU_TYPE)
        if not (name and region and gpu_type):
            continue
        replicas = int((dep.get("spec") or {}).get("replicas") or 0)
        key = IdepRef(meta.get("namespace", ""), name).key
        out.append(Assignment(model=key, region=region, gpu_type=gpu_type, replicas=replicas))
    return out


def running_assignments(
    observed: Sequence[Assignment], applied: Mapping[str, Mapping[tuple[str, str], int]]
) -> list[Assignment]:
    """What runs per (model, region, GPU type) for the next plan: for a model the last plan
    placed, that plan (`applied`: replicas by (region, GPU type)); for the others (after a
    restart), what the watch shows. The watch lags behind a plan just applied, and shows the
    replicas a move leaves behind until make-before-break lets them go: a re-plan that saw
    either would take them for free capacity or for a place to move back to."""
    out = [a for a in observed if a.model not in applied]
    for model, pools in applied.items():
        out.extend(
            Assignment(model=model, region=region, gpu_type=gpu_type, replicas=n)
            for (region, gpu_type), n in pools.items()
            if n > 0
        )
    return sorted(out, key=lambda a: (a.model, a.region, a.gpu_type))


def region_capacity(
    inventory: Inventory, region: str, specs: Iterable[InferenceDeploymentSpec]
) -> dict[str, Any]:
    """A region's GPUs for the problem, by GPU type: per node where the inventory knows its
    nodes (`nodeGpus`, so replicas are packed per node), counting only the nodes that every
    model accepting the type tolerates (a taint one of them does not tolerate would leave its
    pods Pending there); pooled otherwise."""
    gpus: dict[str, int] = {}
    node_gpus: dict[str, tuple[int, ...]] = {}
    for gpu_type, available in inventory.gpu_types(region).items():
        if not inventory.has_nodes(region, gpu_type):
            gpus[gpu_type] = available
            continue
        pods = [
            [t.to_api() for t in s.pod.tolerations] for s in specs if gpu_type in s.model.gpu_types
        ]
        node_gpus[gpu_type] = inventory.node_gpus(region, gpu_type, pods)
        gpus[gpu_type] = sum(node_gpus[gpu_type])
    return {"gpus": gpus, "node_gpus": node_gpus}


def build_problem(
    ideps: Mapping[IdepRef, InferenceDeploymentSpec],
    *,
    demand: Mapping[IdepRef, Mapping[str, float]],
    regions: Sequence[Region],
    signals: Mapping[str, RegionSignalValues],
    inventory: Inventory,
    current: Sequence[Assignment],
    bounds: Mapping[IdepRef, tuple[int, int]] | None = None,
    churn_budgets: Mapping[IdepRef, int] | None = None,
) -> Translation:
    """One joint problem for every valid InferenceDeployment; rejects are reported per object."""
    known = {r.metadata.name for r in regions if r.metadata.name in signals}
    rtt: dict[str, dict[str, float]] = {}
    for region in regions:
        if region.metadata.name in known:
            for entry in region.spec.rtt:
                rtt.setdefault(entry.zone, {})[region.metadata.name] = entry.ms
    p_regions = tuple(
        PlacementRegion(
            name=r.metadata.name,
            **region_capacity(inventory, r.metadata.name, ideps.values()),
            pue=r.spec.pue,
            carbon_intensity=max(0.0, signals[r.metadata.name].carbon_g_per_kwh),
            power_price_usd_per_mwh=signals[r.metadata.name].price_usd_per_mwh,
            gpu_hour_price_usd={p.gpu_type: p.usd_per_hour for p in r.spec.gpu_hour_prices},
        )
        for r in sorted(regions, key=lambda r: r.metadata.name)
        if r.metadata.name in known
    )
    gpu_types_present = {g for r in p_regions for g, n in r.gpus.items() if n > 0}
    out = Translation(problem=None)
    models: list[PlacementModel] = []
    for ref, spec in sorted(ideps.items(), key=lambda kv: kv[0].key):
        named = {*spec.placement.forbidden_regions, *(spec.placement.allowed_regions or [])}
        if named - known:
            out.missing_regions[ref] = sorted(named - known)
        zone_demand = {z: rps for z, rps in demand.get(ref, {}).items() if rps > 0}
        unreachable = sorted(z for z in zone_demand if not rtt.get(z))
        if unreachable:
            out.rejected[ref] = Rejection(
                Reason.SLO_UNREACHABLE,
                f"no Region lists an RTT to user zone(s) {unreachable}: add them to a Region's"
                " spec.rtt",
            )
            continue
        if not gpu_types_present & set(spec.model.gpu_types):
            out.rejected[ref] = Rejection(
                Reason.NO_ELIGIBLE_REGION,
                f"no Region has nodes with any of spec.model.gpuTypes={list(spec.model.gpu_types)}",
            )
            continue
        spec_for_problem = spec
        if spec.placement.allowed_regions is not None:
            allowed = [r for r in spec.placement.allowed_regions if r in known]
            if not allowed:
                out.rejected[ref] = Rejection(
                    Reason.NO_ELIGIBLE_REGION,
                    "none of spec.placement.allowedRegions has a Region object with signals",
                )
                continue
            placement = spec.placement.model_copy(update={"allowed_regions": allowed})
            spec_for_problem = spec.model_copy(update={"placement": placement})
        if named - known:
            placement = spec_for_problem.placement.model_copy(
                update={
                    "forbidden_regions": [
                        r for r in spec_for_problem.placement.forbidden_regions if r in known
                    ]
                }
            )
            spec_for_problem = spec_for_problem.model_copy(update={"placement": placement})
        model = placement_model(
            ref,
            spec_for_problem,
            zone_demand,
            (bounds or {}).get(ref),
            (churn_budgets or {}).get(ref),
        )
        if isinstance(model, Rejection):
            out.rejected[ref] = model
            continue
        models.append(model)
        out.models[model.name] = ref
    if not p_regions:
        return out
    names = {m.name for m in models}
    region_names = {r.name for r in p_regions}
    current_known = tuple(a for a in current if a.model in names and a.region in region_names)
    out.problem = Problem(
        models=tuple(models),
        regions=p_regions,
        rtt_ms=rtt,
        current=current_known,
    )
    return out
