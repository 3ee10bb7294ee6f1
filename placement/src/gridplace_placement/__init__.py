"""gridplace placement engine: a pure library, free of Kubernetes.

from gridplace_placement import load_problem, solve
plan = solve(load_problem("examples/plan-small.yaml"))

The names below load their module on first use: importing a small module of the package, such
as `policies` for the command line's choices, does not load the solver with numpy and OR-Tools.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gridplace_placement.options import SolveOptions
    from gridplace_placement.plan import Plan, PlanStatus
    from gridplace_placement.policies import POLICIES, Policy
    from gridplace_placement.problem import Problem, load_problem
    from gridplace_placement.solver import solve

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
_MODULE_OF = {
    "POLICIES": "policies",
    "Plan": "plan",
    "PlanStatus": "plan",
    "Policy": "policies",
    "Problem": "problem",
    "SolveOptions": "options",
    "load_problem": "problem",
    "solve": "solver",
}


def __getattr__(name: str) -> object:
    """Load a public name's module when the name is first asked for (PEP 562)."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
