"""Replicas packed per node: a replica's GPUs are one pod's, so they must share one node.

Pooled GPUs per (region, GPU type) overstate what schedules: two nodes with 2 free GPUs each hold
no replica of 4. The plan counts capacity in *slots* instead. Sizes are rounded up to a power of
two (the size class); with classes that divide each other, first-fit-decreasing is exact, and a
set of replicas fits on the nodes if and only if, for every class s present,

    sum over replicas of class c >= s of c / s  <=  sum over nodes of floor(free / s)

(placing the largest class first takes exactly c / s slots of class s from a node, so the slots
left of each smaller class are counted without loss). These rows are linear in the replica
counts, so the MILP carries them as they are; a size that is not a power of two is planned as the
next one up, which only ever under-uses a node, never over-asks it. `fit` is the same rule applied
after the solve, the safety net for the heuristics that round and combine plans on pooled GPUs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]


def size_class(gpus_per_replica: IntArray) -> IntArray:
    """The power of two at or above each size: the class whose slots a replica takes."""
    sizes = np.maximum(np.asarray(gpus_per_replica, dtype=np.int64), 1)
    return np.left_shift(1, np.ceil(np.log2(sizes) - 1e-9).astype(np.int64))


def slots(free: IntArray, size: int) -> int:
    """Replicas of class `size` the nodes hold: the sum of floor(free / size) over nodes."""
    return int((np.asarray(free, dtype=np.int64) // size).sum())


def place(free: Sequence[int], sizes: Sequence[int]) -> list[bool]:
    """First-fit-decreasing of replicas of class `sizes` onto nodes with `free` GPUs: whether
    each replica, in the order given, found a node. Larger classes go first, so a replica left
    out never blocks a smaller one; among equal classes the order given is the priority."""
    left = sorted((int(f) for f in free), reverse=True)
    placed = [False] * len(sizes)
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        for n, room in enumerate(left):
            if room >= sizes[i]:
                left[n] -= sizes[i]
                placed[i] = True
                break
    return placed


def fits(free: Sequence[int], sizes: Sequence[int]) -> bool:
    """Whether every replica (by class) finds a node by first-fit-decreasing."""
    return all(place(free, sizes))


def take(free: Sequence[int], gpus: int) -> tuple[int, ...]:
    """Nodes' free GPUs once `gpus` more are taken by replicas whose sizes and nodes are not
    known yet (a plan made for other models just before): from the nodes with the most free
    first, so the large slots go first, as a packing scheduler would leave them. The next
    inventory, built from the pods themselves, replaces this guess."""
    left = sorted((int(f) for f in free), reverse=True)
    for n in range(len(left)):
        used = min(left[n], gpus)
        left[n] -= used
        gpus -= used
    return tuple(left)
