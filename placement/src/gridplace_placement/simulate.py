"""Replay a scenario hour by hour and compare placement policies on carbon, cost, SLO and churn.

Every hour each policy re-plans one joint problem built from that hour's grid carbon intensity,
electricity price and demand and the scenario's GPU capacity. gridplace plans against its own
placement of the previous hour (`current`) under the churn budget; the baselines re-plan from
scratch. Churn is measured the same way for all: replicas of the previous hour no longer running.
Beside the policies runs an offline bound: per hour, the least carbon of any integer plan (the
MILP solver's dual bound on "minimise carbon") over the same demand, SLO-eligible routes, GPU
capacity and floors, with no previous placement and no churn budget. Once churn is relaxed the
hours are independent, so the sum of the hourly optima is a lower bound on the carbon of any
policy that serves the same demand over the period, even one that knew every future hour.

Negative electricity prices are real (the grid pays for consumption when it has too much). The
policies decide with the price floored at 0: power one is paid to use is at least free, but it is
never a reason to run a replica the demand does not need (a negative cost per replica would fill
the region's GPUs with idle replicas to collect the credit). The replay's energy cost is the bill:
it counts each hour's energy at the signed price, credit included, for every policy alike.

Demand a plan leaves unserved is recorded per hour, model and user zone with the plan's reason
(maxReplicas reached, no GPU capacity within the SLO, ...), and reported in spans of hours.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from ortools.linear_solver.python import model_builder_helper as mbh

from gridplace_placement.builder import compile_problem
from gridplace_placement.candidates import candidates
from gridplace_placement.extract import moved_replicas
from gridplace_placement.options import SolveOptions
from gridplace_placement.plan import Plan
from gridplace_placement.policies import Policy
from gridplace_placement.problem import Assignment, Problem
from gridplace_placement.routing import glop as glop_solver
from gridplace_placement.routing import sparse_model
from gridplace_placement.scenario import ScenarioData
from gridplace_placement.solver import solve

DEFAULT_POLICIES: tuple[Policy, ...] = (
    "gridplace",
    "latency-nearest",
    "even-spread",
    "cheapest-power",
    "lowest-carbon",
)
STATEFUL: frozenset[str] = frozenset({"gridplace", "naive"})  # honour current and churn budget
BOUND = "bound"
_EPS = 1e-9
UNSERVED_RPS = 1e-6  # less is solver noise, not demand left unserved
SHOWN_SPANS = 12  # unserved-demand spans the table prints; simulation.json has them all


def problem_at(data: ScenarioData, hour: int, current: Sequence[Assignment] = ()) -> Problem:
    """The placement problem of one hour of the scenario."""
    spec = data.spec
    models = [
        {
            "name": m.name,
            "profile": m.profile,
            "gpuTypes": list(m.gpu_types),
            "gpusPerReplica": m.gpus_per_replica,
            "sloP95TtftSeconds": m.p95_ttft_seconds,
            "tpotTargetSeconds": m.tpot_target_seconds,
            "minReplicas": m.min_replicas,
            "maxReplicas": m.max_replicas,
            "availability": {"minRegions": m.min_regions},
            "weights": m.weights.model_dump(),
            "demand": {zone: float(rate[hour]) for zone, rate in data.demand_rps[m.name].items()},
            "promptTokens": data.mean_prompt_tokens,
            "outputTokens": data.mean_output_tokens,
        }
        for m in spec.models
    ]
    regions = [
        {
            "name": r.name,
            "gpus": dict(r.gpus),
            "pue": r.pue,
            "carbonIntensity": float(data.carbon_g_per_kwh[r.name][hour]),
            "powerPriceUsdPerMwh": float(data.price_usd_per_mwh[r.name][hour]),
            "gpuHourPriceUsd": dict(r.gpu_hour_price_usd),
        }
        for r in spec.regions
    ]
    churn = {} if spec.churn_penalty is None else {"churnPenalty": spec.churn_penalty}
    return Problem.model_validate(
        {
            "models": models,
            "regions": regions,
            "rttMs": data.rtt_ms,
            "current": [a.model_dump() for a in current],
            "churnBudget": spec.churn_budget,
            **churn,
        }
    )


def carbon_bound(problem: Problem, *, integer: bool = True, seconds: float = 10.0) -> float:
    """Least carbon (g/h) of any integer plan serving all the demand the problem can serve:
    "minimise carbon" over the MILP's rows (whole replicas, capacity, SLO routes, floors) with no
    current placement and no churn budget, bounded from below by the MILP solver's dual bound.

    With slacks priced far above any carbon, every plan that serves all demand has a carbon equal
    to its objective, which the dual bound cannot exceed; the LP relaxation is a weaker bound of
    the same kind, returned with `integer=False` or if the integer search cannot serve everything
    within `seconds`."""
    relaxed = problem.model_copy(update={"current": (), "churn_budget": None})
    c = compile_problem(relaxed)
    p, k, cols = c.pools, c.routes, c.columns
    if c.milp.num_vars == 0:
        return 0.0
    per_request = p.carbon_per_replica / np.maximum(p.rate, _EPS) + p.carbon_per_request
    penalty = 1e3 * (float(per_request.max(initial=0.0)) + float(p.carbon_per_replica.sum()) + 1)
    carbon = np.zeros(c.milp.num_vars)
    carbon[cols.replicas] = p.carbon_per_replica
    carbon[cols.routed] = p.carbon_per_request[k.pool]
    slack = np.concatenate([cols.unserved, cols.floor_short]).astype(np.int64)
    cost = carbon.copy()
    cost[slack] = penalty
    lower, upper, _, is_int, matrix, row_lower, row_upper = c.milp.arrays()

    def model(integer: bool) -> mbh.ModelBuilderHelper:
        return sparse_model(
            matrix,
            lower=lower,
            upper=upper,
            cost=cost,
            row_lower=row_lower,
            row_upper=row_upper,
            integer=is_int if integer else None,
        )

    glop = glop_solver()
    glop.solve(model(integer=False))
    if not glop.has_solution():  # the slacks keep it feasible: this is a solver failure
        raise RuntimeError(f"carbon bound: GLOP found no solution ({glop.status()})")
    lp = float(carbon @ np.asarray(glop.variable_values(), dtype=np.float64))
    if not integer:
        return lp
    highs = mbh.ModelSolverHelper("highs")
    highs.set_time_limit_in_seconds(seconds)
    # Presolve off: HiGHS may print to stdout when a presolved MIP's solution needs repair,
    # which would corrupt `gridplace simulate --json`; these MILPs are small.
    highs.set_solver_specific_parameters(
        "mip_rel_gap=1e-6\nthreads=1\npresolve=off\noutput_flag=false"
    )
    highs.solve(model(integer=True))
    if not highs.has_solution():
        return lp
    values = np.asarray(highs.variable_values(), dtype=np.float64)
    if float(values[slack].sum()) > 1e-6:  # shortage: the dual bound carries penalties
        return lp
    return max(lp, float(highs.best_objective_bound()))


def stopped_replicas(previous: Sequence[Assignment], plan: Plan) -> int:
    """Replicas running before that the plan no longer runs, per (model, region, GPU type)."""
    now = plan.replicas()
    return sum(max(a.replicas - now.get((a.model, a.region, a.gpu_type), 0), 0) for a in previous)


def moved_replicas_of(problem: Problem, plan: Plan) -> int:
    """Moves the plan makes against the problem's current placement, measured as the churn
    budget counts them (stops beyond what falling demand frees, starts beyond what rising
    demand needs), whichever policy made it."""
    c = compile_problem(problem)
    p = c.pools
    planned = plan.replicas()
    models, regions = c.problem.models, c.problem.regions
    replicas = np.array(
        [
            planned.get((models[int(m)].name, regions[int(r)].name, c.gpu_types[int(g)]), 0)
            for m, r, g in zip(p.model, p.region, p.gpu, strict=True)
        ],
        dtype=np.float64,
    )
    return round(float(moved_replicas(c, replicas).sum()))


def energy_kwh_by_region(problem: Problem, plan: Plan) -> dict[str, float]:
    """Facility energy (kWh, PUE included) the plan draws in each region in its hour.

    The placement model prices energy through its carbon coefficients (kWh x PUE x intensity);
    at an intensity of 1 gCO2/kWh those coefficients are the energy itself, so the model's own
    energy rule is reused rather than written again here."""
    metering = problem.model_copy(
        update={
            "regions": tuple(
                r.model_copy(update={"carbon_intensity": 1.0}) for r in problem.regions
            )
        }
    )
    c = candidates(metering)
    p, models, regions = c.pools, metering.models, metering.regions
    index = {
        (models[int(m)].name, regions[int(r)].name, c.gpu_types[int(g)]): i
        for i, (m, r, g) in enumerate(zip(p.model, p.region, p.gpu, strict=True))
    }
    energy: dict[str, float] = {}
    for pool in plan.pools:
        i = index[(pool.model, pool.region, pool.gpu_type)]
        kwh = pool.replicas * p.carbon_per_replica[i] + pool.load_rps * p.carbon_per_request[i]
        energy[pool.region] = energy.get(pool.region, 0.0) + float(kwh)
    return energy


def energy_bill_usd(problem: Problem, plan: Plan) -> float:
    """USD the plan's energy costs in its hour at each region's signed price.

    The plan's own energy cost is the one its policy decided with, where a negative price counts
    as 0; the bill pays the credit of a negative price too, so that the replay reports what the
    energy would have cost."""
    energy = energy_kwh_by_region(problem, plan)
    return sum(
        energy.get(r.name, 0.0) * r.power_price_usd_per_mwh / 1000.0 for r in problem.regions
    )


@dataclass(frozen=True)
class UnservedDemand:
    """Demand of one model in one user zone that a plan left unserved in one hour, and why."""

    hour: int
    model: str
    zone: str
    rps: float
    reason: str


def unserved_demand(hour: int, plan: Plan) -> list[UnservedDemand]:
    """Every (model, user zone) of the plan with demand left unserved, with the plan's reason."""
    reasons = {m.name: m.reasons for m in plan.models}
    return [
        UnservedDemand(
            hour, z.model, z.zone, z.unserved_rps, unserved_reason(reasons[z.model], z.zone)
        )
        for z in plan.zones
        if z.unserved_rps > UNSERVED_RPS
    ]


