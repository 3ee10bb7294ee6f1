"""Lagrangian bound and search by model: models share only GPUs and the problem-wide churn budget.

Pricing those coupling rows (`A_R x <= b_R`) with multipliers `y <= 0` splits the MILP into one
small MILP per model: every plan `x` that keeps them has `y.(A_R x - b_R) >= 0`, so

    c.x >= (c - y A_R).x + y.b_R >= y.b_R + sum_m min over model m's plans of (c - y A_R).x_m

which is a lower bound for every integer plan of the full problem, whatever `y <= 0` (weak
Lagrangian duality). With `y` the LP's duals, each model's minimum is at least its share of the
LP optimum (the LP's solution splits by model under its own duals) and at least the dual bound
of the model's own MILP over *all* of its candidate routes and pools, so the bound never falls
below the LP's and rises by what each solved model must round up. The same MILP gives the model
its best plan at those prices; where it fits the GPUs the other models leave and costs less, it
replaces the model's part of the plan. The models with the largest gap between their part of the
plan and their lower bound go first, until the plan is certified or the work budget (a number
of models' MILPs, each within a node limit) is spent: counted work, so the same inputs take the
same steps on any machine; the wall-clock deadline only cuts a search the work would not end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from ortools.linear_solver.python import model_builder_helper as mbh
from scipy.sparse import csr_matrix

from gridplace_placement.arrays import FloatArray, IntArray, group_by
from gridplace_placement.budget import Budget
from gridplace_placement.builder import Compiled, gpu_use, restrict
from gridplace_placement.extract import Allocation, charged_moves, evaluate
from gridplace_placement.routing import proven_bound, sparse_model

# Model MILPs solved before the search judges its pace (a few, so one hard model is not all
# it sees).
PACE_SAMPLE = 5


@dataclass(frozen=True)
class LpSolution:
    """An LP relaxation solved over some of the candidates' routes, with its duals."""

    compiled: Compiled
    bound: float  # certified for the full LP: objective + the pricing shortfall
    values: FloatArray
    duals: FloatArray  # per row, GLOP's sign convention (<= 0 on binding <= rows of a min)
    shortfall: FloatArray  # per model: most the full LP's share lies below this one's (<= 0)


