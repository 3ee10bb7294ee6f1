"""The names of the placement policies: the joint optimiser and the baselines beside it.

Only `typing` is imported here, so the command line can offer them as choices without loading
the engine.
"""

from __future__ import annotations

from typing import Literal, get_args

Policy = Literal[
    "gridplace", "latency-nearest", "even-spread", "cheapest-power", "lowest-carbon", "naive"
]
POLICIES: tuple[Policy, ...] = get_args(Policy)