def unserved_reason(reasons: Sequence[str], zone: str) -> str:
    """The binding reason a plan gives for a zone's unserved demand.

    A plan explains unserved demand as `<rate> req/s from zone <zone> unserved: <why>` for the
    first zones of a model; for a zone beyond those, the model's other reasons (capacity full,
    floors, churn budget) are what bound it."""
    marker = f" from zone {zone} unserved: "
    for reason in reasons:
        _, found, why = reason.partition(marker)
        if found:
            return why
    others = [r for r in reasons if " unserved: " not in r]
    return "; ".join(others) or "the plan gives no reason"


def capacity_overruns(problem: Problem, plan: Plan) -> list[str]:
    """(region, GPU type) pairs where the plan uses more GPUs than the region has."""
    profiles = {m.name: m.profiles for m in problem.models}
    used: dict[tuple[str, str], int] = {}
    for pool in plan.pools:
        gpus = pool.replicas * profiles[pool.model][pool.gpu_type].gpus_per_replica
        used[(pool.region, pool.gpu_type)] = used.get((pool.region, pool.gpu_type), 0) + gpus
    have = {(r.name, g): n for r in problem.regions for g, n in r.gpus.items()}
    return [
        f"{region}/{gpu}: {n} GPUs > {have.get((region, gpu), 0)}"
        for (region, gpu), n in sorted(used.items())
        if n > have.get((region, gpu), 0)
    ]


