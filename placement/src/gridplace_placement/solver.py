"""Solve a placement problem: the joint MILP, its LP bound, and the baselines beside it."""

from __future__ import annotations

import math
import time
from typing import Literal, get_args

import numpy as np
from ortools.linear_solver.python import model_builder_helper as mbh
from pydantic import BaseModel, ConfigDict, Field

from gridplace_placement.builder import Compiled, FloatArray, Milp, compile_problem
from gridplace_placement.extract import Assignment, assemble
from gridplace_placement.plan import Plan, Timing
from gridplace_placement.problem import Problem

Backend = Literal["highs", "scip", "cp_sat"]
Policy = Literal[
    "gridplace", "latency-nearest", "even-spread", "cheapest-power", "lowest-carbon", "naive"
]
POLICIES: tuple[Policy, ...] = get_args(Policy)


class SolveOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Backend = "highs"
    time_limit_seconds: float = Field(default=10.0, gt=0)
    relative_gap: float = Field(default=0.005, ge=0, description="stop within this certified gap")
    deterministic: bool = Field(default=True, description="one thread and a fixed seed")
    seed: int = 0
    warm_start: bool = Field(default=True, description="hint the MILP with the rounded LP")


class ScalingError(ValueError):
    """Integer scaling of the objective would drop or distort a non-zero cost term."""


def integer_objective(
    costs: FloatArray, precision: float = 1e-4, limit: float = 2.0**53
) -> FloatArray:
    """Scale costs to integers for CP-SAT so that no non-zero term rounds to zero.

    The scale makes the smallest non-zero |cost| at least 1/precision; if that pushes the largest
    beyond `limit` (exact integers in a double) the costs span too many orders of magnitude and
    CP-SAT cannot optimise them faithfully, so this raises instead of returning a wrong objective.
    """
    nonzero = np.abs(costs[costs != 0])
    if nonzero.size == 0:
        return np.zeros_like(costs)
    scale = 2.0 ** math.ceil(math.log2(1.0 / (precision * float(nonzero.min()))))
    scaled = np.round(costs * scale)
    if float(np.abs(scaled).max()) > limit or np.any(scaled[costs != 0] == 0):
        raise ScalingError(
            f"objective coefficients span {float(nonzero.min()):.3g}..{float(nonzero.max()):.3g}: "
            f"scaling by {scale:.3g} for CP-SAT would exceed {limit:.3g}; use backend 'highs'"
        )
    return scaled


def solve(
    problem: Problem, options: SolveOptions | None = None, policy: Policy = "gridplace"
) -> Plan:
    """Plan replicas and routes for every model at once. Never raises for a shortage: unmet
    demand, floors or churn budget show up in the plan's status, outcomes and reasons."""
    options = options or SolveOptions()
    t0 = time.perf_counter()
    compiled = compile_problem(problem)
    t1 = time.perf_counter()
    bound, lp_values = lp_relaxation(compiled)
    t2 = time.perf_counter()
    if policy == "gridplace":
        assignment, solved, optimal, mip_bound = _solve_milp(compiled, options, lp_values)
        bound = max(bound, mip_bound)
    else:
        from gridplace_placement.baselines import run_baseline  # noqa: PLC0415 (cycle)

        assignment, solved, optimal = run_baseline(compiled, policy, options)
    t3 = time.perf_counter()
    timing = Timing(
        compile_seconds=t1 - t0,
        bound_seconds=t2 - t1,
        solve_seconds=t3 - t2,
        extract_seconds=0.0,
        total_seconds=0.0,
    )
    plan = assemble(
        compiled,
        assignment,
        policy=policy,
        solved=solved,
        optimal=optimal,
        bound=bound,
        timing=timing,
    )
    t4 = time.perf_counter()
    final = timing.model_copy(update={"extract_seconds": t4 - t3, "total_seconds": t4 - t0})
    return plan.model_copy(update={"timing": final})


def lp_relaxation(c: Compiled) -> tuple[float, FloatArray]:
    """Optimum of the LP relaxation (GLOP): a certified lower bound for every plan."""
    if c.milp.num_vars == 0:
        return 0.0, np.zeros(0)
    helper = _helper(c.milp, integer=False)
    solver = mbh.ModelSolverHelper("glop")
    solver.solve(helper)
    if not solver.has_solution():
        raise RuntimeError(f"LP relaxation failed: {solver.status()}")  # slacks make it feasible
    return float(solver.objective_value()), np.asarray(solver.variable_values(), dtype=np.float64)


