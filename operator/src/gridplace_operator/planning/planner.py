"""One planning cycle: read signals, solve all InferenceDeployments jointly, reconcile children,
write status and Events. The kopf handlers only fill the `World` and wake the loop.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from gridplace_operator import labels
from gridplace_operator.api.common import describe_validation_error
from gridplace_operator.api.conditions import Reason
from gridplace_operator.api.inference_deployment import InferenceDeploymentSpec
from gridplace_operator.api.parsed import IdepRef, Rejection
from gridplace_operator.api.region import Region
from gridplace_operator.autoscale.decide import (
    Decision,
    History,
    Inputs,
    ScalingPolicy,
    decide,
    history_from_status,
    longest_rtt_s,
    status_of,
    unreachable,
    user_p95,
)
from gridplace_operator.autoscale.decide import (
    outcome as scaling_outcome,
)
from gridplace_operator.autoscale.prometheus import (
    LatencyMetric,
    LoadReading,
    Prometheus,
    PrometheusError,
    Target,
    window_seconds,
)
from gridplace_operator.kube.client import ApiError
from gridplace_operator.observe.inventory import Inventory, pod_gpu_request
from gridplace_operator.observe.world import Change, World
from gridplace_operator.planning.memory import Memory
from gridplace_operator.planning.problem import (
    RegionSignalValues,
    build_problem,
    current_assignments,
    placement_model,
    running_assignments,
    static_demand,
)
from gridplace_operator.planning.seams import Actuator, GpuInventory
from gridplace_operator.reconcile.children import Owner, desired_children
from gridplace_operator.reconcile.propagation import foreign_claims, propagation_policies
from gridplace_operator.reconcile.routes import routed_condition, routes_for
from gridplace_operator.reconcile.writes import Apply, Delete, ObservedChild, writes_for
from gridplace_operator.report.metrics import OperatorMetrics
from gridplace_operator.report.status import (
    IdepFacts,
    ModelPlan,
    RegionFacts,
    SignalHealth,
    comparable,
    idep_status,
    region_status,
)
from gridplace_operator.signals.sources import (
    PROVIDERS,
    Provider,
    Resolved,
    SignalKind,
    SignalPendingError,
    SourceReads,
    resolve,
)
from gridplace_placement.holding import hold_running, keep_running_plan
from gridplace_placement.plan import Plan, PlanStatus
from gridplace_placement.problem import Problem
from gridplace_placement.solver import SolveOptions, solve

log = logging.getLogger(__name__)
# Certified plans kept for unchanged inputs: one per problem a cycle solves (Enforce, Advise).
CERTIFIED_KEPT = 2


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim  # glibc only
    except AttributeError:
        return None
    return trim


_MALLOC_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Hand memory freed since the last call back to the OS. A solve allocates and frees ~100 MiB
    outside Python; glibc keeps freed pages mapped, so without this the operator's resident size
    would stay at its highest point and creep up with fragmentation."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


@dataclass(frozen=True)
class PlannerSettings:
    # A safety net: the solve is bounded by work (SolveOptions.work_limit), so the same inputs
    # give the same plan on any CPU; far above the 500-model solve on one slow core.
    solve_time_limit_seconds: float = 120.0
    # Longest a scale-down waits for the replicas replacing it to become ready.
    make_before_break_timeout_seconds: float = 600.0
    # InferenceDeployments reconciled at once (each waits on API round trips, not CPU).
    reconcile_concurrency: int = 16
    # PromQL range of the autoscaler's rate() and histogram_quantile() queries.
    rate_window: str = "2m"


class ChildConflictError(Exception):
    """A child's name is taken by an object gridplace does not control."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Planner:
    def __init__(
        self,
        world: World,
        actuator: Actuator,
        metrics: OperatorMetrics,
        *,
        gpus: GpuInventory,
        settings: PlannerSettings | None = None,
        providers: Mapping[str, Provider] = PROVIDERS,
        clock: Callable[[], datetime] = _utcnow,
        prometheus: Prometheus | None = None,
    ) -> None:
        self.world = world
        self.actuator, self.gpus = actuator, gpus
        self.metrics = metrics
        self.settings = settings or PlannerSettings()
        self.providers = providers
        self.clock = clock
        self.memory = Memory()  # all that one cycle leaves to the next
        self.valid_regions: list[Region] = []
        self.inventory = Inventory()
        # What each Region's sources last said. A source's first answer sets `signals_arrived`
        # and calls `wake` (the loop's request for a re-plan), so it is planned with at once.
        self.reads = SourceReads(providers, on_arrival=self._signal_arrived)
        self.signals_arrived = False
        self.wake: Callable[[], None] | None = None
        self.resolved: dict[tuple[str, SignalKind], Resolved] = {}
        self.unresolved: dict[tuple[str, SignalKind], str] = {}  # no value, no fallback: why
        self.rejections: dict[IdepRef, Rejection] = {}  # of the last re-plan
        self.missing_regions: dict[IdepRef, list[str]] = {}  # of the last re-plan
        self.prometheus = prometheus  # None: no autoscaler, replicas sized from declared demand
        self.crowded: set[tuple[str, str]] = set()
        self.spare_gpus: dict[tuple[str, str], int] = {}  # per pool, beyond every running plan

    def lease_memory(self) -> str:
        """What a successor needs that the cluster does not show (see `Memory.lease_memory`)."""
        return self.memory.lease_memory(self.clock().timestamp())

    def take_over(self, lease_memory: str) -> None:
        """Lead, with the memory a predecessor left in the Lease (see `Memory.take_over`)."""
        self.memory.take_over(lease_memory)

    # ---------------------------------------------------------------------------------------
    async def cycle(self, replan: bool) -> None:
        now = self.clock()
        self.memory.forget_all_but(
            {
                IdepRef(*key): body["metadata"].get("uid", "")
                for key, body in self.world.ideps.items()
            }
        )
        regions, invalid_regions = self._regions()
        self.valid_regions = regions  # parsed once per cycle, read by every reconcile
        # Taken before reading: an answer arriving during this cycle is planned with next time.
        replan, self.signals_arrived = replan or self.signals_arrived, False
        signals = await self._signals(regions, now)
        if self.prometheus is not None and await self._autoscale(now):
            replan = True
        if replan or not self.memory.planned:
            self.inventory = await self.gpus.read(
                {r.metadata.name: r.node_selector() for r in regions}, self._members()
            )
            await self._replan(regions, signals, now)
            self.metrics.plans.labels(outcome="replan").inc()
        else:
            self.metrics.plans.labels(outcome="refresh").inc()
        if self.prometheus is not None:
            await self._report_scaling(now)
        self.crowded = self._crowded_pools()
        self.spare_gpus = self._spare_gpus()
        # Objects are independent once planned: reconcile several at a time.
        gate = asyncio.Semaphore(self.settings.reconcile_concurrency)

        async def reconcile(key: tuple[str, str], body: dict[str, Any]) -> None:
            async with gate:
                try:
                    await self._reconcile(body, now)
                except Exception as err:
                    gone = isinstance(err, ApiError) and err.status == 404
                    if gone and not await self._still_there(body):
                        return  # its namespace is gone, and it with it
                    self.metrics.errors.labels(stage="reconcile").inc()
                    log.exception("reconciling %s/%s failed", *key)

        await asyncio.gather(*(reconcile(k, b) for k, b in list(self.world.ideps.items())))
        for body in list(self.world.regions.values()):
            try:
                await self._write_region_status(body, invalid_regions, now)
            except Exception:
                self.metrics.errors.labels(stage="region-status").inc()
                log.exception("status of Region %s failed", body["metadata"]["name"])
        release_freed_memory()

    # ---------------------------------------------------------------------------------------
    def _regions(self) -> tuple[list[Region], dict[str, str]]:
        valid: list[Region] = []
        invalid: dict[str, str] = {}
        for name, body in sorted(self.world.regions.items()):
            try:
                valid.append(Region.model_validate({**body, "status": None}))
            except ValidationError as err:
                invalid[name] = describe_validation_error(err)
        return valid, invalid

    async def _signals(self, regions: list[Region], now: datetime) -> dict[str, RegionSignalValues]:
        """Every Region's two signals as they are known now: no cycle waits for a source's answer
        (see `SourceReads`), so one slow source delays no Region, not even its own."""
        sources: list[tuple[str, SignalKind, Any]] = []
        for r in regions:
            sources.append((r.metadata.name, "carbonIntensity", r.spec.carbon_intensity))
            sources.append((r.metadata.name, "powerPrice", r.spec.power_price))
        self.reads.keep_only(sources)

        async def fetch(name: str, kind: SignalKind, source: Any) -> str | None:
            try:
                await self.reads.read(name, kind, source, now)
            except SignalPendingError as err:  # not failed: planned without it until it answers
                return str(err)
            except Exception as err:  # a failing source degrades to its fallback
                self.metrics.errors.labels(stage="signals").inc()
                return str(err) or type(err).__name__
            return None

        errors = await asyncio.gather(*(fetch(*s) for s in sources))
        got: dict[str, dict[SignalKind, float]] = {}
        for (name, kind, source), error in zip(sources, errors, strict=True):
            resolved = resolve(kind, source, self.reads.last(name, kind, source), error, now)
            if resolved is None:
                self.resolved.pop((name, kind), None)
                self.unresolved[(name, kind)] = error or "no value yet"
                continue
            self.unresolved.pop((name, kind), None)
            self.resolved[(name, kind)] = resolved
            got.setdefault(name, {})[kind] = resolved.value
            self.metrics.signal_age.labels(region=name, signal=kind).set(
                resolved.status.age_seconds
            )
        return {
            name: RegionSignalValues(v["carbonIntensity"], v["powerPrice"])
            for name, v in got.items()
            if len(v) == 2
        }

    def _signal_arrived(self) -> None:
        """A source's first answer (or failure) came in: plan with it now, not a period later."""
        self.signals_arrived = True
        if self.wake is not None:
            self.wake()

    def _churn_budgets(
        self, specs: Mapping[IdepRef, InferenceDeploymentSpec]
    ) -> dict[IdepRef, int]:
        """Moves each model's re-plan may still make this hour (its own budget only)."""
        now_s = self.clock().timestamp()
        return {
            ref: self.memory.moves_left(ref, spec.placement.churn.max_moves_per_hour, now_s)
            for ref, spec in specs.items()
        }

    async def _replan(
        self, regions: list[Region], signals: dict[str, RegionSignalValues], now: datetime
    ) -> None:
        """Enforced models are planned jointly first; Advise models then get what is left, so a
        plan nobody runs never displaces a workload that does."""
        specs: dict[IdepRef, InferenceDeploymentSpec] = {}
        self.rejections, self.missing_regions = {}, {}
        for (namespace, name), parsed in sorted(self.world.specs.items()):
            ref = IdepRef(namespace, name)
            if isinstance(parsed, Rejection):
                self.rejections[ref] = parsed
            else:
                specs[ref] = parsed
        deployments = [c for (kind, _, _), c in self.world.children.items() if kind == "Deployment"]
        enforce = {r: s for r, s in specs.items() if s.placement.mode == "Enforce"}
        kept = self.memory.plans
        applied = {r.key: kept[r].replicas() for r in enforce if r in kept}
        running = running_assignments(current_assignments(deployments), applied)
        advise = {r: s for r, s in specs.items() if s.placement.mode == "Advise"}
        inventory = self.inventory
        plans: dict[IdepRef, ModelPlan] = {}
        for group, current, enforced in ((enforce, running, True), (advise, [], False)):
            if not group:
                continue
            translation = build_problem(
                group,
                demand={ref: self._plan_demand(ref, spec) for ref, spec in group.items()},
                regions=regions,
                signals=signals,
                inventory=inventory,
                current=current,
                churn_budgets=self._churn_budgets(group) if enforced else None,
                bounds={
                    r: (d.min_total, d.max_total)
                    for r in group
                    if (d := self.memory.decisions.get(r)) is not None
                },
            )
            self.rejections.update(translation.rejected)
            self.missing_regions.update(translation.missing_regions)
            problem = translation.problem
            if problem is None or not problem.models:
                continue
            plan = await self._solve(problem)
            if plan is None:  # keep what runs; status says why
                for ref in translation.models.values():
                    if ref in kept:
                        plans[ref] = kept[ref]
                continue
            for key, ref in translation.models.items():
                model_plan = ModelPlan.of(plan, key, now)
                if model_plan is not None:
                    plans[ref] = model_plan
            if enforced:
                self._record_moves(plan)
                inventory = inventory.minus(_gpus_taken(plan, problem))
        self.memory.plans, self.memory.planned = plans, True

    def _demand(self, ref: IdepRef, spec: InferenceDeploymentSpec) -> dict[str, float]:
        """Measured demand wins; the declared one is the fallback."""
        measured = self.memory.measured_demand.get(ref)
        return measured if measured is not None else static_demand(spec)

    def _plan_demand(self, ref: IdepRef, spec: InferenceDeploymentSpec) -> dict[str, float]:
        """The demand the plan carries: per user zone as measured (else declared), scaled to the
        autoscaler's planning rate. Without zones to spread it over (nothing declared, nothing
        measured per zone) the rate follows the running plan's traffic; with neither, the
        latency floor alone sizes the model."""
        zones = self._demand(ref, spec)
        decision = self.memory.decisions.get(ref)
        if decision is None or decision.rate_rps is None:
            return zones
        total = sum(zones.values())
        if total > 0:
            shares = {zone: rps / total for zone, rps in zones.items()}
        else:
            routes = self.memory.plans[ref].routes if ref in self.memory.plans else []
            carried = sum(r.rate_rps for r in routes)
            shares = {}
            for route in routes:
                shares[route.zone] = shares.get(route.zone, 0.0) + route.rate_rps / carried
        return {zone: decision.rate_rps * share for zone, share in shares.items()}

    async def _autoscale(self, now: datetime) -> bool:
        """Decide what every InferenceDeployment's plan must carry; True when a decision no
        longer fits the plan made for the last one (re-plan then)."""
        changed = False
        for (namespace, name), body in sorted(self.world.ideps.items()):
            spec = self.world.spec_of(body)
            if isinstance(spec, Rejection):
                continue
            ref = IdepRef(namespace, name)
            try:
                if ref not in self.memory.scaling:  # a restart or a fail-over
                    shown = (body.get("status") or {}).get("autoscaler")
                    self.memory.scaling[ref] = history_from_status(shown, now.timestamp())
                previous = self.memory.decisions.get(ref)
                decision = await self._scale(ref, spec, now)
            except Exception:
                self.metrics.errors.labels(stage="autoscale").inc()
                log.exception("autoscaling %s/%s failed", namespace, name)
                continue
            changed = changed or decision.differs(previous)
        return changed

    async def _report_scaling(self, now: datetime) -> None:
        """What each decision came to once planned: the Scaled condition, an Event when the
        total moved, the time of the last move."""
        kept = self.memory
        for ref, decision in list(kept.decisions.items()):
            body = self.world.ideps.get((ref.namespace, ref.name))
            if body is None:
                continue
            plan = kept.plans.get(ref)
            planned = sum(p.replicas for p in plan.pools) if plan else decision.inputs.current
            short = plan is not None and plan.outcome.unserved_rps > 1e-6
            result = scaling_outcome(decision, planned, short)
            previous = kept.outcomes.get(ref)
            fresh = previous is None or kept.decided_at.get(ref) != decision.inputs.now_s
            kept.outcomes[ref], kept.decided_at[ref] = result, decision.inputs.now_s
            ids = {"namespace": ref.namespace, "inference_deployment": ref.name}
            if fresh:
                self.metrics.scale_decisions.labels(**ids, reason=result.reason).inc()
            self.metrics.desired_replicas.labels(**ids).set(planned)
            if result.planned == (previous.planned if previous else decision.inputs.current):
                continue
            history = replace(decision.history, last_scale_s=now.timestamp())
            kept.scaling[ref] = history
            kept.decisions[ref] = replace(decision, history=history)
            if decision.inputs.current > 0:
                message = f"total replicas {result.message}"
                await self.actuator.event(body, reason=result.reason, message=message)

    async def _scale(self, ref: IdepRef, spec: InferenceDeploymentSpec, now: datetime) -> Decision:
        assert self.prometheus is not None
        prom, window = self.prometheus, self.settings.rate_window
        if spec.demand.prometheus is not None:
            source = spec.demand.prometheus
            try:
                self.memory.measured_demand[ref] = await asyncio.to_thread(
                    prom.demand, source.query, source.zone_label
                )
            except PrometheusError as err:
                log.warning(
                    "%s: measured demand unavailable, using the declared one: %s", ref.key, err
                )
                self.memory.measured_demand.pop(ref, None)
        metric: LatencyMetric = (
            "ttft" if spec.slo.p95_time_to_first_token_seconds is not None else "e2e"
        )
        target = spec.slo.p95_time_to_first_token_seconds or spec.slo.p95_end_to_end_seconds
        assert target is not None  # the schema requires one of the two
        reading: LoadReading | None = None
        metrics_error = ""
        try:
            reading = await asyncio.to_thread(
                prom.load, Target(ref.namespace, ref.name), metric, window
            )
        except PrometheusError as err:
            log.warning("%s: no latency from Prometheus: %s", ref.key, err)
            metrics_error = err.summary  # for status: the failure and the host, nothing more
        current, ready = self._current_total(ref)
        demand = self._demand(ref, spec)
        floor = spec.placement.availability
        policy = ScalingPolicy.of(
            spec.scaling,
            floor.regions_needed() * floor.min_replicas_per_region,
            window_seconds(window),
        )
        offered = reading.offered_rps(window_seconds(window)) if reading else None
        demand_rps = max(sum(demand.values()), offered or 0.0)
        why_not = None
        model = placement_model(ref, spec, demand)
        if not isinstance(model, Rejection):
            present = sorted({g for (_, g) in self.inventory.pools} & set(spec.model.gpu_types))
            types = present or sorted(spec.model.gpu_types)
            why_not = unreachable(model, demand_rps, types, spec.scaling.max_replicas)
        routes = self.memory.plans[ref].routes if ref in self.memory.plans else []
        rtt_s = longest_rtt_s(((r.zone, r.region) for r in routes), self.plan_rtt())
        inputs = Inputs(
            now_s=now.timestamp(),
            target_p95_s=target,
            current=current,
            ready=ready,
            metrics_available=reading is not None,
            metrics_error=metrics_error,
            observed_p95_s=user_p95(reading.p95_seconds, rtt_s) if reading else None,
            observed_rps=offered,
            arrival_rps=reading.arrival_rps if reading else None,
            demand_rps=demand_rps,
            unreachable=why_not,
            pinned=spec.scaling.replicas,
        )
        decision = decide(inputs, policy, self.memory.scaling.get(ref, History()))
        self.memory.scaling[ref], self.memory.decisions[ref] = decision.history, decision
        ids = {"namespace": ref.namespace, "inference_deployment": ref.name}
        for region, p95 in (reading.p95_seconds if reading else {}).items():
            self.metrics.observed_p95.labels(**ids, region=region).set(p95)
        return decision

    def _current_total(self, ref: IdepRef) -> tuple[int, int]:
        """Replicas planned (else running, after a restart) and ready, over all regions."""
        if ref in self.memory.plans:
            current = sum(p.replicas for p in self.memory.plans[ref].pools)
        else:
            deployments = [
                c for (kind, _, _), c in self.world.children.items() if kind == "Deployment"
            ]
            current = sum(
                a.replicas for a in current_assignments(deployments) if a.model == ref.key
            )
        ready = sum(self._ready_by_pool(ref.namespace, ref.name).values())
        return current, min(ready, current)

    async def _solve(self, problem: Problem) -> Plan | None:
        digest = hashlib.blake2b(problem.model_dump_json().encode(), digest_size=16).hexdigest()
        if (known := self.memory.certified.get(digest)) is not None:
            log.debug("inputs unchanged since a certified plan of %d model(s)", len(known.models))
            return known
        options = SolveOptions(time_limit_seconds=self.settings.solve_time_limit_seconds)
        started = time.perf_counter()
        try:
            plan = await asyncio.to_thread(solve, problem, options)
        except Exception as err:
            self.metrics.errors.labels(stage="solve").inc()
            log.exception("placement solve failed")
            self._fail(problem, f"the solver failed: {err}")
            return None
        finally:
            self.metrics.plan_duration.observe(time.perf_counter() - started)
            release_freed_memory()  # before reconciling allocates again
        if plan.status == PlanStatus.NO_SOLUTION:
            self._fail(problem, "the solver found no plan within its time limit")
            return None
        plan = _unless_cut(problem, plan, options.min_improvement)
        for model in problem.models:
            self.memory.failures.pop(IdepRef.of_key(model.name), None)
        certified = self.memory.certified
        if plan.status == PlanStatus.OPTIMAL:  # certified: solving again finds nothing better
            certified[digest] = plan
            while len(certified) > CERTIFIED_KEPT:
                del certified[next(iter(certified))]
        t = plan.timing
        log.info(
            "planned %d model(s) in %.2fs (compile %.2f, bound %.2f, solve %.2f, extract %.2f):"
            " status %s, gap %.2g%%",
            len(plan.models),
            t.total_seconds,
            t.compile_seconds,
            t.bound_seconds,
            t.solve_seconds,
            t.extract_seconds,
            plan.status.value,
            plan.gap * 100,
        )
        return plan

    def _fail(self, problem: Problem, why: str) -> None:
        for model in problem.models:
            self.memory.failures[IdepRef.of_key(model.name)] = why

    def _record_moves(self, plan: Plan) -> None:
        for outcome in plan.models:  # moves, as the budget counts them: scaling is free
            if outcome.moved_replicas:
                self.memory.moves.setdefault(IdepRef.of_key(outcome.name), deque()).append(
                    (self.clock().timestamp(), outcome.moved_replicas)
                )

    # ---------------------------------------------------------------------------------------
    def _selectors(self) -> dict[str, dict[str, str]]:
        return {r.metadata.name: r.node_selector() for r in self.valid_regions}

    def _members(self) -> dict[str, str]:
        """The member cluster of each region that names one (fleet mode)."""
        return {r.metadata.name: r.spec.cluster for r in self.valid_regions if r.spec.cluster}

    def _owned(self, owner: Owner) -> list[dict[str, Any]]:
        return [
            c
            for (_, ns, _), c in self.world.children.items()
            if ns == owner.namespace
            and (c.get("metadata", {}).get("labels") or {}).get(labels.INFERENCE_DEPLOYMENT)
            == owner.name
        ]

    def _observed_children(self, namespace: str) -> list[ObservedChild]:
        return [
            ObservedChild.from_api(obj)
            for (_, ns, _), obj in self.world.children.items()
            if ns == namespace
        ]

    def _crowded_pools(self) -> set[tuple[str, str]]:
        """(region, GPU type) pools whose gridplace Deployments, as the watch shows them, ask for
        more GPUs than the pool has for gridplace (make-before-break cannot finish there)."""
        asked: dict[tuple[str, str], int] = {}
        for (kind, _, _), obj in self.world.children.items():
            if kind != "Deployment":
                continue
            key = labels.pool_of(obj)
            spec = obj.get("spec") or {}
            per_replica = pod_gpu_request(spec.get("template") or {})
            asked[key] = asked.get(key, 0) + int(spec.get("replicas") or 0) * per_replica
        return {key for key, gpus in asked.items() if gpus > self.inventory.available(*key)}

    def _spare_gpus(self) -> dict[tuple[str, str], int]:
        """GPUs of each pool that no plan gridplace runs (Enforce) uses: room for a rollout's
        surge pod."""
        planned: dict[tuple[str, str], int] = {}
        for ref, model_plan in self.memory.plans.items():
            spec = self.world.specs.get((ref.namespace, ref.name))
            if not isinstance(spec, InferenceDeploymentSpec) or spec.placement.mode != "Enforce":
                continue
            for pool in model_plan.pools:
                key = (pool.region, pool.gpu_type)
                gpus = pool.replicas * spec.model.effective_gpus_per_replica()
                planned[key] = planned.get(key, 0) + gpus
        return {
            key: pool.available - planned.get(key, 0) for key, pool in self.inventory.pools.items()
        }

    def _ready_by_pool(self, namespace: str, name: str) -> dict[tuple[str, str], int]:
        ready: dict[tuple[str, str], int] = {}
        for (kind, ns, _), obj in self.world.children.items():
            lbl = obj.get("metadata", {}).get("labels") or {}
            if (
                kind != "Deployment"
                or ns != namespace
                or lbl.get(labels.INFERENCE_DEPLOYMENT) != name
            ):
                continue
            ready[labels.pool_of(obj)] = int((obj.get("status") or {}).get("readyReplicas") or 0)
        return ready

    def _signal_health(self, regions: list[str]) -> SignalHealth:
        kinds: tuple[SignalKind, ...] = ("carbonIntensity", "powerPrice")
        used = [self.resolved[(r, k)] for r in regions for k in kinds if (r, k) in self.resolved]
        fallback = [s for s in used if s.used_fallback]
        # Same rule as the Region's status: a value within maxAgeSeconds is fresh even while a
        # refresh is failing.
        stale = [s for s in used if s.status.stale and not s.used_fallback]
        if fallback:
            return SignalHealth(
                "False",
                Reason.USING_FALLBACK,
                "; ".join(sorted({s.status.message for s in fallback})),
            )
        if stale:
            return SignalHealth(
                "False", Reason.STALE, "; ".join(sorted({s.status.message for s in stale}))
            )
        return SignalHealth()

    async def _reconcile(self, body: Mapping[str, Any], now: datetime) -> None:
        meta = body["metadata"]
        ref = IdepRef(meta["namespace"], meta["name"])
        uid = meta["uid"]
        generation = int(meta.get("generation") or 0)
        spec = self.world.spec_of(body)
        rejection = self.rejections.get(ref)
        if isinstance(spec, Rejection):
            rejection = spec
        model_plan = self.memory.plans.get(ref) if rejection is None else None
        if rejection is None and ref in self.memory.failures:
            rejection = Rejection(Reason.SOLVER_FAILED, self.memory.failures[ref])
        advise = isinstance(spec, InferenceDeploymentSpec) and spec.placement.mode == "Advise"
        conflict = None
        if model_plan is not None and isinstance(spec, InferenceDeploymentSpec) and not advise:
            try:
                await self._reconcile_children(
                    Owner(ref.namespace, ref.name, uid, spec), model_plan, body
                )
            except ChildConflictError as err:
                conflict = str(err)
        regions_used = sorted({p.region for p in model_plan.pools}) if model_plan else []
        rtt = self.plan_rtt()
        decision, outcome = self.memory.decisions.get(ref), self.memory.outcomes.get(ref)
        facts = IdepFacts(
            name=ref.name,
            generation=generation,
            advise=advise,
            pinned=isinstance(spec, InferenceDeploymentSpec) and spec.scaling.replicas is not None,
            plan=model_plan,
            rejection=(rejection.reason, rejection.message) if rejection else None,
            missing_regions=self.missing_regions.get(ref, []),
            signals=self._signal_health(regions_used),
            ready=self._ready_by_pool(ref.namespace, ref.name),
            rtt_ms=rtt,
            conflict=conflict,
            autoscaler=(
                status_of(decision, outcome)
                if decision is not None and outcome is not None
                else None
            ),
            scaling=(outcome.reason, outcome.message) if outcome is not None else None,
            routed=(
                routed_condition(
                    Owner(ref.namespace, ref.name, uid, spec),
                    [z.zone for z in model_plan.zones] if model_plan else [],
                    self.world.ideps,
                    self.world.gateways,
                )
                if isinstance(spec, InferenceDeploymentSpec) and not advise
                else None
            ),
        )
        previous: Mapping[str, Any] = body.get("status") or {}
        status = idep_status(facts, previous, now).to_api()
        self._record_metrics(
            ref, model_plan, spec if isinstance(spec, InferenceDeploymentSpec) else None
        )
        if comparable(status) != comparable(previous):
            written = await self.actuator.apply_status(
                "InferenceDeployment", ref.namespace, ref.name, status
            )
            if not written and not await self._still_there(body):
                return
        await self._events(body, status, previous)

    async def _still_there(self, body: Mapping[str, Any]) -> bool:
        """Whether an InferenceDeployment a write could not find still exists. A deletion the
        watch missed (made while it reconnected, or between the first listing and the watch)
        never sends an event: without this the operator would plan and write for it forever."""
        meta = body["metadata"]
        if await self.actuator.exists("InferenceDeployment", meta["namespace"], meta["name"]):
            return True
        log.info("%s/%s is gone: forgetting it", meta["namespace"], meta["name"])
        if self.world.observe_idep(body, deleted=True) is Change.REPLAN and self.wake:
            self.wake()
        return False

    def plan_rtt(self) -> dict[str, dict[str, float]]:
        rtt: dict[str, dict[str, float]] = {}
        for region in self.valid_regions:
            for entry in region.spec.rtt:
                rtt.setdefault(entry.zone, {})[region.metadata.name] = entry.ms
        return rtt

    async def _reconcile_children(
        self, owner: Owner, model_plan: ModelPlan, body: Mapping[str, Any]
    ) -> None:
        selectors = self._selectors()
        replicas = {k: n for k, n in model_plan.replicas().items() if k[0] in selectors}
        desired = desired_children(owner, replicas, selectors, self.spare_gpus)
        desired += routes_for(owner, model_plan.routes, self._owned(owner), self.world.gateways)
        policies = propagation_policies(owner, desired, self._members())
        observed = self._observed_children(owner.namespace)
        if claims := foreign_claims(policies, observed):
            raise ChildConflictError("; ".join(claims))
        writes = writes_for(desired + policies, observed, owner.uid, self.crowded)
        for repair in writes.repairs:
            self.metrics.drift_repairs.labels(kind=repair.kind).inc()
            await self.actuator.event(
                body, reason="DriftRepaired", message=repair.message(), warning=True
            )
        for write in writes.make:
            await self._apply_child(write)
        holds, ref = self.memory.holds, IdepRef(owner.namespace, owner.name)
        if writes.held:
            since = holds.setdefault(ref, time.monotonic())
            if time.monotonic() - since < self.settings.make_before_break_timeout_seconds:
                return
            log.warning(
                "%s/%s: replacements not ready in time; scaling down anyway",
                owner.namespace,
                owner.name,
            )
        holds.pop(ref, None)
        for change in writes.brk:
            if isinstance(change, Apply):
                await self._apply_child(change)
            elif isinstance(change, Delete):
                await self.actuator.delete(change.kind, change.namespace, change.name)

    async def _apply_child(self, write: Apply) -> None:
        """Apply a child; a new one whose name another owner holds is a ChildConflictError."""
        try:
            await self.actuator.apply(write.manifest, force=not write.new)
        except ApiError as err:
            if err.status != 409:
                raise
            meta = write.manifest["metadata"]
            self.metrics.errors.labels(stage="child-conflict").inc()
            raise ChildConflictError(
                f"{write.manifest['kind']} {meta['namespace']}/{meta['name']} exists and is"
                " not gridplace's; rename or remove it"
            ) from err

    async def _events(
        self, body: Mapping[str, Any], status: Mapping[str, Any], previous: Mapping[str, Any]
    ) -> None:
        ref = IdepRef(body["metadata"]["namespace"], body["metadata"]["name"])
        summary = status.get("placementSummary", "")
        before = self.memory.summaries.get(ref, previous.get("placementSummary", ""))
        self.memory.summaries[ref] = summary
        if summary and summary != before:
            reasons = "; ".join((status.get("explanation") or [])[:2])
            message = f"placement {before or 'none'} -> {summary}. {reasons}".strip()
            await self.actuator.event(
                body, reason="Replaced" if before else "Placed", message=message
            )
        old = {c.get("type"): c for c in previous.get("conditions") or []}
        said: set[str] = set()  # Ready repeats Placed's reason: one Event for both
        for cond in status.get("conditions") or []:
            # Replicas that are still starting are progress, not a problem worth a Warning.
            if cond["status"] != "False" or cond["reason"] == Reason.REPLICAS_NOT_READY:
                continue
            warned = cond["type"] in ("Placed", "Ready") or cond["reason"] in (
                Reason.SLO_BREACHED,
                Reason.SLO_UNREACHABLE,
            )
            if not warned:
                continue
            was = old.get(cond["type"])
            changed = (
                was is None or was.get("status") != "False" or was.get("reason") != cond["reason"]
            )
            if changed and cond["reason"] not in said:
                said.add(cond["reason"])
                await self.actuator.event(
                    body, reason=cond["reason"], message=cond["message"], warning=True
                )

    def _record_metrics(
        self, ref: IdepRef, model_plan: ModelPlan | None, spec: InferenceDeploymentSpec | None
    ) -> None:
        ids = {"namespace": ref.namespace, "inference_deployment": ref.name}
        if spec is not None:
            slo = spec.slo
            if slo.p95_time_to_first_token_seconds is not None:
                self.metrics.slo.labels(**ids, metric="ttft").set(
                    slo.p95_time_to_first_token_seconds
                )
            if slo.p95_end_to_end_seconds is not None:
                self.metrics.slo.labels(**ids, metric="e2e").set(slo.p95_end_to_end_seconds)
        if model_plan is None:
            return
        self.metrics.carbon.labels(**ids).set(model_plan.outcome.carbon_g_per_hour)
        self.metrics.cost.labels(**ids).set(model_plan.outcome.usd_per_hour)
        self.metrics.unmet.labels(**ids).set(model_plan.outcome.unserved_rps)
        for pool in model_plan.pools:
            self.metrics.replicas.labels(**ids, region=pool.region, gpu_type=pool.gpu_type).set(
                pool.replicas
            )

    async def _write_region_status(
        self, body: Mapping[str, Any], invalid: Mapping[str, str], now: datetime
    ) -> None:
        name = body["metadata"]["name"]
        pools = [
            (p.gpu_type, p.nodes, p.allocatable, p.available)
            for (region, _), p in self.inventory.pools.items()
            if region == name
        ]
        carbon = self.resolved.get((name, "carbonIntensity"))
        price = self.resolved.get((name, "powerPrice"))
        facts = RegionFacts(
            generation=int(body["metadata"].get("generation") or 0),
            pools=pools,
            carbon=carbon.status if carbon else None,
            price=price.status if price else None,
            invalid=invalid.get(name),
            ceded=self.inventory.ceded.get(name, {}),
            unavailable=self.inventory.unavailable.get(name),
            unresolved={k: why for (r, k), why in self.unresolved.items() if r == name},
        )
        previous: Mapping[str, Any] = body.get("status") or {}
        status = region_status(facts, previous, now).to_api()
        if _region_comparable(status) != _region_comparable(previous):
            await self.actuator.apply_status("Region", None, name, status)