@dataclass
class PolicyRun:
    """Hourly outcomes of one policy (index = hour of the period)."""

    policy: str
    carbon_g: list[float] = field(default_factory=list)
    energy_usd: list[float] = field(default_factory=list)  # at the signed price: energy_bill_usd
    gpu_usd: list[float] = field(default_factory=list)
    demand_rps: list[float] = field(default_factory=list)
    slo_met_rps: list[float] = field(default_factory=list)  # served in zones meeting the SLO
    unserved_rps: list[float] = field(default_factory=list)
    p95_weighted_s: list[float] = field(default_factory=list)  # sum of served rps x p95
    stopped: list[int] = field(default_factory=list)
    moved: list[int] = field(default_factory=list)  # what the churn budget counts
    replicas: list[int] = field(default_factory=list)
    solve_seconds: list[float] = field(default_factory=list)
    overruns: list[list[str]] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    unserved: list[UnservedDemand] = field(default_factory=list)

    def record(self, problem: Problem, plan: Plan, stopped: int, moved: int) -> None:
        """The outcomes of the plan for the next hour of the period."""
        served_p95 = [
            (z.demand_rps - z.unserved_rps, z.predicted_p95_ttft_seconds, z.slo_met)
            for z in plan.zones
        ]
        self.unserved.extend(unserved_demand(len(self.carbon_g), plan))
        self.carbon_g.append(plan.carbon_g_per_hour)
        self.energy_usd.append(energy_bill_usd(problem, plan))
        self.gpu_usd.append(plan.gpu_usd_per_hour)
        self.demand_rps.append(sum(z.demand_rps for z in plan.zones))
        self.slo_met_rps.append(sum(rate for rate, _, met in served_p95 if met))
        self.unserved_rps.append(plan.unserved_rps)
        self.p95_weighted_s.append(sum(rate * (p95 or 0.0) for rate, p95, _ in served_p95))
        self.stopped.append(stopped)
        self.moved.append(moved)
        self.replicas.append(sum(pool.replicas for pool in plan.pools))
        self.solve_seconds.append(plan.timing.total_seconds)
        self.overruns.append(capacity_overruns(problem, plan))
        self.statuses[plan.status.value] = self.statuses.get(plan.status.value, 0) + 1

    def totals(self) -> dict[str, Any]:
        demand = sum(self.demand_rps)
        served = demand - sum(self.unserved_rps)
        solve = np.array(self.solve_seconds) if self.solve_seconds else np.zeros(1)
        return {
            "carbon_kg": sum(self.carbon_g) / 1000.0,
            "energy_usd": sum(self.energy_usd),
            "gpu_usd": sum(self.gpu_usd),
            "cost_usd": sum(self.energy_usd) + sum(self.gpu_usd),
            "slo_attainment": sum(self.slo_met_rps) / demand if demand > 0 else 1.0,
            "unserved_share": sum(self.unserved_rps) / demand if demand > 0 else 0.0,
            "mean_p95_ttft_s": sum(self.p95_weighted_s) / served if served > 0 else None,
            "churn_replicas": sum(self.stopped),
            "max_churn_per_hour": max(self.stopped, default=0),
            "moves": sum(self.moved),
            "max_moves_per_hour": max(self.moved, default=0),
            "replica_hours": sum(self.replicas),
            "capacity_overrun_hours": sum(1 for o in self.overruns if o),
            "statuses": dict(sorted(self.statuses.items())),
            "solve_seconds_p50": float(np.percentile(solve, 50)),
            "solve_seconds_max": float(solve.max()),
        }


