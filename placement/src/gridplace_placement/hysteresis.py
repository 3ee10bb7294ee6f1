"""Hysteresis: keep what runs unless the new plan is clearly better.

A re-plan stops at a gap, so near-tied alternatives would move or re-size a few models every
period. Per model that runs now there are two alternatives to the new plan: its current replicas
as they are, and its current replicas scaled towards the new plan's total (added where the new
plan adds, removed where it removes: scaling, no move), each with its demand re-routed over them.
The model takes the first of the two (as they are, then scaled) that meets every hard constraint
(GPU capacity together with the other models, maxReplicas, pool bounds, minReplicas, the region
floors, surviving a region loss), serves no less of its demand, and that the new plan does not
beat by more than `min_improvement` of the model's own objective. Models share only GPUs (and
the problem-wide churn budget, which keeping cannot break: it moves nothing), so the decisions
are taken model by model, the least improved first, while GPUs allow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gridplace_placement.arrays import FloatArray, IntArray, group_by
from gridplace_placement.builder import Compiled, gpu_use
from gridplace_placement.extract import Allocation, Evaluation, evaluate
from gridplace_placement.routing import route_fixed

_EPS = 1e-6


@dataclass(frozen=True)
class Held:
    """The plan after hysteresis and, per model index it kept, the share of its objective the
    plan it turned down would have saved (negative: that plan was worse)."""

    assignment: Allocation
    improvement: dict[int, float]
    kept_all: bool  # every model that runs now keeps its pools (scaled only)


def keep_current(c: Compiled, new: Allocation, min_improvement: float) -> Held:
    """Per model, keep its current replicas (as they are, else scaled) unless `new` is clearly
    better."""
    p, k, prob = c.pools, c.routes, c.problem
    n_m = len(prob.models)
    runs, keepable = _running_models(c)
    if not keepable.size:
        return Held(new, {}, kept_all=False)
    pools_of = group_by(p.model, n_m)
    as_is, scaled = new.replicas.copy(), new.replicas.copy()
    for m in keepable.tolist():
        mine = pools_of[m]
        as_is[mine] = p.current[mine]
        scaled[mine] = scaled_current(p.current[mine], new.replicas[mine])
    ev_new = evaluate(c, new)
    options = [_Option.of(c, new, ev_new, n, keepable) for n in (as_is, scaled)]
    # The models the new plan moves: its replicas are neither of the two alternatives.
    moves = np.zeros(n_m, dtype=bool)
    moves[keepable] = True
    for option in options:
        moves[keepable] &= option.differs[keepable]
    all_keepable = bool(runs.any()) and keepable.size == int(runs.sum())

    capacity = c.candidates.capacity.ravel()
    gpus = gpu_use(c, new.replicas)
    routes_of = group_by(k.model, n_m)
    n_g = len(c.gpu_types)
    replicas, routed = new.replicas.copy(), new.routed.copy()
    held: dict[int, float] = {}
    saving = np.min([o.improvement for o in options], axis=0)
    for m in keepable[np.argsort(saving[keepable], kind="stable")].tolist():
        mine = pools_of[m]
        where, per_replica = p.region[mine] * n_g + p.gpu[mine], p.gpus_per_replica[mine]
        for option in options:
            if not option.differs[m] or not option.qualifies(m, min_improvement):
                continue
            extra = (option.assignment.replicas[mine] - new.replicas[mine]) * per_replica
            if ((gpus[where] + extra > capacity[where] + _EPS) & (extra > 0)).any():
                continue  # the GPUs it runs on now went to other models
            np.add.at(gpus, where, extra)
            replicas[mine] = option.assignment.replicas[mine]
            routed[routes_of[m]] = option.assignment.routed[routes_of[m]]
            held[m] = float(option.improvement[m])
            break
    if not held:
        return Held(new, {}, kept_all=all_keepable and not moves.any())
    result = Allocation(replicas, routed)
    ev = evaluate(c, result)  # keeping never adds slack; should rounding say so, keep nothing
    if (
        ev.floor_short > ev_new.floor_short
        or ev.churn_over > ev_new.churn_over + _EPS
        or ev.unserved.sum() > ev_new.unserved.sum() + _EPS * (1.0 + c.demands.rate.sum())
    ):
        return Held(new, {}, kept_all=False)
    moves[list(held)] = False
    return Held(result, held, kept_all=all_keepable and not moves.any())


@dataclass(frozen=True)
class _Option:
    """One way for the models that run now to keep their pools, evaluated per model."""

    assignment: Allocation
    differs: NDArray[np.bool_]  # its replicas differ from the new plan's
    feasible: NDArray[np.bool_]  # meets the model's constraints and serves no less
    improvement: FloatArray  # share of its objective the new plan saves against it

    @classmethod
    def of(
        cls,
        c: Compiled,
        new: Allocation,
        ev_new: Evaluation,
        replicas: FloatArray,
        models: IntArray,
    ) -> _Option:
        p, k, d = c.pools, c.routes, c.demands
        n_m = len(c.problem.models)
        differs = (
            np.bincount(p.model, weights=np.abs(replicas - new.replicas), minlength=n_m) > _EPS
        )
        chosen = models[differs[models]]
        routed = new.routed.copy()
        pools = np.flatnonzero(np.isin(p.model, chosen))
        routes = np.flatnonzero(np.isin(k.model, chosen))
        pairs = np.flatnonzero(np.isin(d.model, chosen))
        if chosen.size:
            routing = route_fixed(c, pools, routes, pairs, replicas[pools])
            if routing is None:  # GLOP failed: this way of keeping cannot be judged
                none = np.zeros(n_m, dtype=bool)
                return cls(Allocation(replicas, routed), differs, none, np.zeros(n_m))
            routed[routes] = routing[1]
        option = Allocation(replicas, routed)
        ev = evaluate(c, option)
        demand = np.bincount(d.model, weights=d.rate, minlength=n_m)
        lost = np.bincount(d.model, weights=ev.unserved - ev_new.unserved, minlength=n_m)
        feasible = _meets_model_constraints(c, option) & (lost <= _EPS * (1.0 + demand))
        improvement = (ev.per_model - ev_new.per_model) / np.maximum(np.abs(ev.per_model), 1e-12)
        return cls(option, differs, feasible, improvement)

    def qualifies(self, model: int, min_improvement: float) -> bool:
        return bool(self.feasible[model] and self.improvement[model] < min_improvement)


def scaled_current(current: FloatArray, new: FloatArray) -> FloatArray:
    """The current replicas moved towards the new plan's total by scaling only: added where the
    new plan adds, removed where it removes, the largest changes first."""
    n = current.copy()
    delta = float(new.sum() - current.sum())
    change = np.maximum(new - current, 0.0) if delta > 0 else np.maximum(current - new, 0.0)
    sign = 1.0 if delta > 0 else -1.0
    left = abs(delta)
    for q in np.argsort(-change, kind="stable").tolist():
        if left <= 0:
            break
        step = min(float(change[q]), left)
        n[q] += sign * step
        left -= step
    return n


def _running_models(c: Compiled) -> tuple[NDArray[np.bool_], IntArray]:
    """Which models run now, and those of them whose running replicas all sit in pools the
    plan may still use (a pool in a region now forbidden, say, cannot be kept)."""
    p, prob = c.pools, c.problem
    n_m = len(prob.models)
    index = {m.name: i for i, m in enumerate(prob.models)}
    declared = np.zeros(n_m)
    for a in prob.current:
        declared[index[a.model]] += a.replicas
    known = np.bincount(p.model, weights=p.current, minlength=n_m)
    return declared > 0, np.flatnonzero((declared > 0) & (np.abs(known - declared) < 0.5))


def _meets_model_constraints(c: Compiled, a: Allocation) -> NDArray[np.bool_]:
    """Per model: pool bounds, min/max replicas, region floors and surviving a region loss."""
    p, k, prob = c.pools, c.routes, c.problem
    n_m, n_r = len(prob.models), len(prob.regions)
    n = a.replicas
    ok: NDArray[np.bool_] = np.bincount(p.model, weights=n > p.upper + _EPS, minlength=n_m) == 0
    total = np.bincount(p.model, weights=n, minlength=n_m)
    low = np.array([m.min_replicas for m in prob.models], dtype=np.float64)
    high = np.array([np.inf if m.max_replicas is None else m.max_replicas for m in prob.models])
    ok &= (total >= low - _EPS) & (total <= high + _EPS)
    by_region = np.bincount(p.model * n_r + p.region, weights=n, minlength=n_m * n_r)
    by_region = by_region.reshape(n_m, n_r)
    per_region = np.array([m.availability.per_region_min for m in prob.models], dtype=np.float64)
    regions = (by_region >= per_region[:, None] - _EPS).sum(axis=1)
    ok &= regions >= np.array([m.availability.min_regions for m in prob.models])
    capacity = np.bincount(p.model * n_r + p.region, weights=n * p.rate, minlength=n_m * n_r)
    capacity = capacity.reshape(n_m, n_r)
    served = np.bincount(k.model, weights=a.routed, minlength=n_m)
    survive = np.array([m.availability.survive_region_loss for m in prob.models])
    after_loss = capacity.sum(axis=1) - capacity.max(axis=1, initial=0.0)
    ok &= ~survive | (after_loss >= served - _EPS * (1.0 + served))
    return ok