def _solve_milp(
    c: Compiled, options: SolveOptions, lp_values: FloatArray
) -> tuple[Assignment, bool, bool, float]:
    cols = c.columns
    milp = c.milp
    if milp.num_vars == 0:  # nothing to place: no demand and no floors
        return Assignment(np.zeros(0), np.zeros(0)), True, True, 0.0
    if options.backend == "cp_sat":
        milp = _with_costs(milp, integer_objective(np.concatenate(milp.cost)))
    helper = _helper(milp, integer=True)
    # OR-Tools 9.15's HiGHS interface crashes (SIGSEGV) when given a hint, so HiGHS runs cold.
    if options.warm_start and options.backend != "highs":
        hint = _rounded_hint(c, lp_values)
        for col, value in zip(cols.replicas.tolist(), hint.tolist(), strict=True):
            helper.add_hint(col, value)
    solver = mbh.ModelSolverHelper(options.backend)
    solver.set_time_limit_in_seconds(options.time_limit_seconds)
    solver.set_solver_specific_parameters(_parameters(options))
    solver.solve(helper)
    status = solver.status()
    if not solver.has_solution():
        zero = Assignment(np.zeros(c.pools.size), np.zeros(c.routes.size))
        return zero, False, False, -math.inf
    values = np.asarray(solver.variable_values(), dtype=np.float64)
    scale = 1.0
    if options.backend == "cp_sat":
        raw = np.concatenate(c.milp.cost)
        nz = raw != 0
        scale = float(np.concatenate(milp.cost)[nz][0] / raw[nz][0]) if nz.any() else 1.0
    mip_bound = float(solver.best_objective_bound()) / scale
    replicas = np.round(values[cols.replicas])
    routed = np.maximum(values[cols.routed], 0.0)
    return Assignment(replicas, routed), True, status == mbh.SolveStatus.OPTIMAL, mip_bound


def _rounded_hint(c: Compiled, lp_values: FloatArray) -> FloatArray:
    """Round the LP replicas up where GPUs allow, so the hint is complete and near the optimum."""
    p = c.pools
    n_lp = lp_values[c.columns.replicas]
    hint = np.minimum(np.ceil(n_lp - 1e-6), p.upper)
    return np.maximum(hint, 0.0)


def _helper(milp: Milp, *, integer: bool) -> mbh.ModelBuilderHelper:
    lower, upper, cost, is_int, matrix, row_lo, row_hi = milp.arrays()
    helper = mbh.ModelBuilderHelper()
    # The shipped stub spells the array type wrongly (ndarray[float64, ...]).
    helper.fill_model_from_sparse_data(lower, upper, cost, row_lo, row_hi, matrix)  # type: ignore[arg-type]
    if integer:
        for col in np.flatnonzero(is_int).tolist():
            helper.set_var_integrality(col, True)
    return helper


def _with_costs(milp: Milp, costs: FloatArray) -> Milp:
    sizes = [len(c) for c in milp.cost]
    parts = np.split(costs, np.cumsum(sizes)[:-1])
    return Milp(
        lower=milp.lower,
        upper=milp.upper,
        cost=list(parts),
        integer=milp.integer,
        rows=milp.rows,
        cols=milp.cols,
        vals=milp.vals,
        row_lower=milp.row_lower,
        row_upper=milp.row_upper,
        num_vars=milp.num_vars,
        num_rows=milp.num_rows,
    )


def _parameters(options: SolveOptions) -> str:
    gap, seed = options.relative_gap, options.seed
    if options.backend == "highs":
        threads = "\nthreads=1" if options.deterministic else ""
        return f"mip_rel_gap={gap}\nrandom_seed={seed}\noutput_flag=false{threads}"
    if options.backend == "scip":
        threads = "\nparallel/maxnthreads = 1" if options.deterministic else ""
        return f"limits/gap = {gap}\nrandomization/randomseedshift = {seed}{threads}"
    workers = "num_workers:1 " if options.deterministic else ""
    return f"{workers}random_seed:{seed} relative_gap_limit:{gap}"