@dataclass(frozen=True)
class UnservedSpan:
    """Consecutive hours in which a policy left a model's demand in a zone unserved for one
    reason."""

    policy: str
    model: str
    zone: str
    reason: str
    first_hour: int
    last_hour: int
    max_rps: float

    def to_dict(self, hours: Sequence[datetime]) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "model": self.model,
            "zone": self.zone,
            "from": hours[self.first_hour].isoformat(),
            "to": hours[self.last_hour].isoformat(),
            "hours": self.last_hour - self.first_hour + 1,
            "max_unserved_rps": self.max_rps,
            "reason": self.reason,
        }


def unserved_spans(run: PolicyRun) -> list[UnservedSpan]:
    """The run's unserved demand, hour after hour of one (model, zone, reason) joined."""
    spans: list[UnservedSpan] = []
    latest: dict[tuple[str, str, str], int] = {}  # (model, zone, reason) -> its latest span
    for u in sorted(run.unserved, key=lambda u: (u.hour, u.model, u.zone)):
        key = (u.model, u.zone, u.reason)
        i = latest.get(key)
        if i is not None and spans[i].last_hour == u.hour - 1:
            spans[i] = replace(spans[i], last_hour=u.hour, max_rps=max(spans[i].max_rps, u.rps))
            continue
        latest[key] = len(spans)
        spans.append(UnservedSpan(run.policy, u.model, u.zone, u.reason, u.hour, u.hour, u.rps))
    return spans


