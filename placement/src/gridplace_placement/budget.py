"""How much search a solve may do: counted work first, the clock only as a safety net.

A plan must depend on its inputs, not on how fast or how loaded the CPU is. So every step of the
search is bounded by work it counts (pricing rounds, diving rounds, the models' MILPs the
Lagrangian search solves, branch-and-bound nodes per MILP); on any machine the same inputs run
the same steps and return the same plan. The wall-clock deadline stays as a safety net, set well
above what the work takes: when it fires, the steps left are skipped and the plan says so
(`Plan.time_limit_reached`), since it may then differ from one machine to the next.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


def _now() -> float:
    """`time.perf_counter`, looked up at each call (a test may stand in a faster clock)."""
    return time.perf_counter()


@dataclass
class Budget:
    """The deadline of one solve and what stopped its search, as the steps report it."""

    deadline: float  # on `clock`'s scale
    clock: Callable[[], float] = field(default=_now)
    time_cut: bool = False  # a step was skipped or stopped because the deadline passed
    work_cut: bool = False  # a step stopped at its work limit before certifying its plan

    @classmethod
    def starting_now(cls, seconds: float, clock: Callable[[], float] = _now) -> Budget:
        return cls(deadline=clock() + seconds, clock=clock)

    def left(self) -> float:
        """Seconds until the safety net fires (at least a millisecond: solvers refuse 0)."""
        return max(self.deadline - self.clock(), 1e-3)

    def expired(self) -> bool:
        """Whether the safety net has fired; recorded, since a step it skips changes the plan."""
        if self.clock() >= self.deadline:
            self.time_cut = True
        return self.time_cut

    def stopped(self, certified: bool) -> None:
        """A solver returned without certifying its plan: the clock or its work limit cut it."""
        if certified:
            return
        if self.clock() >= self.deadline - 1e-3:
            self.time_cut = True
        else:
            self.work_cut = True
