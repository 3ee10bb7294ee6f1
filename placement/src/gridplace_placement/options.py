"""How one solve runs: the MILP backend, the work and time that bound it, the gap it aims for
and the knobs of its search. Apart from the solver so the baselines, which the solver runs,
take the same options without importing it back."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Backend = Literal["highs", "scip"]
# Branch-and-bound nodes per MILP search (see SolveOptions.work_limit): every MILP of the shipped
# benchmarks that certifies does so at its root or within a few thousand nodes (measured:
# the operator's 500 models and every model MILP up to 100 x 20 at the root, one model MILP of
# 100 x 20 seed 1 at a 0.5% gap 6,862 nodes); a model that needs more is left to the next step.
WORK_LIMIT = 2_000
# Models' own MILPs the Lagrangian search may solve (see SolveOptions.model_milps).
MODEL_MILPS = 64


class SolveOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Backend = "highs"  # measured: plans as good as SCIP's in less native memory
    time_limit_seconds: float = Field(
        default=60.0,
        gt=0,
        description="safety net of the whole solve, in wall-clock seconds: the search is "
        "bounded by work (work_limit, model_milps, pricing and diving rounds), so the same "
        "inputs give the same plan on any machine; should this fire first, the steps left are "
        "skipped and the plan says so (time_limit_reached)",
    )
    work_limit: int = Field(
        default=WORK_LIMIT,
        ge=0,
        description="branch-and-bound nodes each MILP search may explore beyond its root "
        "(HiGHS mip_max_nodes, SCIP limits/nodes): the deterministic bound of the integer "
        "search; a search it stops before its gap adds nothing to the plan",
    )
    model_milps: int = Field(
        default=MODEL_MILPS,
        ge=0,
        description="models' own MILPs the Lagrangian search may solve, largest gap first",
    )
    relative_gap: float = Field(default=0.005, ge=0, description="stop within this certified gap")
    deterministic: bool = Field(default=True, description="one thread and a fixed seed")
    seed: int = 0
    warm_start: bool = Field(
        default=True, description="hint SCIP with the best plan so far (HiGHS runs cold)"
    )
    routes_per_zone: int = Field(
        default=16, ge=1, description="cheapest routes per (model, zone) the LP starts from"
    )
    neighbourhood: int = Field(
        default=8, ge=0, description="pools per model beyond the LP's that the integer search sees"
    )
    exact: bool = Field(
        default=False, description="search all candidate pools (slower; bound from the MILP too)"
    )
    min_improvement: float = Field(
        default=0.01,
        ge=0,
        description="hysteresis: a model that runs now moves only if the new plan lowers its "
        "own objective by more than this share; else it keeps its pools (scaled)",
    )