@dataclass
class Simulation:
    scenario: str
    hours: list[datetime]
    churn_budget: int | None
    runs: dict[str, PolicyRun]
    bound_carbon_g: list[float]
    negative_prices: dict[str, list[float]] = field(default_factory=dict)  # region -> prices < 0

    def unserved_spans(self) -> list[UnservedSpan]:
        return [span for run in self.runs.values() for span in unserved_spans(run)]

    def negative_price_summary(self) -> dict[str, Any] | None:
        """Region-hours with a negative price in the replayed hours, or None if there were
        none: the policies decided with those prices floored at 0, the costs count them."""
        counts = {region: len(p) for region, p in self.negative_prices.items() if p}
        if not counts:
            return None
        return {
            "region_hours": counts,
            "lowest_usd_per_mwh": min(min(p) for p in self.negative_prices.values() if p),
            "decided_as_usd_per_mwh": 0.0,
            "cost_counts_signed_price": True,
        }

    def totals(self) -> dict[str, dict[str, Any]]:
        out = {name: run.totals() for name, run in self.runs.items()}
        if self.bound_carbon_g:
            out[BOUND] = {"carbon_kg": sum(self.bound_carbon_g) / 1000.0}
        return out

    def comparisons(self, policy: str = "gridplace") -> dict[str, dict[str, float | None]]:
        """`policy` against every other policy: % change of carbon and cost, and the savings
        efficiency (baseline - policy) / (baseline - bound) on carbon."""
        totals = self.totals()
        if policy not in totals:
            return {}
        mine = totals[policy]
        bound = totals.get(BOUND, {}).get("carbon_kg")
        out: dict[str, dict[str, float | None]] = {}
        for name, theirs in totals.items():
            if name in (policy, BOUND):
                continue
            room = theirs["carbon_kg"] - bound if bound is not None else None
            out[name] = {
                "carbon_change_pct": _pct(mine["carbon_kg"], theirs["carbon_kg"]),
                "cost_change_pct": _pct(mine["cost_usd"], theirs["cost_usd"]),
                "carbon_savings_efficiency": (
                    (theirs["carbon_kg"] - mine["carbon_kg"]) / room
                    if room is not None and room > _EPS
                    else None
                ),
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "start": self.hours[0].isoformat() if self.hours else None,
            "hours": len(self.hours),
            "churn_budget": self.churn_budget,
            "totals": self.totals(),
            "gridplace_vs": self.comparisons(),
            "unserved": [span.to_dict(self.hours) for span in self.unserved_spans()],
            "negative_prices": self.negative_price_summary(),
            "hourly": {
                "time": [h.isoformat() for h in self.hours],
                BOUND: {"carbon_g": self.bound_carbon_g},
                **{
                    name: {
                        "carbon_g": run.carbon_g,
                        "cost_usd": [
                            e + g for e, g in zip(run.energy_usd, run.gpu_usd, strict=True)
                        ],
                        "slo_met_rps": run.slo_met_rps,
                        "demand_rps": run.demand_rps,
                        "unserved_rps": run.unserved_rps,
                        "unserved": [
                            {
                                "hour": u.hour,
                                "model": u.model,
                                "zone": u.zone,
                                "rps": u.rps,
                                "reason": u.reason,
                            }
                            for u in run.unserved
                        ],
                        "stopped": run.stopped,
                        "moved": run.moved,
                        "replicas": run.replicas,
                    }
                    for name, run in self.runs.items()
                },
            },
        }


def _pct(value: float, reference: float) -> float | None:
    return 100.0 * (value - reference) / reference if abs(reference) > _EPS else None


