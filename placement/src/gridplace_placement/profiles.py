"""The performance profiles shipped with gridplace (see data/NOTICE for sources and licences)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def catalogue() -> dict[str, list[dict[str, Any]]]:
    """Shipped profiles by model name, each a dict in the PerformanceProfile field format."""
    text = resources.files("gridplace_placement").joinpath("data/profiles.json").read_text()
    by_model: dict[str, list[dict[str, Any]]] = {}
    for entry in json.loads(text)["profiles"]:
        profile = {k: v for k, v in entry.items() if k != "model"}
        by_model.setdefault(entry["model"], []).append(profile)
    return by_model
