"""`Milp`: a MILP in array form, filled in bulk by whole blocks of variables, rows and
coefficients, then handed to the solvers as arrays and one sparse matrix."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import coo_matrix, csr_matrix

from gridplace_placement.arrays import FloatArray, IntArray


@dataclass
class Milp:
    """A MILP in array form: min c.x  s.t.  row_lo <= A x <= row_hi, lo <= x <= hi."""

    lower: list[FloatArray] = field(default_factory=list)
    upper: list[FloatArray] = field(default_factory=list)
    cost: list[FloatArray] = field(default_factory=list)
    integer: list[NDArray[np.bool_]] = field(default_factory=list)
    rows: list[IntArray] = field(default_factory=list)
    cols: list[IntArray] = field(default_factory=list)
    vals: list[FloatArray] = field(default_factory=list)
    row_lower: list[FloatArray] = field(default_factory=list)
    row_upper: list[FloatArray] = field(default_factory=list)
    num_vars: int = 0
    num_rows: int = 0

    def variables(
        self,
        count: int,
        lower: float | FloatArray,
        upper: float | FloatArray,
        cost: float | FloatArray,
        *,
        integer: bool = False,
    ) -> IntArray:
        """Add `count` variables; return their column indices."""
        self.lower.append(np.broadcast_to(np.asarray(lower, dtype=np.float64), (count,)).copy())
        self.upper.append(np.broadcast_to(np.asarray(upper, dtype=np.float64), (count,)).copy())
        self.cost.append(np.broadcast_to(np.asarray(cost, dtype=np.float64), (count,)).copy())
        self.integer.append(np.full(count, integer))
        cols = np.arange(self.num_vars, self.num_vars + count, dtype=np.int64)
        self.num_vars += count
        return cols

    def constraints(
        self, count: int, lower: float | FloatArray, upper: float | FloatArray
    ) -> IntArray:
        """Add `count` empty rows; fill them with `terms`."""
        self.row_lower.append(np.broadcast_to(np.asarray(lower, dtype=np.float64), (count,)).copy())
        self.row_upper.append(np.broadcast_to(np.asarray(upper, dtype=np.float64), (count,)).copy())
        rows = np.arange(self.num_rows, self.num_rows + count, dtype=np.int64)
        self.num_rows += count
        return rows

    def terms(self, rows: IntArray, cols: IntArray, vals: float | FloatArray) -> None:
        """Add the coefficients `vals` at (`rows`, `cols`); a repeated pair adds up."""
        self.rows.append(np.asarray(rows, dtype=np.int64))
        self.cols.append(np.asarray(cols, dtype=np.int64))
        self.vals.append(np.broadcast_to(np.asarray(vals, dtype=np.float64), rows.shape).copy())

    def with_bounds(self, lower: FloatArray, upper: FloatArray) -> Milp:
        """The same model with new variable bounds (full-length arrays)."""
        return replace(self, lower=[lower], upper=[upper])

    def arrays(
        self,
    ) -> tuple[
        FloatArray, FloatArray, FloatArray, NDArray[np.bool_], csr_matrix, FloatArray, FloatArray
    ]:
        """Bounds, costs, integrality, the constraint matrix and the row bounds."""
        matrix = coo_matrix(
            (np.concatenate(self.vals), (np.concatenate(self.rows), np.concatenate(self.cols))),
            shape=(self.num_rows, self.num_vars),
        ).tocsr()
        return (
            np.concatenate(self.lower),
            np.concatenate(self.upper),
            np.concatenate(self.cost),
            np.concatenate(self.integer),
            matrix,
            np.concatenate(self.row_lower),
            np.concatenate(self.row_upper),
        )