def simulate(
    data: ScenarioData,
    *,
    policies: Sequence[Policy] = DEFAULT_POLICIES,
    options: SolveOptions | None = None,
    hours: int | None = None,
    bound: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> Simulation:
    """Replay the first `hours` hours of the scenario (default: the whole period)."""
    length = len(data.hours) if hours is None else min(hours, len(data.hours))
    runs: dict[str, PolicyRun] = {}
    for policy in policies:
        run = PolicyRun(policy)
        current: list[Assignment] = []
        for hour in range(length):
            problem = problem_at(data, hour, current)
            # Baselines re-plan from scratch; the optimisers plan against what runs.
            planned = problem if policy in STATEFUL else problem.model_copy(update={"current": ()})
            plan = solve(planned, options, policy)
            run.record(
                problem, plan, stopped_replicas(current, plan), moved_replicas_of(problem, plan)
            )
            current = [
                Assignment(
                    model=pool.model,
                    region=pool.region,
                    gpu_type=pool.gpu_type,
                    replicas=pool.replicas,
                )
                for pool in plan.pools
                if pool.replicas > 0
            ]
            if progress is not None:
                progress(policy, hour + 1, length)
        runs[policy] = run
    bound_g: list[float] = []
    if bound:
        for hour in range(length):
            bound_g.append(carbon_bound(problem_at(data, hour)))
            if progress is not None:
                progress(BOUND, hour + 1, length)
    return Simulation(
        scenario=data.spec.name,
        hours=data.hours[:length],
        churn_budget=data.spec.churn_budget,
        runs=runs,
        bound_carbon_g=bound_g,
        negative_prices={
            region: [float(p) for p in prices[:length] if p < 0]
            for region, prices in data.price_usd_per_mwh.items()
        },
    )


def summary_table(sim: Simulation) -> str:
    """A fixed-width table of the totals, one row per policy and the bound."""
    totals = sim.totals()
    vs = sim.comparisons()
    head = (
        f"{'policy':<16}{'carbon kg':>11}{'cost $':>10}{'SLO met':>9}"
        f"{'unserved':>10}{'p95 s':>7}{'churn':>7}{'moves':>7}{'replica-h':>11}{'solve p50':>11}"
    )
    lines = [
        f"{sim.scenario}: {len(sim.hours)} hours from "
        f"{sim.hours[0]:%Y-%m-%d %H:%M} UTC, churn budget {sim.churn_budget}"
        if sim.hours
        else sim.scenario,
        head,
        "-" * len(head),
    ]
    for name, t in totals.items():
        if name == BOUND:
            lines.append(f"{name:<16}{t['carbon_kg']:>11.2f}")
            continue
        p95 = t["mean_p95_ttft_s"]
        lines.append(
            f"{name:<16}{t['carbon_kg']:>11.2f}{t['cost_usd']:>10.2f}"
            f"{100 * t['slo_attainment']:>8.3f}%"
            f"{100 * t['unserved_share']:>9.3f}%{'-' if p95 is None else f'{p95:.3f}':>7}"
            f"{t['churn_replicas']:>7}{t['moves']:>7}{t['replica_hours']:>11}"
            f"{1000 * t['solve_seconds_p50']:>9.1f}ms"
        )
    lines.append("SLO met: share of demand served in zone-hours whose predicted p95 meets the SLO")
    lines.append("churn: replicas stopped; moves: what the churn budget counts (scaling is free)")
    lines.extend(_negative_price_lines(sim))
    lines.extend(_unserved_lines(sim))
    for name, c in vs.items():
        eff = c["carbon_savings_efficiency"]
        carbon, cost = c["carbon_change_pct"], c["cost_change_pct"]
        lines.append(
            f"gridplace vs {name}: carbon {_fmt_pct(carbon)}, cost {_fmt_pct(cost)}"
            + ("" if eff is None else f", carbon savings efficiency {eff:.2f}")
        )
    return "\n".join(lines)


def _negative_price_lines(sim: Simulation) -> list[str]:
    """One line when some replayed hours had negative prices: how many, and how they count."""
    summary = sim.negative_price_summary()
    if summary is None:
        return []
    counts = ", ".join(f"{r} {n}" for r, n in sorted(summary["region_hours"].items()))
    return [
        f"negative prices: {sum(summary['region_hours'].values())} region-hours ({counts});"
        f" lowest {summary['lowest_usd_per_mwh']:g} USD/MWh. Policies decide with them as 0"
        " (free power, never a reason for more replicas); cost counts the credit"
    ]


def _unserved_lines(sim: Simulation) -> list[str]:
    """Where demand went unserved, policy by policy, in spans of hours with the reason."""
    spans = sim.unserved_spans()
    if not spans:
        return []
    lines = ["unserved demand (policy, UTC hours, model/zone, peak, reason):"]
    for span in spans[:SHOWN_SPANS]:
        first, last = sim.hours[span.first_hour], sim.hours[span.last_hour]
        when = f"{first:%m-%d %H:00}" + ("" if last == first else f"..{last:%m-%d %H:00}")
        lines.append(
            f"  {span.policy:<16}{when:<26}{span.model}/{span.zone}"
            f"  {span.max_rps:.3g} req/s  {span.reason}"
        )
    if len(spans) > SHOWN_SPANS:
        lines.append(f"  ... {len(spans) - SHOWN_SPANS} more spans in simulation.json (unserved)")
    return lines


def _fmt_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f}%"


