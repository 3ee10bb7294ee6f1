"""Names typed into input files (GPU products, profiles), checked against the ones gridplace knows.

A GPU product is matched by exact name everywhere (inventory, profiles, prices), so a misspelled
one is not an error to the solver: its GPUs simply match no model and the capacity is lost without
a word. Input files written by hand (`gridplace plan`, scenarios) are checked here instead, with the
known name the user most likely meant.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from gridplace_placement.profiles import catalogue


def shipped_gpu_products() -> frozenset[str]:
    """Every GPU product some shipped performance profile is measured (or scaled) on."""
    return frozenset(p["gpuType"] for profiles in catalogue().values() for p in profiles)


def unknown_name(where: str, what: str, name: str, known: Iterable[str]) -> str | None:
    """Why `name` (found at `where`) is not a known `what` (e.g. "GPU product"), or None if it
    is one. The message suggests the known name the user most likely meant, then lists them."""
    names = sorted(set(known))
    if name in names:
        return None
    guess = _closest(name, names)
    hint = f" (did you mean {guess!r}?)" if guess else ""
    return f"{where}: unknown {what} {name!r}{hint}; known: {', '.join(names)}"


def _closest(name: str, names: list[str]) -> str | None:
    """The known name that differs only in case, else the only one containing `name` (a short
    form such as `H100`), else the most similar spelling."""
    lower = {n.lower(): n for n in names}
    if name.lower() in lower:
        return lower[name.lower()]
    containing = [n for n in names if name.lower() in n.lower()]
    if len(containing) == 1:
        return containing[0]
    close = difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.6)
    return lower[close[0]] if close else None