@dataclass
class Lagrangian:
    """The full candidate MILP with its coupling rows priced, split by model."""

    full: Compiled
    price: FloatArray  # reduced objective per column of `full`
    arrays: tuple[
        FloatArray, FloatArray, FloatArray, NDArray[np.bool_], csr_matrix, FloatArray, FloatArray
    ]  # full.milp.arrays()
    cols_of: list[IntArray]  # per model: its columns in `full`
    rows_of: list[IntArray]  # per model: its rows in `full` (the coupling rows belong to none)
    gpu_price: FloatArray  # -y per (region * len(gpu_types) + gpu), >= 0
    churn_price: float  # -y of the problem-wide churn budget, >= 0
    constant: float  # y.b_R and the columns of no model
    lower: FloatArray  # per model: lower bound of its priced minimum
    solved: NDArray[np.bool_]  # per model: its MILP ran
    pools_of: list[IntArray]  # per model: its pools in `full`
    routes_of: list[IntArray]

    @property
    def bound(self) -> float:
        return self.constant + float(self.lower.sum())

    def priced_cost(self, a: Allocation) -> FloatArray:
        """Each model's part of a plan (over `full`) at the Lagrangian prices."""
        c, p = self.full, self.full.pools
        n_m = len(c.problem.models)
        key = p.region * len(c.gpu_types) + p.gpu
        gpus = a.replicas * p.gpus_per_replica * self.gpu_price[key]
        moves = self.churn_price * charged_moves(c, a.replicas)
        per_model: FloatArray = evaluate(c, a).per_model
        return per_model + np.bincount(p.model, weights=gpus, minlength=n_m) + moves

    def search(
        self,
        best: Allocation,
        relative_gap: float,
        bound: float,
        budget: Budget,
        *,
        max_models: int,
        max_nodes: int,
    ) -> Allocation:
        """Solve the models' MILPs (each within `max_nodes` branch-and-bound nodes), largest gap
        first, while the plan is not certified within `relative_gap` of max(`bound`,
        self.bound) and, at the pace the bound has risen per model so far, could be within
        `max_models` of them; returns the best plan.

        The pace is counted in models, not seconds, so the search stops at the same model on
        any machine. Where the GPUs bind hard the LP's prices split the problem poorly: each
        model's MILP then lifts the bound by a sliver, and the work is better left to the MILP
        solver over all models (the caller's next step), whose own bound certifies."""
        c, p = self.full, self.full.pools
        key = p.region * len(c.gpu_types) + p.gpu
        cap = c.candidates.capacity.ravel()
        hi = self.arrays[1]
        objective = evaluate(c, best).search_objective
        first_bound = max(bound, self.bound)
        done = 0
        while not budget.expired():
            # What stands between the plan and its certificate.
            excess = objective - max(bound, self.bound) - relative_gap * abs(objective)
            if excess <= 0:
                break
            if done >= max_models:
                budget.work_cut = True  # the count of models' MILPs, not the clock, stopped it
                break
            if done >= PACE_SAMPLE and not _on_pace(
                excess, max(bound, self.bound) - first_bound, done, max_models
            ):
                break
            gap = np.where(self.solved, -np.inf, self.priced_cost(best) - self.lower)
            m = int(np.argmax(gap))
            if gap[m] <= 1e-9 * max(abs(objective), 1.0):
                break
            self.solved[m] = True
            done += 1
            cols = self.cols_of[m]
            dual, values = self._solve(
                m,
                self.price[cols],
                hi[cols],
                budget=budget,
                relative_gap=relative_gap,
                max_nodes=max_nodes,
            )
            self.lower[m] = max(self.lower[m], dual)
            # Its best plan at the prices, if it fits and pays; else its best plan at the prices
            # within the GPUs the other models leave (measured: fewer MILPs than at true costs).
            mine = self.pools_of[m]
            better = self._improves(best, objective, m, values)
            if better is None and not budget.expired():
                theirs = best.replicas.copy()
                theirs[mine] = 0.0
                free = np.maximum(cap - gpu_use(c, theirs), 0.0)[key[mine]]
                upper = hi.copy()
                replicas = c.columns.replicas[mine]
                upper[replicas] = np.minimum(upper[replicas], free // p.gpus_per_replica[mine])
                _, values = self._solve(
                    m,
                    self.price[cols],
                    upper[cols],
                    budget=budget,
                    relative_gap=relative_gap,
                    max_nodes=max_nodes,
                )
                better = self._improves(best, objective, m, values)
            if better is not None:
                best, objective = better
        return best

    def _solve(
        self,
        m: int,
        cost: FloatArray,
        upper: FloatArray,
        *,
        budget: Budget,
        relative_gap: float,
        max_nodes: int,
    ) -> tuple[float, FloatArray | None]:
        """Model m's MILP with these costs and column upper bounds: its dual bound (-inf if
        none) and its solution over `full`'s columns (None if none)."""
        c, cols, rows = self.full, self.cols_of[m], self.rows_of[m]
        lo, _, _, integer, matrix, row_lo, row_hi = self.arrays
        model = sparse_model(
            matrix[rows][:, cols],
            lower=lo[cols],
            upper=upper,
            cost=cost,
            row_lower=row_lo[rows],
            row_upper=row_hi[rows],
            integer=integer[cols],
        )
        solver = mbh.ModelSolverHelper("highs")
        solver.set_time_limit_in_seconds(budget.left())
        # Presolve off: these models are small, and with it HiGHS may print to stdout. One
        # thread and a node limit: the same work, so the same answer, on any machine.
        solver.set_solver_specific_parameters(
            f"mip_rel_gap={relative_gap / 10}\npresolve=off\noutput_flag=false\nthreads=1"
            f"\nmip_max_nodes={max_nodes + 1}"
        )
        solver.solve(model)
        budget.stopped(solver.status() == mbh.SolveStatus.OPTIMAL)
        if budget.time_cut:
            return -math.inf, None  # cut by the clock: what it found depends on the machine
        if not solver.has_solution():
            return -math.inf, None
        dual = proven_bound(solver, relative_gap / 10)
        values = np.zeros(c.milp.num_vars)
        values[cols] = np.asarray(solver.variable_values(), dtype=np.float64)
        return (dual if math.isfinite(dual) else -math.inf), values

    def _improves(
        self, best: Allocation, objective: float, m: int, values: FloatArray | None
    ) -> tuple[Allocation, float] | None:
        """`best` with model m's part from `values`, and its objective, if that fits the GPUs
        and costs less; else None."""
        if values is None:
            return None
        c = self.full
        trial = self._with_part(best, m, values)
        if (gpu_use(c, trial.replicas) > c.candidates.capacity.ravel() + 1e-9).any():
            return None
        trial_objective = evaluate(c, trial).search_objective
        return (trial, trial_objective) if trial_objective < objective - 1e-12 else None

    def _with_part(self, a: Allocation, m: int, values: FloatArray) -> Allocation:
        """`a` with model m's replicas and routes taken from a solution over `full`'s columns."""
        cols, mine, mine_routes = self.full.columns, self.pools_of[m], self.routes_of[m]
        replicas, routed = a.replicas.copy(), a.routed.copy()
        replicas[mine] = np.round(values[cols.replicas[mine]])
        routed[mine_routes] = np.maximum(values[cols.routed[mine_routes]], 0.0)
        return Allocation(replicas, routed)


def _on_pace(excess: float, risen: float, done: int, max_models: int) -> bool:
    """Whether the bound, rising as it has per model so far (`risen` over `done` models), would
    close `excess` within the models left of `max_models`. Counted in models, not seconds, so
    the answer is the same on any machine."""
    return risen > 0 and excess * done / risen <= max_models - done


def price_models(lp: LpSolution) -> Lagrangian | None:
    """Price the coupling rows with the LP's duals over the full candidate MILP; None when a
    column of no model would make the bound unbounded (never at an LP optimum)."""
    cands = lp.compiled.candidates
    full = (
        lp.compiled
        if lp.compiled.route_ids.size == cands.routes.size
        else restrict(cands, np.ones(cands.routes.size, dtype=bool))
    )
    n_m, n_keys = len(cands.problem.models), cands.capacity.size
    # Multipliers y <= 0 of the GPU rows (by region and type) and the churn budget row.
    lc = lp.compiled.columns
    y_gpu = np.zeros(n_keys)
    has = lc.gpu_rows >= 0
    y_gpu[has] = np.minimum(lp.duals[lc.gpu_rows[has]], 0.0)
    y_churn = float(min(lp.duals[lc.churn_row[0]], 0.0)) if lc.churn_row.size else 0.0

    # Each model's share of the LP optimum at these prices, plus its pricing shortfall.
    lp_price = _priced(lp.compiled, y_gpu, y_churn)
    lp_model, _ = _models(lp.compiled)
    sel = lp_model >= 0
    lower = (
        np.bincount(lp_model[sel], weights=lp_price[sel] * lp.values[sel], minlength=n_m).astype(
            np.float64
        )
        + lp.shortfall
    )

    price = _priced(full, y_gpu, y_churn)
    col_model, row_model = _models(full)
    arrays = full.milp.arrays()
    lo, hi, _, _, _, _, row_hi = arrays
    fc = full.columns
    coupling = _coupling_rows(full)
    y_rows = np.concatenate([y_gpu[_keys(full)], np.full(fc.churn_row.size, y_churn)])
    constant = float(y_rows @ row_hi[coupling])
    alone = np.flatnonzero(col_model < 0)  # e.g. the problem-wide churn overrun
    if ((price[alone] < 0) & np.isinf(hi[alone])).any():
        return None
    # Each sits at the bound its price prefers; one priced at zero adds nothing (0 x inf: NaN).
    alone = alone[price[alone] != 0]
    constant += float(price[alone] @ np.where(price[alone] > 0, lo[alone], hi[alone]))
    return Lagrangian(
        full=full,
        price=price,
        arrays=arrays,
        cols_of=group_by(np.where(col_model >= 0, col_model, n_m), n_m + 1)[:n_m],
        rows_of=group_by(np.where(row_model >= 0, row_model, n_m), n_m + 1)[:n_m],
        gpu_price=-y_gpu,
        churn_price=-y_churn,
        constant=constant,
        lower=lower,
        solved=np.zeros(n_m, dtype=bool),
        pools_of=group_by(full.pools.model, n_m),
        routes_of=group_by(full.routes.model, n_m),
    )


def _keys(c: Compiled) -> IntArray:
    """Key (region * len(gpu_types) + gpu) of each GPU capacity row, in row order."""
    key: IntArray = c.columns.capacity_key[:, 0] * len(c.gpu_types) + c.columns.capacity_key[:, 1]
    return key


def _coupling_rows(c: Compiled) -> IntArray:
    return np.concatenate([c.columns.capacity_rows, c.columns.churn_row])


def _priced(c: Compiled, y_gpu: FloatArray, y_churn: float) -> FloatArray:
    """The objective less y times the coupling rows: c - y A_R."""
    _, _, cost, _, matrix, _, _ = c.milp.arrays()
    y = np.concatenate([y_gpu[_keys(c)], np.full(c.columns.churn_row.size, y_churn)])
    priced: FloatArray = cost - matrix[_coupling_rows(c)].T @ y
    return priced


def _models(c: Compiled) -> tuple[IntArray, IntArray]:
    """Model of each column and each row once the coupling rows are gone (-1: none). Without
    them the MILP falls apart into one block per model: replicas, routes and shortfalls name
    their model, and the model spreads along the rows to the columns that only rows name (a
    pool's stops, a region's use, a floor's shortfall), and on to their rows."""
    matrix = c.milp.arrays()[4]
    keep = np.ones(matrix.shape[0], dtype=bool)
    keep[_coupling_rows(c)] = False
    rows = np.flatnonzero(keep)
    by_row = matrix[rows].tocsr()
    by_col = by_row.tocsc()
    cols = c.columns
    col_model = np.full(matrix.shape[1], -1, dtype=np.int64)
    col_model[cols.replicas] = c.pools.model
    col_model[cols.routed] = c.routes.model
    col_model[cols.unserved] = c.demands.model
    while True:
        kept_model = _spread(col_model, by_row.indptr, by_row.indices)
        reached = _spread(kept_model, by_col.indptr, by_col.indices)
        if np.array_equal(np.maximum(col_model, reached), col_model):
            break
        col_model = np.maximum(col_model, reached)
    row_model = np.full(matrix.shape[0], -1, dtype=np.int64)
    row_model[rows] = kept_model
    return col_model, row_model


def _spread(model: IntArray, indptr: IntArray, indices: IntArray) -> IntArray:
    """Per compressed line (row of a CSR, column of a CSC): the largest model among its
    entries (-1 for an empty line or one that names none)."""
    out = np.full(indptr.size - 1, -1, dtype=np.int64)
    filled = np.flatnonzero(np.diff(indptr) > 0)
    if filled.size:
        out[filled] = np.maximum.reduceat(model[indices], indptr[filled])
    return out