def plot(sim: Simulation, path: Path) -> Path:
    """Hourly carbon and cost per policy, and the carbon-cost trade-off, as a PNG."""
    import matplotlib  # noqa: PLC0415 - optional dependency (the `plot` extra), loaded on demand

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    totals = sim.totals()
    colours = {name: f"C{i}" for i, name in enumerate(sim.runs)}
    days = np.arange(len(sim.hours)) / 24.0
    fig = plt.figure(figsize=(13, 8.5), layout="constrained")
    grid = fig.add_gridspec(2, 3)
    ax_carbon = fig.add_subplot(grid[0, :2])
    ax_cost = fig.add_subplot(grid[1, :2], sharex=ax_carbon)
    ax_trade = fig.add_subplot(grid[0, 2])
    ax_bars = fig.add_subplot(grid[1, 2])
    window = min(6, max(len(sim.hours), 1))
    for name, run in sim.runs.items():
        width = 2.2 if name == "gridplace" else 1.1
        ax_carbon.plot(
            days,
            _smooth(np.array(run.carbon_g) / 1000, window),
            label=name,
            color=colours[name],
            lw=width,
        )
        cost = np.array(run.energy_usd) + np.array(run.gpu_usd)
        ax_cost.plot(days, _smooth(cost, window), label=name, color=colours[name], lw=width)
    if sim.bound_carbon_g:
        ax_carbon.plot(
            days,
            _smooth(np.array(sim.bound_carbon_g) / 1000, window),
            label="offline bound",
            color="black",
            ls="--",
            lw=1.2,
        )
    ax_carbon.set_ylabel(f"kgCO2 per hour ({window} h mean)")
    ax_carbon.set_title("Carbon emitted, hour by hour")
    ax_carbon.legend(ncols=3, fontsize=8)
    ax_cost.set_ylabel(f"USD per hour ({window} h mean)")
    ax_cost.set_xlabel(f"days since {sim.hours[0]:%Y-%m-%d %H:%M} UTC" if sim.hours else "days")
    ax_cost.set_title("Energy (+ GPU-hour) cost, hour by hour")
    middle = float(np.median([totals[n]["carbon_kg"] for n in sim.runs])) if sim.runs else 0.0
    for name in sim.runs:
        t = totals[name]
        right = t["carbon_kg"] > middle  # label towards the centre so it stays inside the axes
        ax_trade.scatter(t["carbon_kg"], t["cost_usd"], s=80, color=colours[name])
        ax_trade.annotate(
            f"{name}\nSLO {100 * t['slo_attainment']:.1f}%",
            (t["carbon_kg"], t["cost_usd"]),
            textcoords="offset points",
            xytext=(-6, 4) if right else (6, 4),
            ha="right" if right else "left",
            fontsize=8,
        )
    if BOUND in totals:
        ax_trade.axvline(totals[BOUND]["carbon_kg"], color="black", ls="--", lw=1)
        ax_trade.annotate(
            "carbon bound",
            (totals[BOUND]["carbon_kg"], ax_trade.get_ylim()[0]),
            rotation=90,
            fontsize=8,
            xytext=(3, 6),
            textcoords="offset points",
        )
    ax_trade.margins(0.25)
    ax_trade.set_xlabel("total kgCO2")
    ax_trade.set_ylabel("total USD")
    ax_trade.set_title("Trade-off over the period (lower left is better)")
    names = list(sim.runs)
    p95 = [totals[n]["mean_p95_ttft_s"] or 0.0 for n in names]
    ax_bars.barh(names, p95, color=[colours[n] for n in names])
    ax_bars.invert_yaxis()
    ax_bars.set_xlabel("demand-weighted predicted p95 TTFT (s)")
    ax_bars.set_title("Latency users see")
    fig.suptitle(f"{sim.scenario}: {len(sim.hours)} hours replayed", fontsize=12)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _smooth(values: np.ndarray[Any, np.dtype[np.float64]], window: int) -> Any:
    if window <= 1 or values.size < window:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")