def _unless_cut(problem: Problem, plan: Plan, min_improvement: float) -> Plan:
    """`plan`, or, when the solve's safety net cut it (a slow or busy CPU, not the inputs,
    decided where it stopped), the plan that keeps what runs and places new models greedily
    around it, unless the cut plan is better by the hysteresis margin: a plan that depends on
    the machine must not move replicas, nor flip back on the next cycle."""
    if not plan.time_limit_reached:
        return plan
    held = hold_running(problem, plan, min_improvement)
    if not keep_running_plan(plan, held, min_improvement):
        log.warning(
            "the solve reached its time limit (--solve-time-limit) at a %.2g%% gap; applying its"
            " plan: nothing runs that it could keep, or it is better by more than %.0f%%",
            plan.gap * 100,
            min_improvement * 100,
        )
        return plan
    assert held is not None
    log.warning(
        "the solve reached its time limit (--solve-time-limit) at a %.2g%% gap: the running"
        " replicas stay, new models are placed greedily (raise --solve-time-limit or give the"
        " operator more CPU)",
        plan.gap * 100,
    )
    return held


def _gpus_taken(plan: Plan, problem: Problem) -> dict[tuple[str, str], int]:
    """GPUs a plan's replicas occupy per (region, GPU type)."""
    models = {m.name: m for m in problem.models}
    taken: dict[tuple[str, str], int] = {}
    for pool in plan.pools:
        per_replica = models[pool.model].profiles[pool.gpu_type].gpus_per_replica
        key = (pool.region, pool.gpu_type)
        taken[key] = taken.get(key, 0) + pool.replicas * per_replica
    return taken


def _region_comparable(status: Mapping[str, Any]) -> dict[str, Any]:
    """Region status minus what ticks with the clock (signal ages), to avoid needless writes."""
    out = comparable(status)
    signals = {}
    for kind, value in (status.get("signals") or {}).items():
        signals[kind] = {k: v for k, v in value.items() if k not in ("ageSeconds", "observedAt")}
    out["signals"] = signals
    return out
