"""Compile a Problem into one sparse MILP over its candidates, or over a subset of their routes.

The pieces live beside it: `candidates` prunes the pools and routes and prices them,
`formulation` writes the MILP's constraint families, `milp` holds the MILP as arrays. This module
joins them into `Compiled`, what the solver, the baselines and the plan's extraction work on.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from gridplace_placement.arrays import FloatArray, IntArray
from gridplace_placement.candidates import Candidates, Demands, Pools, Routes, candidates
from gridplace_placement.formulation import Columns, build_milp
from gridplace_placement.milp import Milp
from gridplace_placement.problem import Problem

__all__ = ["Compiled", "candidates", "compile_problem", "gpu_use", "restrict"]


@dataclass(frozen=True)
class Compiled:
    """The MILP over a subset of the candidates' routes (and the pools they touch)."""

    problem: Problem
    gpu_types: tuple[str, ...]
    pools: Pools
    routes: Routes
    demands: Demands
    slo_excluded: dict[int, list[tuple[str, str]]]
    milp: Milp
    columns: Columns
    floor_penalty: float
    candidates: Candidates
    pool_ids: IntArray  # index of each pool among the candidates
    route_ids: IntArray  # index of each route among the candidates


def compile_problem(problem: Problem) -> Compiled:
    """The MILP over every candidate route."""
    cands = candidates(problem)
    return restrict(cands, np.ones(cands.routes.size, dtype=bool))


def restrict(cands: Candidates, route_mask: NDArray[np.bool_]) -> Compiled:
    """Build the MILP over the masked routes, the pools they use, pools running now and every
    pool of models with floors (whose pricing would need rows that do not exist yet)."""
    p = cands.pools
    keep = (p.current > 0) | cands.whole_model[p.model]
    keep[cands.routes.pool[route_mask]] = True
    pool_ids = np.flatnonzero(keep)
    remap = np.full(p.size, -1, dtype=np.int64)
    remap[pool_ids] = np.arange(pool_ids.size)
    route_ids = np.flatnonzero(route_mask)
    pools = _take(p, pool_ids)
    routes = _take(cands.routes, route_ids)
    routes = replace(routes, pool=remap[routes.pool])
    # Every (demand pair, kept pool) the candidates allow, routed in this model or not: a
    # zone's rounding cut must count all pools its demand could reach, or adding a route later
    # would loosen a row instead of adding a column (and the pricing bound would not hold).
    reach = remap[cands.routes.pool] >= 0
    milp, columns = build_milp(
        cands.problem,
        pools=pools,
        routes=routes,
        reach_pair=cands.routes.pair[reach],
        reach_pool=remap[cands.routes.pool[reach]],
        demands=cands.demands,
        cap=cands.capacity,
        floor_penalty=cands.floor_penalty,
        n_gpu=len(cands.gpu_types),
        model_cuts=cands.model_cuts,
        free_stops=cands.free_stops,
        free_starts=cands.free_starts,
        node_free=cands.node_free,
    )
    return Compiled(
        cands.problem,
        cands.gpu_types,
        pools,
        routes,
        cands.demands,
        cands.slo_excluded,
        milp,
        columns,
        cands.floor_penalty,
        cands,
        pool_ids,
        route_ids,
    )


_T = TypeVar("_T", Pools, Routes)


def _take(obj: _T, idx: IntArray) -> _T:
    return type(obj)(**{f.name: getattr(obj, f.name)[idx] for f in fields(obj)})


def gpu_use(c: Compiled, replicas: FloatArray) -> FloatArray:
    """GPUs used by (region, GPU type), shaped like the candidates' capacity, flattened."""
    p = c.pools
    n_g = len(c.gpu_types)
    return np.bincount(
        p.region * n_g + p.gpu,
        weights=replicas * p.gpus_per_replica,
        minlength=len(c.problem.regions) * n_g,
    ).astype(np.float64)
