"""Array types and the small numpy helpers the candidates, the MILP and the solver share:
indices grouped by key, positions of pairs, means per group."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def group_by(keys: IntArray, size: int) -> list[IntArray]:
    """Indices of `keys` per key value 0..size-1 (e.g. each model's pools), in index order."""
    order = np.argsort(keys, kind="stable")
    bounds = np.searchsorted(keys[order], np.arange(size + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(size)]


def pair_index(a_m: IntArray, a_u: IntArray, b_m: IntArray, b_u: IntArray) -> IntArray:
    """Position in (b_m, b_u) of each (a_m, a_u) pair (all pairs of a exist in b)."""
    width = int(max(a_u.max(initial=0), b_u.max(initial=0))) + 1
    b_key = b_m * width + b_u
    order = np.argsort(b_key)
    pos = np.searchsorted(b_key[order], a_m * width + a_u)
    return order[pos] if pos.size else pos


def mean_by(group: IntArray, values: FloatArray, size: int, default: float) -> FloatArray:
    """Mean of `values` per group 0..size-1; `default` for a group with none."""
    total = np.bincount(group, weights=values, minlength=size)
    count = np.bincount(group, minlength=size)
    return np.where(count > 0, total / np.maximum(count, 1), default)
