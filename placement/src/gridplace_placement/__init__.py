"""gridplace placement engine: a pure library, free of Kubernetes.

from gridplace_placement import load_problem, solve
plan = solve(load_problem("examples/plan-small.yaml"))
"""

from gridplace_placement.plan import Plan, PlanStatus
from gridplace_placement.problem import Problem, load_problem
from gridplace_placement.solver import POLICIES, Policy, SolveOptions, solve

__version__ = "0.1.0"
__all__ = [
    "POLICIES",
    "Plan",
    "PlanStatus",
    "Policy",
    "Problem",
    "SolveOptions",
    "load_problem",
    "solve",
]
